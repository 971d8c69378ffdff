#!/usr/bin/env node
// Rewrites the generated parts of README.md from the word tables (src/cli/docs.ts), using the
// build in dist/: run `npm run build` first. `test/unit/readme.test.ts` checks they agree.
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const root = new URL('..', import.meta.url).pathname;
const require = createRequire(import.meta.url);
const { syncReadme } = require(`${root}dist/cli/docs.js`);
const file = `${root}README.md`;
const before = readFileSync(file, 'utf8');
const after = syncReadme(before);
if (after === before) {
  console.log('README.md: generated parts are up to date');
} else {
  writeFileSync(file, after);
  console.log('README.md: generated parts rewritten from the word tables');
}
