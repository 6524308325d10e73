"""Write Conduit connectors in Python.

A connector is a WebAssembly component implementing the ``conduit:connector`` world
(``wit/connector.wit``), built by componentize-py (``conduit plugin build``). This package
wraps the generated bindings in what a connector author needs:

- :class:`Connector`, the base class to subclass in ``app.py`` (JSON in and out: implement
  ``handle`` with dicts; the OAuth exports default to ``unsupported``);
- :func:`request` and friends, HTTP through the host (the only way out of the sandbox),
  with JSON or form bodies, bearer or basic auth, and status handling;
- error constructors (:func:`needs_reauth`, :func:`provider_error`, …) to ``raise``;
- :mod:`logging`-style helpers (:func:`log_info`, …) into the host's logs.

``sdk/README.md`` is the guide.
"""

import base64
import json
import time
from urllib.parse import quote, urlencode

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import http as _http
from wit_world.imports import log as _log
from wit_world.imports import types

# The WIT types a connector builds its info() and answers from.
AuthType = types.AuthType
Capability = types.Capability
Client = types.Client
ConnectorInfo = types.ConnectorInfo
Context = types.Context
Health = types.Health
OauthConfig = types.OauthConfig
RateProfile = types.RateProfile
Secret = types.Secret

__all__ = [
    "AuthType", "Capability", "Client", "ConnectorInfo", "Context", "Health",
    "OauthConfig", "RateProfile", "Secret", "Connector", "Response", "request", "get",
    "post", "needs_reauth", "invalid_input", "unsupported", "provider_error",
    "transient", "internal", "config", "base_url", "require_api_key",
    "require_access_token", "now_ms", "quote", "log_debug", "log_info", "log_warn",
    "log_error",
]


# --- errors: raise what these return ----------------------------------------------

def needs_reauth(message):
    """The credential was rejected: a person must reconnect the account."""
    return Err(types.Error_NeedsReauth(message))


def invalid_input(message):
    """The caller's input is not acceptable."""
    return Err(types.Error_InvalidInput(message))


def unsupported(message):
    """The capability or operation is not supported."""
    return Err(types.Error_Unsupported(message))


def provider_error(status, message, code=None, retryable=None):
    """The provider answered with an error. Retryable by default for 429 and 5xx; the
    host reads when to retry from the provider's own Retry-After or rate-limit headers."""
    if retryable is None:
        retryable = status == 429 or status >= 500
    return Err(types.Error_Provider(types.ProviderError(status, code, message, retryable)))


def transient(message):
    """A temporary failure worth retrying (network, timeout)."""
    return Err(types.Error_Transient(message))


def internal(message):
    """A bug in the connector."""
    return Err(types.Error_Internal(message))


# --- logging ------------------------------------------------------------------------

def log_debug(message):
    _log.log(_log.Level.DEBUG, message)


def log_info(message):
    _log.log(_log.Level.INFO, message)


def log_warn(message):
    _log.log(_log.Level.WARN, message)


def log_error(message):
    _log.log(_log.Level.ERROR, message)


# --- context and secrets -------------------------------------------------------------

