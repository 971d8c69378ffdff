/**
 * The Forwarder's per-batch work allocates nothing: with a simulated addon (the syscalls replaced
 * by copies into the pool), 4 million frames each way — decapsulation for a session id ≥ 2^31 with
 * a cookie whose peer flips its S bit on every frame (so its sending switches each time), a
 * sequenced session, encapsulation with periodic EAGAIN backpressure (block and
 * unblock), and every 32nd datagram a drop or control path (unknown session, wrong cookie,
 * foreign source, HELLOs answered and refused) — run without one garbage collection. Clock reads, closures on poll changes, boxed
 * numbers or Map keys that are heap numbers would all show up as scavenges within this many
 * batches. The frames run in a child process without coverage (test/helpers/forwarder-alloc-child.ts).
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { REPO, childEnv, childLoaderUnavailable, tsNodeArgs } from '../helpers/netlink-run.js';
import type { AllocResult } from '../helpers/forwarder-alloc-child.js';

const CHILD = join(REPO, 'test', 'helpers', 'forwarder-alloc-child.ts');
const FRAMES = 4_000_000;

t.test('forwarder: no garbage collection in 4M frames each way', { skip: childLoaderUnavailable() }, async (t) => {
  // env(1) drops what tap's process hooks put back into a spawned environment: the loader in
  // NODE_OPTIONS and coverage, whose instrumentation allocates on its own.
  const r = spawnSync('env', ['-u', 'NODE_OPTIONS', '-u', 'NODE_V8_COVERAGE', process.execPath, ...tsNodeArgs(CHILD, [String(FRAMES)])],
    { encoding: 'utf8', env: childEnv(), timeout: 120000 });
  t.equal(r.status, 0, `child exited cleanly ${r.stderr}`);
  const res = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as AllocResult;
  t.comment(`${res.written} frames decapsulated, ${res.sent} encapsulated in ${Math.round(res.ms)} ms`);
  t.equal(res.coverage, false, 'the child runs without coverage instrumentation');
  t.ok(res.written >= FRAMES * 31 / 32, 'every received frame was written to a tap');
  t.ok(res.sent >= FRAMES / 2, 'encapsulated frames went out');
  t.ok(res.sendCalls > 100, 'backpressure (block and unblock) was exercised');
  t.ok(res.unblocks > 100, `the socket blocked and was unblocked ${res.unblocks} times`);
  // Under backpressure nothing is dropped: what the taps gave is sent or still queued (at most
  // one socket queue, 4 batches).
  const data = res.sent - res.controlOut;
  t.ok(res.read - data >= 0 && res.read - data <= 4 * 64, `${res.read} frames read, ${data} sent: none dropped`);
  // Every 32nd datagram takes a drop or control path: unknown session ≥ 2^31, wrong cookie,
  // foreign source, a HELLO (answered), one for another connection ID, a malformed one.
  const each = (res.written / 31) / 6;
  for (const [name, n] of [['cookie', res.cookieDiscards], ['unknown session', res.unknownSession], ['foreign source', res.foreignSource],
    ['control in', res.controlIn], ['wrong ID and malformed control', res.controlDrops / 2]] as const) {
    t.ok(n > each * 0.9 && n < each * 1.1, `${name}: ${n} (about ${Math.round(each)})`);
  }
  t.ok(res.controlOut > 0, `${res.controlOut} control messages sent (ACKs, within the rate limit)`);
  t.equal(res.rxErrors, res.cookieDiscards, 'the only session receive errors are the wrong cookies');
  t.ok(res.rxPacketsA > 0 && res.rxPacketsB > 0, 'both sessions received');
  // Half of A's frames are numbered, every other one: each frame switches A's sending.
  t.ok(res.seqChangesA >= res.rxPacketsA / 2, `the peer's S bit switched A's sending ${res.seqChangesA} times`);
  t.equal(res.gcs, 0, 'no GC while forwarding');
});
