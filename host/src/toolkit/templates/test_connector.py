#!/usr/bin/env python3
"""Runs this connector end to end, with nothing but Python's standard library and the
`conduit` binary: a fake provider on 127.0.0.1, a real `conduit serve` loading the built
component (build/*.wasm), and capability calls through Conduit's HTTP API.

    conduit plugin build . && python3 test_connector.py

`CONDUIT_BIN` names the binary when `conduit` is not on PATH.
"""

import base64
import glob
import http.server
import json
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.request

SLUG = "{{name}}"
API_KEY = "test-api-key-0123456789"
HERE = os.path.dirname(os.path.abspath(__file__))


class FakeProvider(http.server.BaseHTTPRequestHandler):
    """The provider's wire format: bearer auth, JSON answers, 401 and 404."""

    def do_GET(self):
        if self.headers.get("authorization") != f"Bearer {API_KEY}":
            return self.answer(401, {"error": "invalid api key"})
        if self.path == "/v1/me":
            return self.answer(200, {"name": "fake account"})
        prefix = "/v1/items/"
        if self.path.startswith(prefix) and self.path[len(prefix):] != "missing":
            item_id = self.path[len(prefix):]
            return self.answer(200, {"id": item_id, "name": f"Item {item_id}"})
        self.answer(404, {"error": "not found"})

    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def call(base, method, path, token, body=None):
    request = urllib.request.Request(
        base + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"authorization": f"Bearer {token}", "content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def expect(condition, what):
    """An assertion that `python3 -O` keeps."""
    if not condition:
        sys.exit(f"FAILED: {what}")


def doc(kind, attributes):
    return {"data": {"type": kind, "attributes": attributes}}


def main():
    wasm = glob.glob(os.path.join(HERE, "build", "*.wasm"))
    if len(wasm) != 1:
        sys.exit("build the connector first: conduit plugin build " + HERE)
    fake = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeProvider)
    threading.Thread(target=fake.serve_forever, daemon=True).start()
    fake_addr = f"127.0.0.1:{fake.server_address[1]}"

    work = tempfile.mkdtemp(prefix="conduit-test-")
    plugins = os.path.join(work, "plugins.toml")
    with open(plugins, "w") as f:
        # The fake is on loopback: the deployment grants it, replacing api.example.com.
        f.write(f'[[plugin]]\nslug = "{SLUG}"\npath = {json.dumps(wasm[0])}\n'
                f'allowed_hosts = ["{fake_addr}"]\n')
    admin = secrets.token_hex(16)
    env = dict(os.environ, CONDUIT_ADMIN_TOKEN=admin, CONDUIT_LOG="warn",
               CONDUIT_MASTER_KEY=base64.b64encode(secrets.token_bytes(32)).decode())
    conduit = subprocess.Popen(
        [os.environ.get("CONDUIT_BIN", "conduit"), "serve", "--listen", "127.0.0.1:0",
         "--data-dir", os.path.join(work, "data"), "--plugins", plugins],
        env=env, stdout=subprocess.PIPE, text=True)
    try:
        base = None
        for line in conduit.stdout:
            if line.startswith("conduit listening on "):
                base = line.split()[-1]
                break
        if base is None:
            sys.exit("conduit did not start")
        status, tenant = call(base, "POST", "/admin/tenants", admin,
                              doc("tenants", {"id": "test-tenant"}))
        expect(status == 201, tenant)
        token = tenant["data"]["attributes"]["token"]
        status, connection = call(base, "POST", "/api/connections", token, doc("connections", {
            "connector": SLUG, "environment": "sandbox",
            "config": {"baseUrl": f"http://{fake_addr}"}}))
        expect(status == 201, connection)
        conn = connection["data"]["id"]
        status, body = call(base, "PUT", f"/api/connections/{conn}/credential", token,
                            doc("credentials", {"kind": "api_key", "apiKey": API_KEY}))
        expect(status == 200, body)

        execute = f"/api/connections/{conn}/capabilities/items.get/execute"
        status, body = call(base, "POST", execute, token, doc("executions", {"input": {"id": "42"}}))
        expect(status == 200, body)
        expect(body["data"]["attributes"]["output"] == {"id": "42", "name": "Item 42"}, body)
        status, body = call(base, "POST", execute, token, doc("executions", {"input": {"id": "missing"}}))
        expect((status, body["errors"][0]["code"]) == (502, "provider_error"), body)
        expect(body["errors"][0]["meta"]["providerCode"] == "not_found", body)
        status, body = call(base, "POST", f"/api/connections/{conn}/health", token, {})
        expect(status == 200 and body["healthy"] is True, body)
        print(f"ok: {SLUG} executed items.get through Conduit at {base}")
    finally:
        conduit.terminate()
        conduit.wait()


if __name__ == "__main__":
    main()
