// Write Conduit connectors in JavaScript.
//
// A connector is a WebAssembly component implementing the `conduit:connector` world
// (`wit/connector.wit`), built by componentize-js (`conduit plugin build`). A connector's
// `connector.js` imports this module (`import * as sdk from './conduit-sdk.js'`) and
// exports `connector = sdk.connector({...})`:
//
// - `connector({ info, handle, healthCheck, exchangeCode, refresh })`: JSON in and out
//   (`handle(ctx, secret, capability, input)` takes and returns plain objects); the OAuth
//   exports default to `unsupported`;
// - `request(method, url, options)` and `get`/`post`: HTTP through the host (the only way
//   out of the sandbox), with JSON or form bodies, bearer or basic auth;
// - error constructors (`needsReauth`, `providerError`, ...) to `throw`;
// - `log.info(...)` and friends into the host's logs.
//
// `sdk/README.md` is the guide.

import { send } from 'conduit:connector/http@0.1.0';
import { log as hostLog } from 'conduit:connector/log@0.1.0';

// --- errors: throw what these return ---------------------------------------------------

/** A connector error; its `payload` is the WIT `error` variant the host receives. */
export class ConnectorError extends Error {
  constructor(tag, val) {
    super(typeof val === 'string' ? val : val.message);
    this.payload = { tag, val };
  }
}

/** The credential was rejected: a person must reconnect the account. */
export const needsReauth = (message) => new ConnectorError('needs-reauth', message);
/** The caller's input is not acceptable. */
export const invalidInput = (message) => new ConnectorError('invalid-input', message);
/** The capability or operation is not supported. */
export const unsupported = (message) => new ConnectorError('unsupported', message);
/** A temporary failure worth retrying (network, timeout). */
export const transient = (message) => new ConnectorError('transient', message);
/** A bug in the connector. */
export const internal = (message) => new ConnectorError('internal', message);

/**
 * The provider answered with an error. Retryable by default for 429 and 5xx; the host
 * reads when to retry from the provider's own Retry-After or rate-limit headers.
 */
export function providerError(status, message, { code, retryable } = {}) {
  return new ConnectorError('provider', {
    status,
    code: code ?? undefined,
    message,
    retryable: retryable ?? (status === 429 || status >= 500),
  });
}

// --- logging ---------------------------------------------------------------------------

export const log = {
  debug: (message) => hostLog('debug', String(message)),
  info: (message) => hostLog('info', String(message)),
  warn: (message) => hostLog('warn', String(message)),
  error: (message) => hostLog('error', String(message)),
};

// --- context and secrets ---------------------------------------------------------------

/** The connection's non-secret config as an object (`{}` when empty or malformed). */
export function config(ctx) {
  try {
    const value = JSON.parse(ctx.config || '{}');
    return value && typeof value === 'object' && !Array.isArray(value) ? value : {};
  } catch {
    return {};
  }
}

/** The API base: the connection config's `baseUrl` (or `key`), else `fallback`. */
export function baseUrl(ctx, fallback, key = 'baseUrl') {
  const value = config(ctx)[key];
  return (typeof value === 'string' && value ? value : fallback).replace(/\/+$/, '');
}

export function requireApiKey(secret, what = 'API key') {
  if (!secret.apiKey) throw needsReauth(`the connection has no ${what}`);
  return secret.apiKey;
}

export function requireAccessToken(secret) {
  if (!secret.accessToken) throw needsReauth('the connection has no access token');
  return secret.accessToken;
}

/** A WIT `secret` from OAuth tokens; `expiresIn` in seconds. */
export function oauthSecret({ accessToken, refreshToken, expiresIn }) {
  return {
    accessToken,
    refreshToken: refreshToken || undefined,
    apiKey: undefined,
    apiSecret: undefined,
    expiresAt: expiresIn ? BigInt(Date.now() + Number(expiresIn) * 1000) : undefined,
  };
}

// --- HTTP through the host ---------------------------------------------------------------

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The provider's answer, whatever its status. */
export class Response {
  constructor({ status, headers, body }) {
    this.status = status;
    this.headers = headers;
    this.body = body;
  }
  get ok() {
    return this.status >= 200 && this.status < 300;
  }
  header(name) {
    const wanted = name.toLowerCase();
    const found = this.headers.find(([key]) => key.toLowerCase() === wanted);
    return found ? found[1] : undefined;
  }
  get text() {
    return decoder.decode(this.body);
  }
  /** The body as JSON; a provider error when it is not. */
  json() {
    try {
      return JSON.parse(this.text || 'null');
    } catch {
      throw providerError(this.status, `provider answered ${this.status} with a non-JSON body`);
    }
  }
}

