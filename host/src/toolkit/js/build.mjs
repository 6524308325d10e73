// Builds one JavaScript connector with the pinned componentize-js (written next to
// its node_modules by `conduit plugin build`). Not AOT: AOT downloads a binary.
//
//   node build.mjs SOURCE.js WIT_DIR OUT.wasm
import { componentize } from '@bytecodealliance/componentize-js';
import { writeFile } from 'node:fs/promises';

const [source, witPath, out] = process.argv.slice(2);
const { component } = await componentize({
  sourcePath: source,
  witPath,
  worldName: 'plugin',
  // The host links WASI for clocks, random and stdio only; outbound HTTP goes through
  // `conduit:connector/http`, never `wasi:http`.
  disableFeatures: ['http', 'fetch-event'],
});
await writeFile(out, component);
