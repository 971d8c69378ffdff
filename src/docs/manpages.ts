/**
 * The man pages l2tpd(8), l2tpctl(8) and l2tpd.json(5), written from the tables the programs
 * run on (daemon options, word tables, counters, the metrics registry itself), so a word, a
 * default or a metric cannot be added without its page changing too. `npm run build` writes
 * them to dist/man (`node dist/docs/manpages.js DIR`); package.json's `man` installs them.
 */
import fs from 'node:fs';
import path from 'node:path';
import { DEFAULT_SOCKET } from '../control/api.js';
import { EXPLICIT_EMPTY } from '../control/store.js';
import { TX_SEQ_FILE } from '../control/tx-seq-store.js';
import { packageVersion } from '../control/version.js';
import { wrapWords, type WordDef } from '../control/vocabulary.js';
import { TUNNEL_WORDS } from '../control/tunnel-words.js';
import { SESSION_WORDS } from '../control/session-words.js';
import { SESSION_COUNTERS, SESSION_ROW_WIDTH, TUNNEL_COUNTERS, TUNNEL_ROW_WIDTH } from '../dataplane/counters.js';
import { DAEMON_OPTIONS, DEFAULT_CONFIG } from '../daemon/options.js';
import { grammarLines, STATS_FLAGS } from '../cli/words.js';
import { createRegistry } from '../metrics/index.js';
import { ManPage, placeholder, roffText, term } from './roff.js';

/** One metric family as /metrics serves it: name, type, help and the labels of its samples. */
export interface MetricFamily {
  name: string;
  type: string;
  help: string;
  labels: string[];
}

/**
 * The metrics registry of a daemon that runs one tunnel with one session; the tunnel runs Hello
 * and both report a mismatch, so every liveness family has a sample.
 */
export function sampleRegistry(): ReturnType<typeof createRegistry> {
  return createRegistry({
    metricSessions: () => [{ tunnel_id: 1, session_id: 1, interface: 'pw0', slot: 0, up: 1, transitions: 1, mismatches: ['cookie'] }],
    metricTunnels: () => [{ tunnel_id: 1, slot: 0, up: 1, transitions: 1, rtt_ms: 1, mismatches: ['unknown_session'] }],
    sessionCounters: new Float64Array(SESSION_ROW_WIDTH),
    tunnelCounters: new Float64Array(2 * TUNNEL_ROW_WIDTH),
    hostRow: 1,
  }, packageVersion());
}

