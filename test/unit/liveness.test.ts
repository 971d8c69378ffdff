/**
 * The control plane's liveness (src/daemon/liveness.ts) over hand-written shared rows: the
 * worker's Hello verdicts (signalled through Atomics) become tunnel and session states, one log
 * line per change (warning down, info up) and the taps' carrier; a verdict not yet known leaves
 * the carrier alone; peer_timeout takes a session down after that long without a frame and up at
 * the next one; a new tap gets the carrier re-applied.
 */
import t from 'tap';
import { Liveness, type LivenessRows } from '../../src/daemon/liveness.js';
import {
  HELLO_STATUS_BYTES, HELLO_ROW_WIDTH, HelloField as H, SESSION_DIAG_BYTES, SESSION_DIAG_WIDTH, SessionDiag as SD, SIGNAL_BYTES,
  TUNNEL_DIAG_BYTES,
} from '../../src/dataplane/status.js';
import { SESSION_COUNTER_BYTES, SESSION_ROW_WIDTH, SessionCounter as S } from '../../src/dataplane/counters.js';
import { HelloReason } from '../../src/protocol/index.js';
import type { Logger } from 'pino';

function rows(): LivenessRows {
  return {
    helloStatus: new Float64Array(new SharedArrayBuffer(HELLO_STATUS_BYTES)),
    helloSignal: new Int32Array(new SharedArrayBuffer(SIGNAL_BYTES)),
    sessionCounters: new Float64Array(new SharedArrayBuffer(SESSION_COUNTER_BYTES)),
    sessionDiag: new Float64Array(new SharedArrayBuffer(SESSION_DIAG_BYTES)),
    tunnelDiag: new Float64Array(new SharedArrayBuffer(TUNNEL_DIAG_BYTES)),
    txState: () => ({ nextSeq: 0, numbered: false, changes: 0 }),
  };
}

function logger(): { log: Logger; lines: Array<{ level: string; msg: string; fields: Record<string, unknown> }> } {
  const lines: Array<{ level: string; msg: string; fields: Record<string, unknown> }> = [];
  const at = (level: string) => (fields: Record<string, unknown>, msg: string): void => { lines.push({ level, msg, fields }); };
  return { log: { info: at('info'), warn: at('warn'), error: at('error'), debug: at('debug') } as unknown as Logger, lines };
}

/** What the worker does on a verdict: write the row, bump and notify the signal. */
function publish(dp: LivenessRows, slot: number, state: number, reason: HelloReason, transitions: number, sinceMs: number): void {
  const b = slot * HELLO_ROW_WIDTH;
  dp.helloStatus[b + H.State] = state;
  dp.helloStatus[b + H.Reason] = reason;
  dp.helloStatus[b + H.Transitions] = transitions;
  dp.helloStatus[b + H.SinceMs] = sinceMs;
  dp.helloStatus[b + H.DownAfterMs] = 8000;
  Atomics.add(dp.helloSignal, 0, 1);
  Atomics.notify(dp.helloSignal, 0);
}
const settle = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 20));

const TUNNEL = { tunnel_id: 3000, peer_tunnel_id: 4000, encap: 'udp' as const, remote: '192.0.2.2', udp_dport: 6000 };
const SESSION = { tunnel_id: 3000, session_id: 1000, peer_session_id: 2000 };

t.test('Hello verdicts drive the tunnel, its sessions, the carrier and the log', async (t) => {
  const dp = rows();
  const { log, lines } = logger();
  const carrier: Array<[number, boolean]> = [];
  let now = 1_700_000_000_000;
  const live = new Liveness(dp, log, (fd, on) => carrier.push([fd, on]), () => now);
  t.teardown(() => live.stop());
  dp.helloStatus[2 * HELLO_ROW_WIDTH + H.State] = 0;
  live.addTunnel({ ...TUNNEL, hello_interval: 1, hello_retries: 2 }, 2);
  live.addSession(SESSION, '3000/1000', 5, 42, 'pw0');
  t.same([live.tunnel(3000)?.state, live.tunnel(3000)?.known], ['down', false], 'starting');
  t.same(live.session('3000/1000')?.state, 'down');
  t.same(carrier, [], 'the carrier is not touched while starting');
  publish(dp, 2, 1, HelloReason.Answered, 1, now);
  await settle();
  t.same(live.tunnel(3000)?.state, 'up', 'up after the signal');
  t.same(carrier, [[42, true]], 'carrier on');
  t.same(lines.map((l) => `${l.level} ${l.msg}`), ['info tunnel up'], 'one info line');
  now += 10_000;
  publish(dp, 2, 0, HelloReason.NoAnswer, 2, now);
  await settle();
  t.same([live.tunnel(3000)?.state, live.session('3000/1000')?.state], ['down', 'down']);
  t.match(live.session('3000/1000')?.reason, /tunnel 3000 is down: no answer to Hello from 192\.0\.2\.2/);
  t.same(carrier.at(-1), [42, false], 'carrier off');
  t.same(lines.at(-1)?.level, 'warn', 'a warning');
  t.same(lines.at(-1)?.fields.sessions, 1, 'naming how many sessions went with it');
  t.equal(lines.length, 2, 'one line per tunnel transition, none per session that followed it');
  live.setTap('3000/1000', 43);
  t.same(carrier.at(-1), [43, false], 'a new tap gets the carrier of the state');
  publish(dp, 2, 1, HelloReason.Answered, 3, now);
  await settle();
  t.same([live.tunnel(3000)?.transitions, live.session('3000/1000')?.transitions], [3, 3], 'up, down, up: three each');
  t.same(carrier.at(-1), [43, true]);
});

t.test('peer_timeout: down without frames, up at the next one', async (t) => {
  const dp = rows();
  const { log, lines } = logger();
  const carrier: boolean[] = [];
  let now = 1_700_000_000_000;
  const live = new Liveness(dp, log, (_fd, on) => carrier.push(on), () => now);
  t.teardown(() => live.stop());
  live.addTunnel(TUNNEL, 0);
  live.addSession({ ...SESSION, peer_timeout: 2 }, 'k', 7, 9, 'pw7');
  const tick = (): void => (live as unknown as { tick(): void }).tick();
  t.match(live.session('k')?.reason, /starting/);
  now += 1000;
  tick();
  t.same([live.session('k')?.state, carrier], ['down', []], 'starting, carrier untouched');
  dp.sessionCounters[7 * SESSION_ROW_WIDTH + S.LastRxMs] = now;
  tick();
  t.same([live.session('k')?.state, carrier], ['up', [true]], 'a frame: up');
  now += 1999;
  tick();
  t.same(live.session('k')?.state, 'up', 'still up just before the timeout');
  now += 2;
  tick();
  t.same([live.session('k')?.state, carrier], ['down', [true, false]], 'down after 2 s without a frame');
  t.match(live.session('k')?.reason, /no frame from the peer for 2 s/);
  dp.sessionDiag[7 * SESSION_DIAG_WIDTH + SD.SampleMs] = now;
  tick();
  t.same([live.session('k')?.state, carrier], ['up', [true, false, true]], 'a sampled frame counts too (the tap may refuse it)');
  t.same(lines.map((l) => `${l.level} ${l.msg}`), ['info session up', 'warn session down', 'info session up']);
  live.addSession({ ...SESSION, session_id: 2, peer_timeout: 1 }, 'quiet', 8, 10, 'pw8');
  now += 1500;
  tick();
  t.same([live.session('quiet')?.state, live.session('quiet')?.known], ['down', true], 'never a frame: down once the timeout ran out');
});
