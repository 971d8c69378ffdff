/**
 * The README's l2tpctl synopsis and tables of words are the word tables' (src/cli/docs.ts): a
 * word added, renamed or re-documented in a table without the README (or the other way round)
 * fails here. `npm run sync-docs` rewrites them.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { readmeParts, syncReadme } from '../../src/cli/docs.js';
import { TUNNEL_WORDS } from '../../src/control/tunnel-words.js';
import { SESSION_WORDS } from '../../src/control/session-words.js';
import { ROOT } from '../helpers/paths.js';

const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');

t.test('every generated part is in the README, as the tables say', async (t) => {
  for (const name of Object.keys(readmeParts())) {
    t.ok(readme.includes(`<!-- generated: ${name} -->\n${readmeParts()[name]}\n`), `README has the current "${name}"`);
  }
  t.equal(syncReadme(readme), readme, 'nothing in the README differs from the word tables');
});

t.test('every word has a row, with its default and help', async (t) => {
  for (const [object, words] of [['tunnel', TUNNEL_WORDS], ['session', SESSION_WORDS]] as const) {
    for (const w of words) {
      const row = readme.split('\n').find((l) => l.startsWith(`| \`${w.word}\``) && l.includes(w.help));
      t.ok(row, `${object} word ${w.word} has a README row with its help`);
      t.ok(row?.split(' | ')[1] === w.defaultText, `${object} word ${w.word}: default ${w.defaultText}`);
    }
  }
});
