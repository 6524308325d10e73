// {{title}}: a Conduit connector (`{{key}}`).
//
// `items.get@1` reads one item with `GET {baseUrl}/v1/items/{id}`, authenticated with
// the connection's API key as a bearer token. The connection config's `baseUrl`
// replaces the default API base, so `test.mjs` points it at a fake.
import * as sdk from './conduit-sdk.js';

const DEFAULT_BASE_URL = 'https://api.example.com';

function getItem(ctx, secret, id) {
  const url = `${sdk.baseUrl(ctx, DEFAULT_BASE_URL)}/v1/items/${encodeURIComponent(id)}`;
  const response = sdk.get(url, { bearer: sdk.requireApiKey(secret) });
  if (response.ok) {
    const item = response.json();
    return { id: item.id, name: item.name };
  }
  if (response.status === 401 || response.status === 403) throw sdk.needsReauth('the API key was refused');
  throw sdk.providerError(response.status, `the API answered ${response.status}`, {
    code: response.status === 404 ? 'not_found' : undefined,
  });
}

export const connector = sdk.connector({
  info: () => ({
    slug: '{{name}}',
    integrationKey: '{{key}}',
    version: 1,
    displayName: '{{title}}',
    category: 'items',
    authType: 'api-key',
    ownershipModes: ['byok'],
    capabilities: [{ key: 'items.get', version: 1, description: 'Read one item' }],
    allowedHosts: ['api.example.com'],
    rateProfile: { requests: 10, perSeconds: 1, burst: 10 },
    oauth: undefined,
  }),
  handle(ctx, secret, capability, input) {
    if (capability === 'items.get') return getItem(ctx, secret, String(input.id));
    throw sdk.unsupported(`no capability \`${capability}\``);
  },
  healthCheck(ctx, secret) {
    const response = sdk.get(`${sdk.baseUrl(ctx, DEFAULT_BASE_URL)}/v1/me`, { bearer: sdk.requireApiKey(secret) });
    return { healthy: response.ok, detail: `the API answered ${response.status}` };
  },
});
