/**
 * Documentation generated from the word tables, so that it cannot drift from them: the README's
 * l2tpctl synopsis and its tables of words. `scripts/sync-docs.mjs` rewrites the README from
 * these; `test/unit/readme.test.ts` fails when the README differs. The man pages
 * (docs/manpages.ts) and shell completion (cli/complete.ts) read the same tables.
 */
import { wordTableMarkdown } from '../control/vocabulary.js';
import { TUNNEL_WORDS } from '../control/tunnel-words.js';
import { SESSION_WORDS } from '../control/session-words.js';
import { grammarLines } from './words.js';

/** Each generated part of the README, by the name in its marker `<!-- generated: NAME -->`. */
export function readmeParts(): Record<string, string> {
  return {
    'l2tpctl grammar': ['```', ...grammarLines('', 11, 96), '```'].join('\n'),
    'tunnel words': wordTableMarkdown(TUNNEL_WORDS),
    'session words': wordTableMarkdown(SESSION_WORDS),
  };
}

const MARKER = /^<!-- generated: (.+?) -->$/;

/**
 * `readme` with every generated part replaced by what the tables say now. A part runs from the
 * line after its marker to the first blank line after it (a fenced block: to its closing fence).
 */
export function syncReadme(readme: string): string {
  const parts = readmeParts();
  const lines = readme.split('\n');
  const out: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    out.push(lines[i]);
    const m = MARKER.exec(lines[i]);
    if (!m) continue;
    const part = parts[m[1]];
    if (part === undefined) throw new Error(`README: no generated part named "${m[1]}"`);
    let j = i + 1;
    if (lines[j]?.startsWith('```')) {
      j++;
      while (j < lines.length && !lines[j].startsWith('```')) j++;
      j++;
    } else {
      while (j < lines.length && lines[j].trim() !== '') j++;
    }
    out.push(part);
    i = j - 1;
  }
  return out.join('\n');
}
