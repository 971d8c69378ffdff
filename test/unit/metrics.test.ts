/**
 * createRegistry over a fake MetricsSource: every family of the README ("Metrics") is rendered; every counter of
 * the data-plane layout (SESSION_COUNTER_NAMES, TUNNEL_COUNTER_NAMES) appears as a family (or a
 * reason of l2tp_tunnel_rx_drops_total) carrying the value of its own field; labels are escaped,
 * a reused slot gets fresh labels, and deleted sessions disappear.
 */
import t from 'tap';
import type tap from 'tap';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRegistry, startMetricsServer, type MetricsSource } from '../../src/metrics/index.js';
import { DROP_REASON_COUNT, DropReason } from '../../src/protocol/index.js';
import {
  DROPS, SESSION_COUNTER_NAMES, SESSION_ROW_WIDTH, SessionCounter as S, TUNNEL_COUNTER_NAMES, TUNNEL_ROW_WIDTH,
} from '../../src/dataplane/counters.js';

/** Fields of slot 3 whose values the test sets by hand; every other field gets 1000 + index. */
const SET_BY_HAND: number[] = [S.RxPackets, S.TxBytes, S.LastRxMs];

/**
 * Where each data-plane counter (layout.ts names, indexed by field) appears in /metrics, so a
 * counter added to the layout without a metric fails here until it is placed.
 */
function sessionFamily(name: (typeof SESSION_COUNTER_NAMES)[number]): { family: string; type: string; scale: number } {
  return name === 'last_rx_ms'
    ? { family: 'l2tp_session_last_rx_timestamp_seconds', type: 'gauge', scale: 1000 }
    : { family: `l2tp_session_${name}_total`, type: 'counter', scale: 1 };
}
const DROP_LABEL: Record<string, string> = { drop_control: 'control_message' };
function tunnelSample(name: (typeof TUNNEL_COUNTER_NAMES)[number]): { family: string; labels: string } {
  if (name.startsWith('drop_')) {
    return { family: 'l2tp_tunnel_rx_drops_total', labels: `tunnel_id="10",reason="${DROP_LABEL[name] ?? name.slice(5)}"` };
  }
  return { family: `l2tp_tunnel_${name}_total`, labels: 'tunnel_id="10"' };
}

function source() {
  const live = { up: 1, transitions: 1, mismatches: [] as string[] };
  const sessions = [
    { tunnel_id: 10, session_id: 1, interface: 'l2tpeth0', slot: 0, ...live },
    { tunnel_id: 10, session_id: 2, interface: 'we"ird\\if', slot: 3, ...live, up: 0, transitions: 3, mismatches: ['cookie'] },
  ];
  const sessionCounters = new Float64Array(8 * SESSION_ROW_WIDTH);
  const tunnelCounters = new Float64Array(8 * TUNNEL_ROW_WIDTH);
  sessionCounters[3 * SESSION_ROW_WIDTH + S.RxPackets] = 42;
  sessionCounters[3 * SESSION_ROW_WIDTH + S.TxBytes] = 2 ** 40;
  sessionCounters[3 * SESSION_ROW_WIDTH + S.LastRxMs] = 1_700_000_000_500;
  SESSION_COUNTER_NAMES.forEach((_, i) => { if (!SET_BY_HAND.includes(i)) sessionCounters[3 * SESSION_ROW_WIDTH + i] = 1000 + i; });
  // Tunnel 10 (slot 0): field i holds 100 + i. The host row (slot 7) stays zero.
  TUNNEL_COUNTER_NAMES.forEach((_, i) => { tunnelCounters[i] = 100 + i; });
  const src: MetricsSource = {
    metricSessions: () => sessions,
    metricTunnels: () => [{ tunnel_id: 10, slot: 0, up: 0, transitions: 2, rtt_ms: 12, mismatches: ['unknown_session', 'connection_id'] }],
    sessionCounters, tunnelCounters, hostRow: 7,
  };
  return { src, sessions, sessionCounters };
}

