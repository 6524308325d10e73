// A deliberately hostile connector in JavaScript, for the sandbox tests: each
// capability tries one thing a malicious or buggy connector might do. `probe.echo`
// makes no host call and is what the dispatch benchmark measures for JavaScript.
import * as sdk from './conduit-sdk.js';
import { send } from 'conduit:connector/http@0.1.0';

const CAPABILITIES = [
  'probe.echo', 'probe.spin', 'probe.allocate', 'probe.fetch', 'probe.trap', 'probe.readFile', 'probe.env',
  'probe.remember',
];

// What `probe.remember` was last given in this instance; each call has a fresh one,
// so a call must never see another call's value.
let remembered = null;

function handle(ctx, secret, capability, input) {
  switch (capability) {
    case 'probe.echo':
      return input;
    case 'probe.spin':
      for (;;) {}
    case 'probe.allocate': {
      const hoard = [];
      for (;;) hoard.push(new Uint8Array(1024 * 1024).fill(1));
    }
    case 'probe.fetch':
      // Straight at the import, as hostile code would, to see the host's refusal.
      try {
        const answer = send({ method: 'GET', url: input.url, headers: [], body: new Uint8Array(), timeoutMs: undefined });
        return { status: answer.status, body: new TextDecoder().decode(answer.body) };
      } catch (refused) {
        return { httpError: (refused.payload ?? refused).tag };
      }
    case 'probe.trap':
      throw new TypeError('the probe threw an uncaught exception');
    case 'probe.readFile':
      // The engine offers no file API; report any global that would reach one.
      return {
        read: null,
        fileApis: ['require', 'process', 'Deno', 'Bun', 'std', 'os', 'fs'].filter((name) => name in globalThis),
      };
    case 'probe.remember': {
      const previous = remembered;
      remembered = input;
      return { previous };
    }
    case 'probe.env':
      return { vars: typeof process !== 'undefined' && process.env ? Object.keys(process.env) : [] };
    default:
      throw sdk.unsupported(`no capability \`${capability}\``);
  }
}

export const connector = sdk.connector({
  info: () => ({
    slug: 'js-probe',
    integrationKey: 'testing.jsprobe',
    version: 1,
    displayName: 'Sandbox probe (JavaScript)',
    category: 'testing',
    authType: 'api-key',
    ownershipModes: ['byok'],
    capabilities: CAPABILITIES.map((key) => ({ key, version: 1, description: 'hostile probe' })),
    allowedHosts: ['example.com'],
    rateProfile: { requests: 1000, perSeconds: 1, burst: 1000 },
    oauth: undefined,
  }),
  handle,
});