/** `application/x-www-form-urlencoded` of an object or a list of pairs; nulls skipped. */
export function formEncode(form) {
  const pairs = Array.isArray(form) ? form : Object.entries(form);
  return pairs
    .filter(([, value]) => value !== undefined && value !== null)
    .map(([key, value]) => `${encodeURIComponent(key)}=${encodeURIComponent(String(value))}`)
    .join('&')
    .replace(/%20/g, '+');
}

/**
 * Sends one request through the host's `http` import. `json` (any JSON value) or `form`
 * sets the body and its content type; `bearer` a token or `basic` a `[user, password]`
 * pair sets `Authorization`; `query` adds parameters. Transport failures become connector
 * errors: timeouts and unreachable hosts `transient`, a host refusal `internal`. The
 * status is not checked: look at `response.ok`.
 */
export function request(method, url, options = {}) {
  const headers = Object.entries(options.headers || {});
  let body = new Uint8Array();
  if (options.json !== undefined) {
    body = encoder.encode(JSON.stringify(options.json));
    headers.push(['content-type', 'application/json']);
  } else if (options.form !== undefined) {
    body = encoder.encode(formEncode(options.form));
    headers.push(['content-type', 'application/x-www-form-urlencoded']);
  } else if (options.body !== undefined) {
    body = typeof options.body === 'string' ? encoder.encode(options.body) : options.body;
  }
  if (options.bearer !== undefined) headers.push(['authorization', `Bearer ${options.bearer}`]);
  if (options.basic !== undefined) {
    const [user, password] = options.basic;
    headers.push(['authorization', `Basic ${base64(`${user}:${password}`)}`]);
  }
  if (options.query) {
    const encoded = formEncode(options.query);
    if (encoded) url = `${url}${url.includes('?') ? '&' : '?'}${encoded}`;
  }
  let answer;
  try {
    answer = send({ method, url, headers, body, timeoutMs: options.timeoutMs });
  } catch (failure) {
    throw transportError(failure.payload ?? failure);
  }
  return new Response(answer);
}

export const get = (url, options) => request('GET', url, options);
export const post = (url, options) => request('POST', url, options);

function transportError(error) {
  switch (error && error.tag) {
    case 'timeout':
      return transient('provider request timed out');
    case 'unreachable':
      return transient(`provider unreachable: ${error.val}`);
    case 'rate-limited':
      return transient(`rate limited, retry in ${error.val} ms`);
    case 'too-large':
      return internal(`response larger than ${error.val} bytes`);
    case 'denied':
      return internal(`request denied by host: ${error.val}`);
    default:
      return internal(`invalid request: ${error && error.val !== undefined ? error.val : error}`);
  }
}

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

function base64(text) {
  const bytes = encoder.encode(text);
  let out = '';
  for (let i = 0; i < bytes.length; i += 3) {
    const [a, b = 0, c = 0] = [bytes[i], bytes[i + 1], bytes[i + 2]];
    const n = (a << 16) | (b << 8) | c;
    out += ALPHABET[(n >> 18) & 63] + ALPHABET[(n >> 12) & 63];
    out += i + 1 < bytes.length ? ALPHABET[(n >> 6) & 63] : '=';
    out += i + 2 < bytes.length ? ALPHABET[n & 63] : '=';
  }
  return out;
}

// --- the connector ------------------------------------------------------------------------

/**
 * The `connector` export from a connector's parts: `info()` and
 * `handle(ctx, secret, capability, input)` are required.
 */
export function connector(parts) {
  const oauthUnsupported = () => {
    throw unsupported('this connector does not use OAuth');
  };
  return {
    info: parts.info,
    healthCheck: parts.healthCheck ?? (() => ({ healthy: true, detail: 'no check implemented' })),
    exchangeCode: parts.exchangeCode ?? oauthUnsupported,
    refresh: parts.refresh ?? oauthUnsupported,
    execute(ctx, secret, capability, input) {
      let value;
      try {
        value = JSON.parse(input);
      } catch (error) {
        throw invalidInput(`input is not JSON: ${error.message}`);
      }
      if (!value || typeof value !== 'object' || Array.isArray(value)) {
        throw invalidInput('input must be a JSON object');
      }
      return JSON.stringify(parts.handle(ctx, secret, capability, value) ?? null);
    },
  };
}