t.test('session families', async (t) => {
  const { src, sessions, sessionCounters } = source();
  const reg = createRegistry(src, '9.9.9');
  let text = await reg.metrics();
  const weird = 'tunnel_id="10",session_id="2",interface="we\\"ird\\\\if"';
  for (const name of ['rx_packets', 'rx_bytes', 'tx_packets', 'tx_bytes', 'rx_errors', 'tx_errors',
    'rx_seq_discards', 'rx_oos_packets', 'rx_cookie_discards']) {
    t.match(text, new RegExp(`^# TYPE l2tp_session_${name}_total counter$`, 'm'), `${name} TYPE`);
    t.match(text, new RegExp(`^l2tp_session_${name}_total\\{tunnel_id="10",session_id="1",interface="l2tpeth0"\\} 0$`, 'm'));
  }
  t.ok(text.includes(`l2tp_session_rx_packets_total{${weird}} 42\n`), 'row of slot 3, escaped interface label');
  t.ok(text.includes(`l2tp_session_tx_bytes_total{${weird}} 1099511627776\n`), 'large counters exact');
  t.ok(text.includes(`l2tp_session_last_rx_timestamp_seconds{${weird}} 1700000000.5\n`), 'last rx in seconds');
  t.match(text, /^# TYPE l2tp_session_last_rx_timestamp_seconds gauge$/m);
  t.match(text, /^l2tp_sessions 2$/m);
  t.match(text, /^l2tp_tunnels 1$/m);
  t.match(text, /^l2tpd_build_info\{version="9\.9\.9",node="v[\d.]+"\} 1$/m);
  t.match(text, /^l2tp_tunnel_rx_drops_total\{tunnel_id="",reason="unknown_session"\} 0$/m, 'host row');
  t.match(text, /^process_resident_memory_bytes \d+/m, 'default process metrics');

  // Every session counter of the layout is a family, with session 2's (slot 3) value.
  SESSION_COUNTER_NAMES.forEach((name, i) => {
    const { family, type, scale } = sessionFamily(name);
    t.match(text, new RegExp(`^# TYPE ${family} ${type}$`, 'm'), `session ${name}: ${family} ${type}`);
    if (!SET_BY_HAND.includes(i)) {
      t.ok(text.includes(`${family}{${weird}} ${(1000 + i) / scale}\n`), `session ${name}: value of its own field`);
    }
  });
  // Every tunnel counter of the layout is a family (or a reason of the drops family) with tunnel
  // 10's value.
  TUNNEL_COUNTER_NAMES.forEach((name, i) => {
    const sample = tunnelSample(name);
    t.match(text, new RegExp(`^# TYPE ${sample.family} counter$`, 'm'), `tunnel ${name}: ${sample.family} counter`);
    t.ok(text.includes(`${sample.family}{${sample.labels}} ${100 + i}\n`), `tunnel ${name}: value of its own field`);
  });
  const families = [...text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]);
  t.equal(new Set(families).size, families.length, 'each family once');

  // Slot 3 reused by another session: new labels, not the cached ones. Session 1 deleted.
  sessions.splice(0, 2, { tunnel_id: 20, session_id: 7, interface: 'pw7', slot: 3, up: 1, transitions: 0, mismatches: [] });
  sessionCounters[3 * SESSION_ROW_WIDTH + S.RxPackets] = 1;
  text = await reg.metrics();
  t.ok(text.includes('l2tp_session_rx_packets_total{tunnel_id="20",session_id="7",interface="pw7"} 1\n'), 'reused slot relabelled');
  t.notOk(text.includes('interface="l2tpeth0"'), 'deleted session gone');
  t.notOk(text.includes('we\\"ird'), 'old labels gone');
  t.match(text, /^l2tp_sessions 1$/m);
});