/** Every family such a daemon serves, read from the real registry. */
export async function metricFamilies(): Promise<MetricFamily[]> {
  const reg = sampleRegistry();
  const families = new Map<string, MetricFamily>();
  let current: MetricFamily | undefined;
  for (const line of (await reg.metrics()).split('\n')) {
    const meta = /^# (HELP|TYPE) (\S+) (.*)$/.exec(line);
    if (meta) {
      current = families.get(meta[2]) ?? { name: meta[2], type: '', help: '', labels: [] };
      families.set(meta[2], current);
      if (meta[1] === 'HELP') current.help = meta[3]; else current.type = meta[3];
      continue;
    }
    const labels = /^[^{\s]+\{([^}]*)\}/.exec(line)?.[1];
    if (current && labels) {
      for (const [, k] of labels.matchAll(/(\w+)="/g)) if (!current.labels.includes(k) && k !== 'le' && k !== 'quantile') current.labels.push(k);
    }
  }
  return [...families.values()];
}

const SEE_ALSO = (except: string) => ['l2tpd(8)', 'l2tpctl(8)', 'l2tpd.json(5)', 'ip-l2tp(8)', 'systemd.netdev(5)']
  .filter((p) => p !== except).map((p) => { const m = /^(.+)\((\d)\)$/.exec(p)!; return `.BR ${m[1]} (${m[2]})`; })
  .join(',\n');

export async function l2tpdPage(version = packageVersion()): Promise<string> {
  const page = new ManPage('l2tpd', 8, version, 'System Manager\'s Manual');
  page.section('name').raw('l2tpd \\- userspace L2TPv3 pseudowire daemon');
  page.section('synopsis').raw('.B l2tpd',
    ...DAEMON_OPTIONS.map((o) => `[${term(o.flag, o.placeholder)}]`), '.br', '.B l2tpd \\-\\-help', '|', '.B \\-\\-version');
  page.section('description')
    .paragraph('l2tpd runs static ("unmanaged") L2TPv3 tunnels and sessions, the ones `ip l2tp` sets up in the kernel, '
      + 'in user space: over UDP or IP (protocol 115), on IPv4 or IPv6, with one tap interface per session that it '
      + 'creates, brings up and (with `bridge`) puts in a bridge. It carries Ethernet frames between each tap and its '
      + 'tunnel\'s socket in batches, counts every frame and every drop by reason, and serves the counters to Prometheus.')
    .paragraph('What runs is what the configuration file says (l2tpd.json(5)). l2tpctl(8) changes it through the control '
      + 'API with the words of `ip l2tp`; every change is validated whole, applied, and written back to the file '
      + 'atomically, so a restart restores exactly what ran. A request that is refused changes nothing. Entries of the '
      + 'file that cannot start (an address not on the host yet) are logged, kept, shown with state down, and tried '
      + 'again.')
    .paragraph('One l2tpd runs per network namespace: before it touches anything, it claims the abstract UNIX socket '
      + '`@l2tpd` of its namespace, and a second instance exits saying which one holds it.');
  page.section('options');
  for (const o of DAEMON_OPTIONS) {
    const dflt = `Default: ${o.defaultText ?? `\`${o.default}\``}${o.env ? `, or $${o.env} when set` : ''}.`;
    const values = o.values ? ` One of ${o.values.map((v) => `\`${v}\``).join(', ')}.` : '';
    page.item(term(o.flag, o.placeholder), `${o.help}${values} ${dflt}`);
  }
  page.item(`${term('--help')}, ${term('--version')}`, 'Print the options, or the version, and exit.');
  page.section('signals')
    .item(term('SIGHUP'), 'Read the configuration file again and apply only the difference (as `l2tpctl reload`); '
      + 'sessions that did not change keep forwarding. A file with an error is refused whole and what runs is kept.')
    .item(`${term('SIGTERM')}, ${term('SIGINT')}`, 'Stop cleanly: close the control API and /metrics, stop forwarding. '
      + 'Session interfaces are kept, so a new l2tpd takes them over.');
  page.section('metrics').paragraph(`/metrics on \`--metrics-listen\` (default \`${DAEMON_OPTIONS.find((o) => o.flag === '--metrics-listen')!.default}\`) `
    + 'serves these families, read from the data plane\'s counters at scrape time. Session families carry the labels '
    + '`tunnel_id`, `session_id` and `interface`; tunnel families `tunnel_id`. Bytes count the L2TPv3 header plus the '
    + 'frame, as the kernel does.');
  const families = await metricFamilies();
  const ours = families.filter((f) => /^l2tpd?_/.test(f.name));
  for (const f of ours) {
    const labels = f.labels.length ? ` Labels: ${f.labels.map((l) => `\`${l}\``).join(', ')}.` : '';
    page.item(`\\fB${roffText(f.name)}\\fR (${f.type})`, `${f.help}${labels}`);
  }
  page.paragraph('The reasons of `l2tp_tunnel_rx_drops_total`:');
  for (const c of TUNNEL_COUNTERS.filter((x) => x.reason !== undefined)) page.item(term(c.reason!), c.help);
  const node = families.filter((f) => !/^l2tpd?_/.test(f.name)).map((f) => `\`${f.name}\``);
  page.paragraph(`Node.js process metrics (prom-client's defaults): ${node.join(', ')}.`);
  page.section('files')
    .item(term(DAEMON_OPTIONS.find((o) => o.flag === '--config')!.default), 'The configuration file (l2tpd.json(5)).')
    .item(term(DEFAULT_SOCKET), 'The control API socket (`--socket`).')
    .item(term(TX_SEQ_FILE), `In the state directory (\`--state-dir\`, default ${DAEMON_OPTIONS.find((o) => o.flag === '--state-dir')!.defaultText}): `
      + 'the next transmit sequence number of each session, so that numbering resumes where it stopped after a restart '
      + '(ahead of it after a crash). Written atomically.');
  page.section('environment');
  for (const o of DAEMON_OPTIONS.filter((x) => x.env)) page.item(term(o.env!), `The default of \`${o.flag}\`, when set and not empty.`);
  page.item(term('NOTIFY_SOCKET'), 'Set by systemd for Type=notify: l2tpd reports readiness once it forwards and answers.');
  page.section('exit status')
    .item(term('0'), 'Stopped by SIGTERM or SIGINT.')
    .item(term('1'), 'Could not start (another l2tpd runs in this network namespace, the configuration file cannot be '
      + 'read or parsed, a listener cannot be opened), or the data plane failed.')
    .item(term('2'), 'A bad option or option value; nothing was read or started.');
  page.section('see also').raw(SEE_ALSO('l2tpd(8)'));
  return page.toString();
}

