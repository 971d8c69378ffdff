/**
 * The man pages, as man(1) shows them: each is rendered with `man -l` (man-db and groff, with
 * groff's warnings on) and must render without a warning, and the rendered text must document
 * every option, word, value, config field and metric the programs accept or serve. Those are
 * collected from the programs themselves (l2tpctl --help, the word tables, a live metrics
 * registry), not listed here.
 */
import t from 'tap';
import type tap from 'tap';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import fs from 'node:fs';
import { SESSION_COUNTER_NAMES, TUNNEL_COUNTER_NAMES, TUNNEL_COUNTERS } from '../../src/dataplane/counters.js';
import { DAEMON_OPTIONS } from '../../src/daemon/options.js';
import { validateConfig } from '../../src/control/validate.js';
import { EXPLICIT_EMPTY } from '../../src/control/store.js';
import { TX_SEQ_FILE } from '../../src/control/tx-seq-store.js';
import { integer, type WordDef } from '../../src/control/vocabulary.js';
import { FIRST_WORDS, GLOBAL_OPTIONS } from '../../src/cli/complete.js';
import { commandWords, parseCommand, STATS_FLAGS } from '../../src/cli/words.js';
import {
  EXAMPLE_CONFIG, L2TPCTL_EXAMPLES, WORD_TABLES, l2tpctlPage, l2tpdJsonPage, sampleRegistry, writeManPages, type WordTables,
} from '../../src/docs/manpages.js';
import { hasCommand } from '../helpers/netns.js';
import { shortDir } from '../helpers/tmp.js';

const skip = !hasCommand('man') ? 'man (Debian man-db) is not installed'
  : !hasCommand('col') ? 'col (Debian bsdextrautils) is not installed' : false;

/** `man -l FILE` as a reader sees it (plain text), and what groff warned about. */
function render(file: string): { text: string; warnings: string; status: number | null } {
  const r = spawnSync('sh', ['-c', 'man --warnings -l "$1" | col -b', 'man', file], {
    encoding: 'utf8', timeout: 60000, env: { ...process.env, MANWIDTH: '100', MANPAGER: 'cat', PAGER: 'cat' },
  });
  return { text: r.stdout, warnings: r.stderr, status: r.status };
}

/** The words of `names` that `text` does not contain as whole words. */
function undocumented(text: string, names: Iterable<string>): string[] {
  const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return [...new Set(names)].filter((n) => !new RegExp(`(^|[^\\w-])${esc(n)}($|[^\\w])`, 'm').test(text));
}

t.test('man -l renders every page without a warning', { skip }, async (t) => {
  const files = await writeManPages(shortDir(t));
  t.same(files.map((f) => path.basename(f)).sort(), ['l2tpctl.8', 'l2tpd.8', 'l2tpd.json.5']);
  for (const f of files) {
    const r = render(f);
    t.equal(r.status, 0, `${path.basename(f)}: man exits 0`);
    t.equal(r.warnings, '', `${path.basename(f)}: no groff warnings`);
    t.match(r.text, /^NAME\n/m, `${path.basename(f)}: has a NAME section`);
  }
});

t.test('l2tpd(8) documents every option, default and metric', { skip }, async (t) => {
  const file = (await writeManPages(shortDir(t))).find((f) => f.endsWith('/l2tpd.8'))!;
  const { text } = render(file);
  t.same(undocumented(text, DAEMON_OPTIONS.flatMap((o) => [o.flag, o.default, ...(o.env ? [`$${o.env}`] : []), ...(o.values ?? [])])), []);
  // Every family a running daemon serves, from the registry itself.
  const families = [...(await sampleRegistry().metrics()).matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]);
  t.ok(families.filter((f) => f.startsWith('l2tp')).length >= 25, `${families.length} families`);
  t.same(undocumented(text, families), [], 'every metric family');
  t.same(undocumented(text, TUNNEL_COUNTERS.flatMap((c) => (c.reason ? [c.reason] : []))), [], 'every drop reason');
  // The check itself can fail: a page without a family is caught.
  t.same(undocumented(text.replace(/l2tp_sessions\b/g, 'x'), families), ['l2tp_sessions']);
  const files = sectionOf(text, 'FILES');
  t.ok(entry(files, TX_SEQ_FILE)?.includes('--state-dir'), 'FILES: the transmit numbering file, in the state directory');
});

type AnyWord = WordDef<string, any, boolean, any>;

/** Render a page's roff source (as written by one of the page functions) like `man -l`. */
function renderSource(t: tap.Test, name: string, source: string): string {
  const file = path.join(shortDir(t), name);
  fs.writeFileSync(file, source);
  const r = render(file);
  t.equal(r.warnings, '', `${name}: no groff warnings`);
  return r.text;
}

/**
 * The paragraph of the tagged item whose tag line starts with `tag`, whitespace collapsed
 * (groff justifies and wraps), or undefined when the page has no such item.
 */
function entry(text: string, tag: string): string | undefined {
  const esc = tag.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const m = new RegExp(`^ {7}${esc}(?:[ ,][^\\n]*)?\\n(?:[ \\t]+\\S[^\\n]*\\n)*`, 'm').exec(text);
  return m?.[0].replace(/\s+/g, ' ').trim();
}

/** The text of the section headed `title` (man prints headings at column 0). */
function sectionOf(text: string, title: string): string {
  const start = text.indexOf(`\n${title}\n`);
  if (start < 0) return '';
  const next = /\n[A-Z]/.exec(text.slice(start + title.length + 2));
  return text.slice(start + 1, next ? start + title.length + 2 + next.index + 1 : undefined);
}