t.test('liveness families: up, transitions, Hello RTT, mismatches', async (t) => {
  const { src } = source();
  const text = await createRegistry(src, '9.9.9').metrics();
  const weird = 'tunnel_id="10",session_id="2",interface="we\\"ird\\\\if"';
  t.match(text, /^# TYPE l2tp_session_up gauge$/m);
  t.ok(text.includes('l2tp_session_up{tunnel_id="10",session_id="1",interface="l2tpeth0"} 1\n'), 'session 1 up');
  t.ok(text.includes(`l2tp_session_up{${weird}} 0\n`), 'session 2 down');
  t.ok(text.includes(`l2tp_session_transitions_total{${weird}} 3\n`), 'session transitions');
  t.ok(text.includes(`l2tp_session_mismatch{${weird},kind="cookie"} 1\n`), 'session mismatch by kind');
  t.notOk(/l2tp_session_mismatch\{tunnel_id="10",session_id="1"/.test(text), 'none for a session without one');
  t.ok(text.includes(`l2tp_session_mismatches{${weird}} 1\n`), 'how many kinds, per session');
  t.ok(text.includes('l2tp_session_mismatches{tunnel_id="10",session_id="1",interface="l2tpeth0"} 0\n'), 'zero too');
  t.match(text, /^l2tp_tunnel_mismatches\{tunnel_id="10"\} 2$/m, 'and per tunnel');
  t.match(text, /^l2tp_tunnel_up\{tunnel_id="10"\} 0$/m);
  t.match(text, /^l2tp_tunnel_transitions_total\{tunnel_id="10"\} 2$/m);
  t.match(text, /^# TYPE l2tp_tunnel_hello_rtt_seconds gauge$/m);
  t.match(text, /^l2tp_tunnel_hello_rtt_seconds\{tunnel_id="10"\} 0\.012$/m);
  t.match(text, /^l2tp_tunnel_mismatch\{tunnel_id="10",kind="unknown_session"\} 1$/m);
  t.match(text, /^l2tp_tunnel_mismatch\{tunnel_id="10",kind="connection_id"\} 1$/m);
});

t.test('every drop reason is counted by a counter /metrics exports', async (t) => {
  // The families above carry every counter; DROPS says which counter each reason increments.
  // None is a delivered frame and Flushed a frame handed back on a reset: neither is a drop.
  for (let r = 0; r < DROP_REASON_COUNT; r++) {
    if (r === DropReason.None || r === DropReason.Flushed) continue;
    t.ok(DROPS.some((d) => d.reason === r), `drop reason ${r} has a DROPS row`);
  }
});

/** Two scrape texts equal, without the process' own families; a difference names its first line (a diff of megabytes would take minutes). */
function sameScrape(t: tap.Test, actual: string, expected: string, what: string): void {
  const ours = (text: string) => text.split('\n').filter((l) => !l.startsWith('process_') && !l.startsWith('nodejs_'));
  const a = ours(actual);
  const e = ours(expected);
  const at = a.findIndex((l, i) => l !== e[i]);
  t.ok(at < 0 && a.length === e.length, what, at < 0 && a.length === e.length ? {} : { line: at, found: a[at], wanted: e[at], lines: a.length, wantedLines: e.length });
}

/** `n` sessions in tunnel 1 (`pw<i>`, slot i), every counter at 7. */
function manySessions(n: number): { n: number; src: MetricsSource; sessionCounters: Float64Array } {
  const sessionCounters = new Float64Array(n * SESSION_ROW_WIDTH).fill(7);
  const sessions = Array.from({ length: n }, (_, i) => ({ tunnel_id: 1, session_id: i + 1, interface: `pw${i}`, slot: i, up: 1, transitions: 0, mismatches: [] }));
  const src: MetricsSource = {
    metricSessions: () => sessions, metricTunnels: () => [], sessionCounters,
    tunnelCounters: new Float64Array(TUNNEL_ROW_WIDTH), hostRow: 0,
  };
  return { n, src, sessionCounters };
}

t.test('sample values are spelled as String() spells them, at the edges of the integer path too', async (t) => {
  const values = [0, -0, 1, 9, 10, 99, 100, 123456789, 2 ** 32, 2 ** 40 + 1, 999999999999999, 1e15, 2 ** 53 - 1, 2 ** 53,
    2 ** 53 + 2, 1e20, 1e21, 1.5, 0.1, 1e-7, -1, -(2 ** 53), NaN, Infinity, -Infinity, Number.MAX_VALUE, Number.MIN_VALUE];
  const { src, sessionCounters } = manySessions(values.length);
  values.forEach((v, i) => { sessionCounters[i * SESSION_ROW_WIDTH + S.RxPackets] = v; });
  const spelled = (text: string) => [...text.matchAll(/^l2tp_session_rx_packets_total\{[^}]*session_id="(\d+)"[^}]*\} (\S+)$/gm)]
    .map((m) => [Number(m[1]), m[2]]);
  const reg = createRegistry(src, '9.9.9');
  const want = values.map((v, i) => [i + 1, String(v)]);
  t.same(spelled(await reg.metrics()), want, 'a first scrape');
  values.forEach((v, i) => { sessionCounters[i * SESSION_ROW_WIDTH + S.RxPackets] = values[values.length - 1 - i]!; });
  t.same(spelled(await reg.metrics()), values.map((_, i) => [i + 1, String(values[values.length - 1 - i])]), 'every value moved');
});

t.test('a scrape of many sessions lets other work run while it renders', async (t) => {
  const { n, src, sessionCounters } = manySessions(12000);
  const reg = createRegistry(src, '9.9.9');
  let turns = 0;
  let done = false;
  const count = (): void => { if (!done) { turns++; setImmediate(count); } };
  setImmediate(count);
  const text = await reg.metrics();
  done = true;
  // The first scrape formats every line of 12,000 sessions (over 200,000): far more than one slice.
  t.ok(turns >= 2, `the event loop turned ${turns} times during the scrape`);
  t.equal(text.split('\n').filter((l) => l.startsWith('l2tp_session_rx_packets_total{')).length, n, 'and every session is there');
  t.ok(text.includes(`l2tp_session_rx_packets_total{tunnel_id="1",session_id="${n}",interface="pw${n - 1}"} 7\n`), 'the last one too');
});

t.test('a scrape shows the counters as they were when it began, though it renders in steps', async (t) => {
  const { n, src, sessionCounters } = manySessions(12000);
  const scrape = createRegistry(src, '9.9.9').metrics();
  // Between two steps: the last session's slot now counts for another session.
  setImmediate(() => sessionCounters.fill(999, (n - 1) * SESSION_ROW_WIDTH, n * SESSION_ROW_WIDTH));
  const text = await scrape;
  t.notOk(text.includes(`interface="pw${n - 1}"} 999\n`), 'no value of the slot\'s next user under the old labels');
  t.ok(text.includes(`l2tp_session_tx_packets_total{tunnel_id="1",session_id="${n}",interface="pw${n - 1}"} 7\n`), 'the value at the start');
});

t.test('the endpoint sends the scrape as its bytes, with their length, across many chunks', async (t) => {
  const { src } = manySessions(12000);
  // A name beyond ASCII: its lines take more bytes than characters, also where a chunk fills.
  const sessions = src.metricSessions().map((s, i) => (i % 1000 === 0 ? { ...s, interface: `pwü${i}` } : s));
  const reg = createRegistry({ ...src, metricSessions: () => sessions }, '9.9.9');
  const server = await startMetricsServer(reg, '127.0.0.1', 0);
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const { port } = server.address() as AddressInfo;
  const res = await new Promise<{ length: number; body: Buffer }>((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: '/metrics' }, (r) => {
      const parts: Buffer[] = [];
      r.on('data', (d: Buffer) => parts.push(d));
      r.on('end', () => resolve({ length: Number(r.headers['content-length']), body: Buffer.concat(parts) }));
    }).on('error', reject);
  });
  t.ok(res.body.length > 4 * 2 ** 20, `more than four chunks of text (${res.body.length} bytes)`);
  t.equal(res.length, res.body.length, 'content-length is the byte count');
  const text = res.body.toString('utf8');
  t.equal(text.split('\n').filter((l) => l.startsWith('l2tp_session_rx_packets_total{')).length, 12000, 'every session');
  const perSession = text.split('\n').filter((l) => l.includes('interface="pw1"')).length;
  t.ok(perSession > 10, `${perSession} lines per session`);
  t.equal(text.split('\n').filter((l) => /interface="pwü\d+"/.test(l)).length, 12 * perSession, 'the names beyond ASCII intact, on all their lines');
  sameScrape(t, await reg.metrics(), text, 'the same text as reg.metrics()');
});

