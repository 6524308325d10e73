// Runs this connector end to end, with nothing but Node.js and the `conduit` binary: a
// fake provider on 127.0.0.1, a real `conduit serve` loading the built component
// (build/*.wasm), and capability calls through Conduit's HTTP API.
//
//   conduit plugin build . && node test.mjs
//
// `CONDUIT_BIN` names the binary when `conduit` is not on PATH.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';

const SLUG = '{{name}}';
const API_KEY = 'test-api-key-0123456789';
const here = dirname(fileURLToPath(import.meta.url));

// The provider's wire format: bearer auth, JSON answers, 401 and 404.
const fake = createServer((req, res) => {
  const answer = (status, body) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  };
  if (req.headers.authorization !== `Bearer ${API_KEY}`) return answer(401, { error: 'invalid api key' });
  if (req.url === '/v1/me') return answer(200, { name: 'fake account' });
  const id = req.url.startsWith('/v1/items/') ? req.url.slice('/v1/items/'.length) : undefined;
  if (id && id !== 'missing') return answer(200, { id, name: `Item ${id}` });
  answer(404, { error: 'not found' });
});
await new Promise((resolve) => fake.listen(0, '127.0.0.1', resolve));
const fakeAddr = `127.0.0.1:${fake.address().port}`;

const wasm = readdirSync(join(here, 'build')).filter((f) => f.endsWith('.wasm'));
assert.equal(wasm.length, 1, `build the connector first: conduit plugin build ${here}`);
const work = mkdtempSync(join(tmpdir(), 'conduit-test-'));
const plugins = join(work, 'plugins.toml');
// The fake is on loopback: the deployment grants it, replacing api.example.com.
writeFileSync(plugins, `[[plugin]]\nslug = "${SLUG}"\npath = ${JSON.stringify(join(here, 'build', wasm[0]))}\nallowed_hosts = ["${fakeAddr}"]\n`);
const admin = randomBytes(16).toString('hex');
const conduit = spawn(
  process.env.CONDUIT_BIN || 'conduit',
  ['serve', '--listen', '127.0.0.1:0', '--data-dir', join(work, 'data'), '--plugins', plugins],
  {
    env: { ...process.env, CONDUIT_ADMIN_TOKEN: admin, CONDUIT_LOG: 'warn', CONDUIT_MASTER_KEY: randomBytes(32).toString('base64') },
    stdio: ['ignore', 'pipe', 'inherit'],
  },
);

try {
  // Keep reading stdout after the address: a closed pipe would stop the server.
  const base = await new Promise((resolve, reject) => {
    createInterface({ input: conduit.stdout }).on('line', (line) => {
      if (line.startsWith('conduit listening on ')) resolve(line.split(' ').pop());
    });
    conduit.on('exit', (code) => reject(new Error(`conduit exited (${code}) before listening`)));
  });
  const call = async (method, path, token, body) => {
    const response = await fetch(base + path, {
      method,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return [response.status, await response.json()];
  };
  const doc = (type, attributes) => ({ data: { type, attributes } });

  let [status, body] = await call('POST', '/admin/tenants', admin, doc('tenants', { id: 'test-tenant' }));
  assert.equal(status, 201, JSON.stringify(body));
  const token = body.data.attributes.token;
  [status, body] = await call('POST', '/api/connections', token, doc('connections', {
    connector: SLUG, environment: 'sandbox', config: { baseUrl: `http://${fakeAddr}` },
  }));
  assert.equal(status, 201, JSON.stringify(body));
  const conn = body.data.id;
  [status, body] = await call('PUT', `/api/connections/${conn}/credential`, token, doc('credentials', { kind: 'api_key', apiKey: API_KEY }));
  assert.equal(status, 200, JSON.stringify(body));

  const execute = `/api/connections/${conn}/capabilities/items.get/execute`;
  [status, body] = await call('POST', execute, token, doc('executions', { input: { id: '42' } }));
  assert.equal(status, 200, JSON.stringify(body));
  assert.deepEqual(body.data.attributes.output, { id: '42', name: 'Item 42' });
  [status, body] = await call('POST', execute, token, doc('executions', { input: { id: 'missing' } }));
  assert.deepEqual([status, body.errors[0].code, body.errors[0].meta.providerCode], [502, 'provider_error', 'not_found']);
  [status, body] = await call('POST', `/api/connections/${conn}/health`, token, {});
  assert.equal(body.healthy, true, JSON.stringify(body));
  console.log(`ok: ${SLUG} executed items.get through Conduit at ${base}`);
} finally {
  conduit.kill();
  fake.close();
}
