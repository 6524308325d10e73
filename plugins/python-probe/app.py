"""A deliberately hostile connector in Python, for the sandbox tests: each capability
tries one thing a malicious or buggy connector might do. ``probe.echo`` makes no host
call and is what the dispatch benchmark measures for Python."""

import os
import sys

import conduit_sdk as sdk
from componentize_py_types import Err
from wit_world.imports import http
from conduit_sdk import AuthType, Capability, ConnectorInfo, RateProfile

CAPABILITIES = [
    "probe.echo", "probe.spin", "probe.allocate", "probe.fetch", "probe.trap",
    "probe.readFile", "probe.env", "probe.remember", "probe.print",
]

# What ``probe.remember`` was last given in this instance; each call has a fresh one,
# so a call must never see another call's value.
REMEMBERED = None


class Connector(sdk.Connector):
    def info(self):
        return ConnectorInfo(
            slug="python-probe",
            integration_key="testing.pythonprobe",
            version=1,
            display_name="Sandbox probe (Python)",
            category="testing",
            auth_type=AuthType.API_KEY,
            ownership_modes=["byok"],
            capabilities=[Capability(key, 1, "hostile probe") for key in CAPABILITIES],
            allowed_hosts=["example.com"],
            rate_profile=RateProfile(requests=1000, per_seconds=1, burst=1000),
            oauth=None,
        )

    def handle(self, ctx, secret, capability, input):
        if capability == "probe.echo":
            return input
        if capability == "probe.spin":
            while True:
                pass
        if capability == "probe.allocate":
            hoard = []
            while True:
                hoard.append(bytearray(1024 * 1024))
        if capability == "probe.fetch":
            # Straight at the import, as hostile code would, to see the host's refusal.
            try:
                answer = http.send(http.Request("GET", input["url"], [], b"", None))
            except Err as refused:
                kind = type(refused.value).__name__.removeprefix("HttpError_")
                return {"httpError": {"TooLarge": "too-large", "RateLimited": "rate-limited"}.get(kind, kind.lower())}
            return {"status": answer.status, "body": answer.body.decode("utf-8", "replace")}
        if capability == "probe.trap":
            raise RuntimeError("the probe raised an uncaught exception")
        if capability == "probe.readFile":
            try:
                with open(input["path"]) as f:
                    return {"read": f.read()}
            except OSError as e:
                return {"error": str(e)}
        if capability == "probe.remember":
            global REMEMBERED
            previous, REMEMBERED = REMEMBERED, input
            return {"previous": previous}
        if capability == "probe.print":
            print(input["message"])
            print(input["message"], file=sys.stderr)
            return {}
        if capability == "probe.env":
            try:
                cwd = os.getcwd()
            except OSError:
                cwd = None
            return {"vars": sorted(os.environ.keys()), "cwd": cwd}
        raise sdk.unsupported(f"no capability `{capability}`")