t.test('process_open_fds counts the open fds of this process', async (t) => {
  const { src } = source();
  const reg = createRegistry(src, '9.9.9');
  const value = async () => Number(/^process_open_fds (\d+)$/m.exec(await reg.metrics())?.[1]);
  const before = await value();
  t.equal(before, fs.readdirSync('/proc/self/fd').length - 1, 'as many as /proc/self/fd lists');
  const fds = [0, 1, 2, 3, 4].map(() => fs.openSync('/dev/null', 'r'));
  t.teardown(() => fds.forEach((fd) => fs.closeSync(fd)));
  t.equal(await value(), before + 5, 'five more after opening five');
});

t.test('a scrape after changes reads as one rendered afresh: lines kept from the last scrape only where nothing changed', async (t) => {
  const n = 3000;
  const sessionCounters = new Float64Array((n + 10) * SESSION_ROW_WIDTH).fill(7);
  const live = { up: 1, transitions: 0, mismatches: [] as string[] };
  let sessions = Array.from({ length: n }, (_, i) => ({ tunnel_id: 1 + (i % 3), session_id: i + 1, interface: `pw${i}`, slot: i, ...live }));
  const src: MetricsSource = {
    metricSessions: () => sessions, metricTunnels: () => [], sessionCounters, tunnelCounters: new Float64Array(TUNNEL_ROW_WIDTH), hostRow: 0,
  };
  const kept = createRegistry(src, '9.9.9');
  const check = async (what: string) => sameScrape(t, await kept.metrics(), await createRegistry(src, '9.9.9').metrics(), what);
  await check('first scrape');
  await check('nothing changed');
  for (const i of [0, 1, 1500, n - 1]) sessionCounters[i * SESSION_ROW_WIDTH + S.RxPackets] += 5;
  sessionCounters[10 * SESSION_ROW_WIDTH + S.TxBytes] = NaN;
  await check('counters moved, first, last, neighbours, one NaN');
  sessions = [{ tunnel_id: 1, session_id: 99999, interface: 'new0', slot: n + 1, ...live }, ...sessions.slice(0, 100), { tunnel_id: 2, session_id: 88888, interface: 'new1', slot: n + 2, ...live }, ...sessions.slice(100)];
  await check('sessions added in front and in the middle');
  sessions = sessions.filter((s) => s.session_id % 10 !== 3);
  await check('every tenth deleted');
  sessions = sessions.map((s) => (s.slot === 20 ? { ...s, session_id: 77777, interface: 'reused' } : s.slot === 21 ? { ...s, interface: 'renamed' } : s));
  await check('a slot taken by another session, an interface renamed');
  sessions = sessions.map((s, i) => (i % 7 === 0 ? { ...s, up: 0, transitions: 1, mismatches: ['cookie'] } : s));
  await check('liveness changed for some');
  sessions = [...sessions].reverse();
  await check('the same sessions in another order');
  sessions = [];
  await check('none left');
});

