/**
 * The man pages l2tpd(8), l2tpctl(8) and l2tpd.json(5), written from the tables the programs
 * run on (daemon options, word tables, counters, the metrics registry itself), so a word, a
 * default or a metric cannot be added without its page changing too. `npm run build` writes
 * them to dist/man (`node dist/docs/manpages.js DIR`); package.json's `man` installs them.
 */
import fs from 'node:fs';
import path from 'node:path';
import { DEFAULT_SOCKET } from '../control/api.js';
import { packageVersion } from '../control/version.js';
import { SESSION_ROW_WIDTH, TUNNEL_COUNTERS, TUNNEL_ROW_WIDTH } from '../dataplane/counters.js';
import { DAEMON_OPTIONS } from '../daemon/options.js';
import { createRegistry } from '../metrics/index.js';
import { ManPage, roffText, term } from './roff.js';

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
    const dflt = `Default: \`${o.default}\`${o.env ? `, or $${o.env} when set` : ''}.`;
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
    .item(term(DEFAULT_SOCKET), 'The control API socket (`--socket`).');
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

/** Write every page into `dir` (dist/man when built). */
export async function writeManPages(dir: string): Promise<string[]> {
  fs.mkdirSync(dir, { recursive: true });
  const pages: Array<[string, string]> = [['l2tpd.8', await l2tpdPage()]];
  for (const [name, text] of pages) fs.writeFileSync(path.join(dir, name), text);
  return pages.map(([name]) => path.join(dir, name));
}

if (require.main === module) {
  writeManPages(process.argv[2] ?? path.join(__dirname, '..', 'man')).then(
    () => process.exit(0),
    (err: Error) => { console.error(`manpages: ${err.stack ?? err.message}`); process.exit(1); },
  );
}