def config(ctx):
    """The connection's non-secret config as a dict (``{}`` when empty or malformed)."""
    try:
        value = json.loads(ctx.config or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def base_url(ctx, default, key="baseUrl"):
    """The API base: the connection config's ``baseUrl`` (or ``key``), else ``default``."""
    value = config(ctx).get(key)
    return (value if isinstance(value, str) and value else default).rstrip("/")


def require_api_key(secret, what="API key"):
    if not secret.api_key:
        raise needs_reauth(f"the connection has no {what}")
    return secret.api_key


def require_access_token(secret):
    if not secret.access_token:
        raise needs_reauth("the connection has no access token")
    return secret.access_token


def now_ms():
    """Unix milliseconds (WASI's clock)."""
    return int(time.time() * 1000)


# --- HTTP through the host -------------------------------------------------------------

class Response:
    """The provider's answer, whatever its status."""

    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def ok(self):
        return 200 <= self.status < 300

    def header(self, name):
        name = name.lower()
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    def json(self):
        """The body as JSON; a provider error when it is not."""
        try:
            return json.loads(self.body or b"null")
        except ValueError:
            raise provider_error(
                self.status, f"provider answered {self.status} with a non-JSON body"
            )


def request(method, url, *, query=None, headers=None, json_body=None, form=None,
            body=None, bearer=None, basic=None, timeout_ms=None):
    """Sends one request through the host's ``http`` import.

    ``json_body`` (any JSON value) or ``form`` (a dict, or a list of pairs for repeated
    keys) sets the body and its content type; ``bearer`` a token or ``basic`` a
    ``(user, password)`` pair sets ``Authorization``. Transport failures become
    connector errors: timeouts and unreachable hosts ``transient``, a host refusal
    ``internal`` (allowed hosts or config are wrong). The status is not checked: look
    at ``response.ok``.
    """
    all_headers = list((headers or {}).items())
    payload = b""
    if json_body is not None:
        payload = json.dumps(json_body).encode()
        all_headers.append(("content-type", "application/json"))
    elif form is not None:
        pairs = form.items() if isinstance(form, dict) else form
        payload = urlencode([(k, v) for k, v in pairs if v is not None]).encode()
        all_headers.append(("content-type", "application/x-www-form-urlencoded"))
    elif body is not None:
        payload = body if isinstance(body, bytes) else str(body).encode()
    if bearer is not None:
        all_headers.append(("authorization", f"Bearer {bearer}"))
    if basic is not None:
        user, password = basic
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        all_headers.append(("authorization", f"Basic {token}"))
    if query:
        pairs = query.items() if isinstance(query, dict) else query
        encoded = urlencode([(k, v) for k, v in pairs if v is not None])
        if encoded:
            url = f"{url}{'&' if '?' in url else '?'}{encoded}"
    try:
        answer = _http.send(_http.Request(method, url, all_headers, payload, timeout_ms))
    except Err as failure:
        raise _transport_error(failure.value)
    return Response(answer.status, answer.headers, answer.body)


def get(url, **options):
    return request("GET", url, **options)


def post(url, **options):
    return request("POST", url, **options)


def _transport_error(error):
    if isinstance(error, _http.HttpError_Timeout):
        return transient("provider request timed out")
    if isinstance(error, _http.HttpError_Unreachable):
        return transient(f"provider unreachable: {error.value}")
    if isinstance(error, _http.HttpError_RateLimited):
        return transient(f"rate limited, retry in {error.value} ms")
    if isinstance(error, _http.HttpError_TooLarge):
        return internal(f"response larger than {error.value} bytes")
    if isinstance(error, _http.HttpError_Denied):
        return internal(f"request denied by host: {error.value}")
    return internal(f"invalid request: {getattr(error, 'value', error)}")


# --- the connector base class --------------------------------------------------------

class Input(dict):
    """A capability's input: a dict whose missing top-level field is the caller's
    ``invalid-input`` (``input["channel"]``), while a missing key anywhere else (a
    provider's answer, say) stays a bug of the connector."""

    def __missing__(self, key):
        raise invalid_input(f"missing field `{key}`")


class Connector(exports.Connector):
    """Subclass this as ``Connector`` in ``app.py``: implement ``info``, ``handle`` and
    ``health_check``; override ``exchange_code`` and ``refresh`` for OAuth."""

    def handle(self, ctx, secret, capability, input):
        """Runs ``capability`` on ``input`` (a dict); returns a JSON-able value."""
        raise unsupported(f"no capability `{capability}`")

    def execute(self, ctx, secret, capability, input):
        try:
            value = json.loads(input)
        except ValueError as error:
            raise invalid_input(f"input is not JSON: {error}")
        if not isinstance(value, dict):
            raise invalid_input("input must be a JSON object")
        return json.dumps(self.handle(ctx, secret, capability, Input(value)))

    def health_check(self, ctx, secret):
        return Health(True, "no check implemented")

    def exchange_code(self, ctx, client, code, redirect_uri, code_verifier):
        raise unsupported("this connector does not use OAuth")

    def refresh(self, ctx, client, refresh_token):
        raise unsupported("this connector does not use OAuth")