/** What the page must say about a word's default: `Required.`, when it is required, or `Default: ...`. */
function defaultOf(w: AnyWord): string {
  if (w.required === true) return 'Required.';
  const note = typeof w.required === 'object' ? w.required.note : undefined;
  return note !== undefined ? `${note[0].toUpperCase()}${note.slice(1)}.` : `Default: ${w.defaultText.replace(/`/g, '')}.`;
}

/** Every word an item of `tables` must document: its tag, help, default and values. */
function checkWords(t: tap.Test, text: string, tables: WordTables, titles: Record<'tunnel' | 'session', string>,
  tagOf: (w: AnyWord) => string): void {
  for (const object of ['tunnel', 'session'] as const) {
    const section = sectionOf(text, titles[object]);
    t.not(section, '', `section ${titles[object]}`);
    for (const w of tables[object]) {
      const para = entry(section, tagOf(w));
      if (!t.ok(para, `${object} word ${w.word} has an entry`)) continue;
      t.ok(para!.includes(defaultOf(w)), `${object} ${w.word}: ${defaultOf(w)}`);
      // The help's first words (the rest may wrap differently once the `code` spans are gone).
      const start = w.help.replace(/`/g, '').split(' ').slice(0, 4).join(' ');
      t.ok(para!.includes(start), `${object} ${w.word}: its help`);
      for (const v of w.type.values ?? []) t.ok(para!.includes(v), `${object} ${w.word}: value ${v}`);
    }
  }
}

const L2TPCTL_SECTIONS = { tunnel: 'TUNNEL WORDS', session: 'SESSION WORDS' };
const JSON_SECTIONS = { tunnel: 'FIELDS OF TUNNELS', session: 'FIELDS OF SESSIONS' };

t.test('l2tpctl(8) documents every word, alias, value and default the CLI accepts', { skip }, async (t) => {
  const text = renderSource(t, 'l2tpctl.8', l2tpctlPage());
  checkWords(t, text, WORD_TABLES, L2TPCTL_SECTIONS, (w) => `${w.word} ${w.type.placeholder}`);
  // What the parser accepts, from its own grammar: every command, object, word, alias and value.
  const accepted = new Set<string>([...FIRST_WORDS, ...GLOBAL_OPTIONS, ...STATS_FLAGS]);
  for (const command of ['add', 'del', 'show'] as const) {
    for (const object of ['tunnel', 'session'] as const) {
      for (const w of commandWords(command, object)) for (const n of [w.name, ...w.aliases, ...(w.values ?? [])]) accepted.add(n);
    }
  }
  t.ok(accepted.size > 50, `${accepted.size} words`);
  t.same(undocumented(text, accepted), [], 'every word the CLI accepts');
  t.same(undocumented(text, [...SESSION_COUNTER_NAMES, ...TUNNEL_COUNTER_NAMES]), [], 'every counter show -s prints');
  t.same(undocumented(text.replace(/\bpsid\b/g, 'x'), accepted), ['psid'], 'a missing alias is caught');
  for (const example of L2TPCTL_EXAMPLES) {
    t.doesNotThrow(() => parseCommand(example.split(' ').slice(1).filter((w) => !STATS_FLAGS.has(w))), `example parses: ${example}`);
    t.ok(text.replace(/\s*\\\n\s*/g, ' ').includes(example), `example shown whole: ${example}`);
  }
});

t.test('l2tpd.json(5) documents every field, with what is allowed and its default', { skip }, async (t) => {
  const text = renderSource(t, 'l2tpd.json.5', l2tpdJsonPage());
  checkWords(t, text, WORD_TABLES, JSON_SECTIONS, (w) => `"${w.word}"`);
  for (const object of ['tunnel', 'session'] as const) {
    for (const w of WORD_TABLES[object].filter((x) => !x.type.values)) {
      t.ok(entry(sectionOf(text, JSON_SECTIONS[object]), `"${w.word}"`)?.includes(`Allowed: ${w.type.allowed}`), `${object} ${w.word}: allowed values`);
    }
  }
  t.doesNotThrow(() => validateConfig(EXAMPLE_CONFIG), 'the example is a valid configuration');
  t.ok(text.replace(/\s+/g, ' ').includes('"udp_dport": 6000'), 'the example is shown');
  // What the store does with a missing file (store.test.ts): empty at start, refused on reload.
  const flat = text.replace(/\s+/g, ' ');
  t.ok(flat.includes('At start, a missing or empty file means no tunnels and no sessions; on SIGHUP and l2tpctl reload it is refused'),
    'a missing file is empty at start only');
  t.ok(flat.includes(`removing everything takes an explicit ${EXPLICIT_EMPTY}`), 'and says how to remove everything');
});

t.test('a word added to a table is documented on both pages with no other change', { skip }, async (t) => {
  // As a later word (seq_mirror, ...) arrives: only its table entry exists. The name is one no table will use.
  const added: AnyWord = {
    word: 'added_for_test', type: integer('COUNT', 0, 3600), always: true, default: 60, defaultText: '60',
    help: 'Keepalives counted by the test; 0 counts none.',
  };
  const tables: WordTables = { tunnel: [...WORD_TABLES.tunnel, added], session: WORD_TABLES.session };
  for (const [name, text, tag] of [
    ['l2tpctl.8', renderSource(t, 'l2tpctl.8', l2tpctlPage(tables)), 'added_for_test COUNT'],
    ['l2tpd.json.5', renderSource(t, 'l2tpd.json.5', l2tpdJsonPage(tables)), '"added_for_test"'],
  ] as const) {
    t.match(entry(text, tag), /Keepalives counted by the test; 0 counts none\. .*Default: 60\./, `${name} documents it`);
    t.match(text, /^SYNOPSIS$/m, name);
  }
  t.equal(entry(renderSource(t, 'l2tpctl.8', l2tpctlPage()), 'added_for_test COUNT'), undefined, 'and without it, it is absent');
});