type AnyWord = WordDef<string, any, boolean, any>;

/** The word tables the l2tpctl(8) and l2tpd.json(5) pages are written from (a test passes others). */
export interface WordTables {
  tunnel: readonly AnyWord[];
  session: readonly AnyWord[];
}
export const WORD_TABLES: WordTables = { tunnel: TUNNEL_WORDS, session: SESSION_WORDS };

/** `Required.`, or the default, and when the word is required only in some cases. */
function defaultSentence(w: AnyWord): string {
  if (w.required === true) return 'Required.';
  // A word required only in some cases says when (`required with encap udp`).
  const note = typeof w.required === 'object' ? w.required.note : undefined;
  if (note !== undefined) return `${note[0].toUpperCase()}${note.slice(1)}.`;
  return `Default: ${w.defaultText}.`;
}

/** An enum word's values, or what its placeholder stands for. */
function valueSentence(w: AnyWord, withPlaceholder: boolean): string {
  const t = w.type;
  if (t.values) return ` One of ${t.values.map((v: string) => `\`${v}\``).join(', ')}.`;
  return withPlaceholder ? ` ${t.placeholder}: ${t.means ?? t.allowed}.` : ` Allowed: ${t.allowed}.`;
}

/** The command lines l2tpctl(8) shows as examples; the test parses each. */
export const L2TPCTL_EXAMPLES: readonly string[] = [
  'l2tpctl add tunnel tunnel_id 3000 peer_tunnel_id 4000 encap udp local 192.0.2.1 remote 192.0.2.2 udp_sport 5000 udp_dport 6000',
  'l2tpctl add session name pw0 tunnel_id 3000 session_id 1000 peer_session_id 2000 bridge br0',
  'l2tpctl show session -s',
  'l2tpctl del session tunnel_id 3000 session_id 1000',
  'l2tpctl import --dry-run site-a.sh',
];

export function l2tpctlPage(tables: WordTables = WORD_TABLES, version = packageVersion()): string {
  const page = new ManPage('l2tpctl', 8, version, 'System Manager\'s Manual');
  page.section('name').raw('l2tpctl \\- control l2tpd with the words of ip l2tp');
  page.section('synopsis').raw('.nf', ...grammarLines('l2tpctl ', 8, 78).map(roffText), '.fi');
  page.section('description')
    .paragraph('l2tpctl asks the running l2tpd(8) to add, delete and show static L2TPv3 tunnels and sessions, with the '
      + 'words of `ip l2tp` (ip-l2tp(8)): a line that works with `ip l2tp` works with l2tpctl. Words may be '
      + 'abbreviated as iproute2 allows for the commands (`del`, `sh`, `list`, `lst`), and the object may come before '
      + 'the command (`l2tpctl tunnel show`). Each change is validated by the daemon, applied and written to its '
      + 'configuration file (l2tpd.json(5)); a refused command changes nothing and says which word, which value and '
      + 'what is allowed.');
  page.section('options')
    .item(term('--socket', 'PATH'), `The control socket of l2tpd. Default: \`${DEFAULT_SOCKET}\`, or $L2TPD_SOCKET when set.`)
    .item(`${term('-j')}, ${term('--json')}, ${term('-json')}`, 'Print complete objects as JSON instead of the `ip l2tp` layout.')
    .item([...STATS_FLAGS].map((f) => term(f)).join(', '),
      'With `show`: print the counters too (see COUNTERS). Allowed anywhere on the command line, as iproute2 allows it.')
    .item(`${term('-V')}, ${term('--version')}`, 'Print the version and exit.')
    .item(`${term('-h')}, ${term('--help')}, ${term('help')}`, 'Print the command lines and the words, and exit.');
  page.section('commands')
    .item(term('add tunnel', 'WORDS'), 'Create a tunnel: its socket is opened at once (see TUNNEL WORDS).')
    .item(term('add session', 'WORDS'), 'Create a session in a tunnel, with its tap interface (see SESSION WORDS).')
    .item(term('del tunnel tunnel_id', 'ID'), 'Delete a tunnel; refused while it has sessions, as in the kernel.')
    .item(`${term('del session tunnel_id', 'ID')} ${term('session_id', 'ID')}`,
      'Delete a session and the tap interface l2tpd created for it.')
    .item(`${term('show tunnel')} [${term('tunnel_id', 'ID')}] [${term('-s')}]`, 'Print the tunnels (or one) in `ip l2tp show tunnel`\'s layout, with their state.')
    .item(`${term('show session')} [${term('tunnel_id', 'ID')}] [${term('session_id', 'ID')}] [${term('-s')}]`,
      'Print the sessions (of a tunnel, or one) in `ip l2tp show session`\'s layout, with interface, MTU and state.')
    .item(term('reload'), 'Make the daemon read its configuration file again and apply only the difference (as SIGHUP).')
    .item(term('status'), 'Print the daemon\'s version, uptime and how many tunnels and sessions run.')
    .item(`${term('import')} [${term('--dry-run')}] ${placeholder('FILE')}...`,
      'Read `ip l2tp` commands (a script, with `\\` continuations and comments, and the `ip link set` lines that go with '
      + 'them) or systemd-networkd `.netdev` files (`[L2TP]`, `[L2TPSession]`) and apply them through the daemon, '
      + 'or with `--dry-run` print the configuration they give. A word that cannot be mapped is named with its file '
      + 'and line, and then nothing is applied. FILE `-` is standard input.');
  for (const object of ['tunnel', 'session'] as const) {
    page.section(`${object} words`);
    for (const w of tables[object]) {
      const names = [term(w.word, w.type.placeholder), ...(w.aliases ?? []).map((a: string) => term(a))].join(', ');
      page.item(names, `${w.help}${valueSentence(w, true)} ${defaultSentence(w)}`);
    }
  }
  page.section('counters').paragraph('`show -s` prints these counters of each session, as its metrics (l2tpd(8)) count them:');
  for (const c of SESSION_COUNTERS) page.item(term(c.name), c.help);
  page.paragraph('and of each tunnel:');
  for (const c of TUNNEL_COUNTERS) page.item(term(c.name), c.help);
  page.section('environment').item(term('L2TPD_SOCKET'), 'The control socket, when `--socket` is not given.');
  page.section('exit status')
    .item(term('0'), 'Done.')
    .item(term('1'), 'The daemon refused the command, or could not be reached.')
    .item(term('2'), 'A bad command line (an unknown word, a bad value, a missing word); nothing was sent.');
  // Long lines are continued with `\\`, so that each example still pastes into a shell.
  page.section('examples').example(L2TPCTL_EXAMPLES.flatMap((cmd) => {
    const [head, ...words] = cmd.split(' ');
    return wrapWords(head, words, 4, 72).map((l, i, all) => (i < all.length - 1 ? `${l} \\` : l));
  }));
  page.section('see also').raw(SEE_ALSO('l2tpctl(8)'));
  return page.toString();
}

