"""Slack connector (``messaging.slack``), in Python.

OAuth 2.0 against Slack's ``oauth.v2.access`` (authorization code, and token rotation:
expiring bot tokens renewed with refresh tokens), then Slack's Web API with
``Authorization: Bearer <token>``: ``chat.postMessage@1`` and ``conversations.list@1``.

Slack answers most errors with HTTP 200 and ``{"ok": false, "error": "..."}``. A rejected
token (``invalid_auth``, ``token_revoked``, ``token_expired``, ``account_inactive``, and
``invalid_refresh_token`` from the token endpoint) needs a reconnect; ``ratelimited``
(HTTP 429 with ``Retry-After``) is retryable and the host passes the wait on; anything
else is a provider error whose code is Slack's error string.

The connection config's ``baseUrl`` replaces ``https://slack.com`` and ``tokenUrl``
replaces the token endpoint, paths unchanged, so tests point both at a fake.
"""

import conduit_sdk as sdk
from conduit_sdk import AuthType, Capability, ConnectorInfo, Health, OauthConfig, RateProfile, Secret

API_BASE = "https://slack.com"
TOKEN_URL = "https://slack.com/api/oauth.v2.access"
AUTHORIZE_URL = "https://slack.com/oauth/v2/authorize"
# A token or grant Slack will not take again: a person must reconnect. The last three
# come from the token endpoint (a dead refresh token, a bad or used code).
REAUTH_ERRORS = {
    "invalid_auth", "token_revoked", "token_expired", "account_inactive", "not_authed",
    "invalid_refresh_token", "invalid_code", "code_already_used",
}
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


class Connector(sdk.Connector):
    def info(self):
        return ConnectorInfo(
            slug="slack",
            integration_key="messaging.slack",
            version=1,
            display_name="Slack",
            category="messaging",
            auth_type=AuthType.OAUTH2,
            ownership_modes=["managed", "byok"],
            capabilities=[
                Capability("chat.postMessage", 1, "Post a message to a channel"),
                Capability("conversations.list", 1, "List the workspace's channels"),
            ],
            allowed_hosts=["slack.com"],
            # Slack's Tier 3 methods: about 50 requests a minute per workspace.
            rate_profile=RateProfile(requests=50, per_seconds=60, burst=50),
            oauth=OauthConfig(
                authorize_url=AUTHORIZE_URL,
                token_url=TOKEN_URL,
                scopes=["chat:write", "channels:read"],
                pkce=False,
            ),
        )

    def handle(self, ctx, secret, capability, input):
        token = sdk.require_access_token(secret)
        if capability == "chat.postMessage":
            return post_message(ctx, token, input)
        if capability == "conversations.list":
            return list_conversations(ctx, token, input)
        raise sdk.unsupported(f"no capability `{capability}`")

    def health_check(self, ctx, secret):
        answer = call(ctx, "POST", "auth.test", sdk.require_access_token(secret))
        return Health(True, f"authenticated to team {answer.get('team', '?')}")

    def exchange_code(self, ctx, client, code, redirect_uri, code_verifier):
        return token_request(ctx, {
            "code": code,
            "redirect_uri": redirect_uri,
            "client_id": client.client_id,
            "client_secret": client.client_secret,
        })

    def refresh(self, ctx, client, refresh_token):
        return token_request(ctx, {
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": client.client_id,
            "client_secret": client.client_secret,
        })


def post_message(ctx, token, input):
    body = {"channel": input["channel"], "text": input["text"]}
    if "blocks" in input:
        body["blocks"] = input["blocks"]
    if "threadTs" in input:
        body["thread_ts"] = input["threadTs"]
    answer = call(ctx, "POST", "chat.postMessage", token, json_body=body)
    return {"channel": answer.get("channel"), "ts": answer.get("ts")}


def list_conversations(ctx, token, input):
    limit = min(int(input.get("limit", DEFAULT_LIMIT)), MAX_LIMIT)
    query = {"limit": str(limit), "cursor": input.get("cursor"), "exclude_archived": "true"}
    answer = call(ctx, "GET", "conversations.list", token, query=query)
    output = {
        "channels": [
            {"id": c.get("id"), "name": c.get("name")} for c in answer.get("channels", [])
        ]
    }
    cursor = (answer.get("response_metadata") or {}).get("next_cursor")
    if cursor:
        output["nextCursor"] = cursor
    return output


def call(ctx, method, api_method, token, **options):
    """Calls one Web API method and returns its answer when ``ok``."""
    url = f"{sdk.base_url(ctx, API_BASE)}/api/{api_method}"
    response = sdk.request(method, url, bearer=token, **options)
    return checked(response)


def checked(response):
    if response.status == 429:
        raise sdk.provider_error(429, "Slack rate limit reached", code="ratelimited", retryable=True)
    if response.status >= 500:
        raise sdk.provider_error(response.status, f"Slack answered {response.status}")
    answer = response.json()
    if not isinstance(answer, dict):
        raise sdk.provider_error(response.status, "Slack answered with a non-object body")
    if answer.get("ok"):
        return answer
    error = str(answer.get("error") or "unknown_error")
    if error in REAUTH_ERRORS:
        raise sdk.needs_reauth(f"Slack refused the token: {error}")
    if error == "ratelimited":
        raise sdk.provider_error(429, "Slack rate limit reached", code=error, retryable=True)
    status = response.status if response.status >= 400 else 400
    raise sdk.provider_error(status, f"Slack refused the call: {error}", code=error)


def token_request(ctx, form):
    """Posts to ``oauth.v2.access``; a rotating app answers with a refresh token and
    ``expires_in``. Slack's error strings carry no secret."""
    url = sdk.config(ctx).get("tokenUrl") or TOKEN_URL
    answer = checked(sdk.post(url, form=form, headers={"accept": "application/json"}))
    token = answer.get("access_token")
    if not token:
        raise sdk.provider_error(502, "Slack's token answer has no access_token", retryable=False)
    expires_in = answer.get("expires_in")
    return Secret(
        access_token=token,
        refresh_token=answer.get("refresh_token") or None,
        api_key=None,
        api_secret=None,
        expires_at=sdk.now_ms() + int(expires_in) * 1000 if expires_in else None,
    )