t.test('two scrapes at once each read as one rendered afresh', async (t) => {
  const { src, sessionCounters } = manySessions(12000);
  const kept = createRegistry(src, '9.9.9');
  await kept.metrics();
  sessionCounters[5 * SESSION_ROW_WIDTH + S.RxPackets] = 1;
  const expected = await createRegistry(src, '9.9.9').metrics();
  const [a, b] = await Promise.all([kept.metrics(), kept.metrics()]);
  sameScrape(t, a, expected, 'the first');
  sameScrape(t, b, expected, 'the second');
  sessionCounters[6 * SESSION_ROW_WIDTH + S.RxPackets] = 2;
  sameScrape(t, await kept.metrics(), await createRegistry(src, '9.9.9').metrics(), 'and the next one after them');
});

t.test('a response still being sent keeps its bytes while later scrapes render', async (t) => {
  const { src, sessionCounters } = manySessions(12000);
  const reg = createRegistry(src, '9.9.9');
  await reg.metrics();
  await reg.metrics();
  const expected = await createRegistry(src, '9.9.9').metrics();
  const server = await startMetricsServer(reg, '127.0.0.1', 0);
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const { port } = server.address() as AddressInfo;
  // A client that reads nothing until the later scrapes are done: most of its 20 MB wait in the server.
  const body = new Promise<string>((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: '/metrics' }, (r) => {
      r.pause();
      const parts: Buffer[] = [];
      r.on('data', (d: Buffer) => parts.push(d));
      r.on('end', () => resolve(Buffer.concat(parts).toString('utf8')));
      later.then(() => r.resume(), reject);
    }).on('error', reject);
  });
  const later = (async () => {
    await new Promise((r) => setTimeout(r, 300));
    for (let k = 1; k <= 4; k++) {
      sessionCounters.fill(100 + k);
      await reg.metrics();
    }
  })();
  sameScrape(t, await body, expected, 'the slow client gets the text of its own scrape');
});
