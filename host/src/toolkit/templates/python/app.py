"""{{title}}: a Conduit connector (``{{key}}``).

``items.get@1`` reads one item with ``GET {baseUrl}/v1/items/{id}``, authenticated with
the connection's API key as a bearer token. The connection config's ``baseUrl``
replaces the default API base, so ``test_connector.py`` points it at a fake.
"""

import conduit_sdk as sdk
from conduit_sdk import AuthType, Capability, ConnectorInfo, Health, RateProfile

DEFAULT_BASE_URL = "https://api.example.com"


class Connector(sdk.Connector):
    def info(self):
        return ConnectorInfo(
            slug="{{name}}",
            integration_key="{{key}}",
            version=1,
            display_name="{{title}}",
            category="items",
            auth_type=AuthType.API_KEY,
            ownership_modes=["byok"],
            capabilities=[Capability("items.get", 1, "Read one item")],
            allowed_hosts=["api.example.com"],
            rate_profile=RateProfile(requests=10, per_seconds=1, burst=10),
            oauth=None,
        )

    def handle(self, ctx, secret, capability, input):
        if capability == "items.get":
            return get_item(ctx, secret, str(input["id"]))
        raise sdk.unsupported(f"no capability `{capability}`")

    def health_check(self, ctx, secret):
        response = sdk.get(f"{sdk.base_url(ctx, DEFAULT_BASE_URL)}/v1/me",
                           bearer=sdk.require_api_key(secret))
        return Health(response.ok, f"the API answered {response.status}")


def get_item(ctx, secret, item_id):
    url = f"{sdk.base_url(ctx, DEFAULT_BASE_URL)}/v1/items/{sdk.quote(item_id, safe='')}"
    response = sdk.get(url, bearer=sdk.require_api_key(secret))
    if response.ok:
        item = response.json()
        return {"id": item["id"], "name": item["name"]}
    if response.status in (401, 403):
        raise sdk.needs_reauth("the API key was refused")
    code = "not_found" if response.status == 404 else None
    raise sdk.provider_error(response.status, f"the API answered {response.status}", code=code)
