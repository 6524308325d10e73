// GitHub connector (`code.github`), in JavaScript.
//
// OAuth 2.0 against GitHub's `login/oauth/access_token` (authorization code; expiring
// user tokens renewed with refresh tokens), then GitHub's REST API with
// `Authorization: Bearer <token>`: `issues.create@1`, `issues.list@1`, `repos.get@1`.
//
// GitHub's rate limits are retryable provider errors, and the host passes on when to
// retry from GitHub's own headers: the primary limit (`X-RateLimit-Remaining: 0` with
// `X-RateLimit-Reset`) and secondary limits (403 or 429 with `Retry-After`). 401 and
// `bad_refresh_token` need a reconnect; 404 and 422 are provider errors with GitHub's
// message.
//
// The connection config's `baseUrl` replaces `https://api.github.com` and `tokenUrl`
// replaces the token endpoint, paths unchanged, so tests point both at a fake.
import * as sdk from './conduit-sdk.js';

const API_BASE = 'https://api.github.com';
const TOKEN_URL = 'https://github.com/login/oauth/access_token';
const AUTHORIZE_URL = 'https://github.com/login/oauth/authorize';
// A grant GitHub will not take again: a dead refresh token, or a bad or used code (as
// Google's `invalid_grant`, which the host answers at the callback as `invalid_grant`).
const REAUTH_ERRORS = new Set(['bad_refresh_token', 'bad_verification_code']);
const MAX_LIMIT = 100;

function info() {
  return {
    slug: 'github',
    integrationKey: 'code.github',
    version: 1,
    displayName: 'GitHub',
    category: 'code',
    authType: 'oauth2',
    ownershipModes: ['managed', 'byok'],
    capabilities: [
      { key: 'issues.create', version: 1, description: 'Open an issue in a repository' },
      { key: 'issues.list', version: 1, description: "List a repository's issues" },
      { key: 'repos.get', version: 1, description: 'Read a repository' },
    ],
    allowedHosts: ['api.github.com', 'github.com'],
    // 5,000 requests an hour per user token.
    rateProfile: { requests: 5000, perSeconds: 3600, burst: 100 },
    oauth: {
      authorizeUrl: AUTHORIZE_URL,
      tokenUrl: TOKEN_URL,
      scopes: ['repo'],
      pkce: false,
    },
  };
}

function handle(ctx, secret, capability, input) {
  const token = sdk.requireAccessToken(secret);
  const repo = () => `/repos/${encodeURIComponent(input.owner)}/${encodeURIComponent(input.repo)}`;
  switch (capability) {
    case 'issues.create': {
      const issue = api(ctx, token, 'POST', `${repo()}/issues`, {
        json: { title: input.title, body: input.body, labels: input.labels },
      });
      return { number: issue.number, url: issue.html_url, id: issue.id };
    }
    case 'issues.list': {
      const limit = Math.min(Number(input.limit ?? 30), MAX_LIMIT);
      const issues = api(ctx, token, 'GET', `${repo()}/issues`, {
        query: { state: input.state ?? 'open', per_page: limit },
      });
      return {
        issues: issues
          // The issues endpoint lists pull requests too.
          .filter((issue) => !issue.pull_request)
          .map((issue) => ({ number: issue.number, title: issue.title, state: issue.state, url: issue.html_url })),
      };
    }
    case 'repos.get': {
      const found = api(ctx, token, 'GET', repo());
      return { id: found.id, fullName: found.full_name, private: found.private, defaultBranch: found.default_branch };
    }
    default:
      throw sdk.unsupported(`no capability \`${capability}\``);
  }
}

function healthCheck(ctx, secret) {
  const user = api(ctx, sdk.requireAccessToken(secret), 'GET', '/user');
  return { healthy: true, detail: `authenticated as ${user.login}` };
}

/** Calls the REST API and returns the parsed answer of a 2xx. */
function api(ctx, token, method, path, options = {}) {
  const response = sdk.request(method, `${sdk.baseUrl(ctx, API_BASE)}${path}`, {
    ...options,
    bearer: token,
    headers: {
      accept: 'application/vnd.github+json',
      'x-github-api-version': '2022-11-28',
      'user-agent': 'conduit-github-connector',
    },
  });
  if (response.ok) return response.json();
  throw apiError(response);
}

function apiError(response) {
  const body = safeJson(response);
  const message = body.message || `GitHub answered ${response.status}`;
  const limited =
    response.header('x-ratelimit-remaining') === '0' || response.header('retry-after') !== undefined;
  if ((response.status === 403 || response.status === 429) && limited) {
    return sdk.providerError(response.status, message, { code: 'rate_limited', retryable: true });
  }
  if (response.status === 401) return sdk.needsReauth(`GitHub refused the token: ${message}`);
  if (response.status === 404) return sdk.providerError(404, message, { code: 'not_found' });
  if (response.status === 422) {
    const details = (body.errors || []).map((e) => e.message || e.code).filter(Boolean);
    const full = details.length ? `${message}: ${details.join('; ')}` : message;
    return sdk.providerError(422, full, { code: 'validation_failed' });
  }
  if (response.status === 403) return sdk.providerError(403, message, { code: 'forbidden' });
  return sdk.providerError(response.status, message);
}

function safeJson(response) {
  try {
    const value = JSON.parse(response.text || '{}');
    return value && typeof value === 'object' ? value : {};
  } catch {
    return {};
  }
}

/** Posts to GitHub's token endpoint; errors come as HTTP 200 with `error`. */
function tokenRequest(ctx, form) {
  const url = sdk.config(ctx).tokenUrl || TOKEN_URL;
  const response = sdk.post(url, { form, headers: { accept: 'application/json' } });
  if (response.status >= 500) throw sdk.providerError(response.status, `GitHub answered ${response.status}`);
  const body = safeJson(response);
  if (body.error) {
    if (REAUTH_ERRORS.has(body.error)) throw sdk.needsReauth(`GitHub refused the grant: ${body.error}`);
    const status = response.status >= 400 ? response.status : 400;
    throw sdk.providerError(status, body.error_description || body.error, { code: body.error });
  }
  if (!body.access_token) {
    throw sdk.providerError(502, "GitHub's token answer has no access_token", { retryable: false });
  }
  return sdk.oauthSecret({
    accessToken: body.access_token,
    refreshToken: body.refresh_token,
    expiresIn: body.expires_in,
  });
}

export const connector = sdk.connector({
  info,
  handle,
  healthCheck,
  exchangeCode: (ctx, client, code, redirectUri, codeVerifier) =>
    tokenRequest(ctx, {
      client_id: client.clientId,
      client_secret: client.clientSecret,
      code,
      redirect_uri: redirectUri,
      code_verifier: codeVerifier,
    }),
  refresh: (ctx, client, refreshToken) =>
    tokenRequest(ctx, {
      client_id: client.clientId,
      client_secret: client.clientSecret,
      grant_type: 'refresh_token',
      refresh_token: refreshToken,
    }),
});
