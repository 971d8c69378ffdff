/**
 * The man pages, as man(1) shows them: each is rendered with `man -l` (man-db and groff, with
 * groff's warnings on) and must render without a warning, and the rendered text must document
 * every option, word, value, config field and metric the programs accept or serve. Those are
 * collected from the programs themselves (l2tpctl --help, the word tables, a live metrics
 * registry), not listed here.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { TUNNEL_COUNTERS } from '../../src/dataplane/counters.js';
import { DAEMON_OPTIONS } from '../../src/daemon/options.js';
import { sampleRegistry, writeManPages } from '../../src/docs/manpages.js';
import { hasCommand } from '../helpers/netns.js';
import { shortDir } from '../helpers/tmp.js';

const skip = hasCommand('man') && hasCommand('col') ? false : 'man (man-db) is not installed';

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
  t.same(files.map((f) => path.basename(f)).sort(), ['l2tpd.8']);
  for (const f of files) {
    const r = render(f);
    t.equal(r.status, 0, `${path.basename(f)}: man exits 0`);
    t.equal(r.warnings, '', `${path.basename(f)}: no groff warnings`);
    t.match(r.text, /^NAME\n/m, `${path.basename(f)}: has a NAME section`);
  }
});

t.test('l2tpd(8) documents every option, default and metric', { skip }, async (t) => {
  const [file] = await writeManPages(shortDir(t));
  const { text } = render(file);
  t.same(undocumented(text, DAEMON_OPTIONS.flatMap((o) => [o.flag, o.default, ...(o.env ? [`$${o.env}`] : []), ...(o.values ?? [])])), []);
  // Every family a running daemon serves, from the registry itself.
  const families = [...(await sampleRegistry().metrics()).matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]);
  t.ok(families.filter((f) => f.startsWith('l2tp')).length >= 25, `${families.length} families`);
  t.same(undocumented(text, families), [], 'every metric family');
  t.same(undocumented(text, TUNNEL_COUNTERS.flatMap((c) => (c.reason ? [c.reason] : []))), [], 'every drop reason');
  // The check itself can fail: a page without a family is caught.
  t.same(undocumented(text.replace(/l2tp_sessions\b/g, 'x'), families), ['l2tp_sessions']);
});