/** The configuration l2tpd.json(5) shows; the test validates it. */
export const EXAMPLE_CONFIG = {
  tunnels: [{ tunnel_id: 3000, peer_tunnel_id: 4000, encap: 'udp', local: '192.0.2.1', remote: '192.0.2.2', udp_sport: 5000, udp_dport: 6000 }],
  sessions: [{ tunnel_id: 3000, session_id: 1000, peer_session_id: 2000, name: 'pw0', bridge: 'br0' }],
};

export function l2tpdJsonPage(tables: WordTables = WORD_TABLES, version = packageVersion()): string {
  const page = new ManPage('l2tpd.json', 5, version, 'File Formats Manual');
  page.section('name').raw('l2tpd.json \\- configuration file of l2tpd');
  page.section('synopsis').raw(term(DEFAULT_CONFIG));
  page.section('description')
    .paragraph('The tunnels and sessions l2tpd(8) runs: a JSON object with two arrays, `tunnels` and `sessions` (both '
      + 'optional), whose entries have the words of l2tpctl(8) as fields, under their full names (not the short '
      + 'aliases). Any other field is refused.')
    .paragraph('Numbers are JSON numbers or decimal strings (`"3000"`); enum values are case-insensitive; `on`/`off` '
      + 'fields also take `true`/`false`. The daemon fills in the defaults and, after every change made through '
      + 'l2tpctl(8), rewrites the file atomically (a new file renamed over the old) with the fields in the order below.')
    .paragraph('The file is read at start, on SIGHUP and on `l2tpctl reload`. A file with any error is refused whole, '
      + 'with a message naming the entry, the field, the value and what is allowed '
      + '(`sessions[1].session_id 1000: session 1000 already exists in tunnel 3000`), and what runs is kept. At start, a '
      + 'missing or empty file means no tunnels and no sessions; on SIGHUP and `l2tpctl reload` it is refused like a '
      + 'bad file (a file that vanished or was truncated is more likely a mistake than the wish to remove everything), '
      + `and removing everything takes an explicit \`${EXPLICIT_EMPTY}\`.`);
  for (const [object, title] of [['tunnel', 'tunnels'], ['session', 'sessions']] as const) {
    page.section(`fields of ${title}`);
    for (const w of tables[object]) page.item(term(`"${w.word}"`), `${w.help}${valueSentence(w, false)} ${defaultSentence(w)}`);
  }
  page.section('example').example(JSON.stringify(EXAMPLE_CONFIG, null, 2).split('\n'));
  page.section('files').item(term(DEFAULT_CONFIG), 'The default path (`l2tpd --config`).');
  page.section('see also').raw(SEE_ALSO('l2tpd.json(5)'));
  return page.toString();
}

/** Write every page into `dir` (dist/man when built). */
export async function writeManPages(dir: string): Promise<string[]> {
  fs.mkdirSync(dir, { recursive: true });
  const pages: Array<[string, string]> = [
    ['l2tpd.8', await l2tpdPage()], ['l2tpctl.8', l2tpctlPage()], ['l2tpd.json.5', l2tpdJsonPage()],
  ];
  for (const [name, text] of pages) fs.writeFileSync(path.join(dir, name), text);
  return pages.map(([name]) => path.join(dir, name));
}

if (require.main === module) {
  writeManPages(process.argv[2] ?? path.join(__dirname, '..', 'man')).then(
    () => process.exit(0),
    (err: Error) => { console.error(`manpages: ${err.stack ?? err.message}`); process.exit(1); },
  );
}
