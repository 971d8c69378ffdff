/**
 * createRegistry over a fake MetricsSource: every family of the README ("Metrics") is rendered; every counter of
 * the data-plane layout (SESSION_COUNTER_NAMES, TUNNEL_COUNTER_NAMES) appears as a family (or a
 * reason of l2tp_tunnel_rx_drops_total) carrying the value of its own field; labels are escaped,
 * a reused slot gets fresh labels, and deleted sessions disappear.
 */
import t from 'tap';
import { createRegistry, type MetricsSource } from '../../src/metrics/index.js';
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

t.test('a scrape of many sessions lets other work run while it renders', async (t) => {
  const { n, src, sessionCounters } = manySessions(12000);
  const reg = createRegistry(src, '9.9.9');
  let turns = 0;
  let done = false;
  const count = (): void => { if (!done) { turns++; setImmediate(count); } };
  setImmediate(count);
  const text = await reg.metrics();
  done = true;
  // 12,000 sessions × 18 session lines each, RENDER_STEP (5000) lines between turns.
  t.ok(turns >= 40, `the event loop turned ${turns} times during the scrape`);
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
