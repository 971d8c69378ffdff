/**
 * Each session's send numbering across stops (src/daemon/tx-sequencing.ts, the file in
 * src/control/tx-seq-store.ts): exact after a clean stop, SEQ_CRASH_SKIP ahead after a crash,
 * saved whenever it moved SEQ_SAVE_STRIDE, forgotten for a deleted session; and the peer's S bit
 * switching a session's sending reported once per switch, at most every SEQ_LOG_INTERVAL_MS per
 * session and SEQ_LOG_LINES_MAX sessions per check, however fast a peer flips it. Whether a
 * session numbers is kept with its number; the file says `clean: false` from load on, and after a
 * stop the data plane did not confirm.
 */
import fs from 'node:fs';
import path from 'node:path';
import pino from 'pino';
import t from 'tap';
import type tap from 'tap';
import { TxSeqStore, TX_SEQ_FILE, type TxSeqEntry } from '../../src/control/tx-seq-store.js';
import { SEQ_LOG_INTERVAL_MS, SEQ_LOG_LINES_MAX, TxSequencing, type TxSession } from '../../src/daemon/tx-sequencing.js';
import { SEQ_CRASH_SKIP, SEQ_MASK, SEQ_SAVE_STRIDE } from '../../src/protocol/index.js';
import { shortDir } from '../helpers/tmp.js';

/** The data plane's shared state, as a table the test writes. */
class FakeTx {
  readonly rows = new Map<number, { nextSeq: number; numbered: boolean; changes: number }>();
  txState(slot: number) { return this.rows.get(slot) ?? { nextSeq: 0, numbered: false, changes: 0 }; }
  set(slot: number, v: Partial<{ nextSeq: number; numbered: boolean; changes: number }>) { this.rows.set(slot, { ...this.txState(slot), ...v }); }
}

function harness(t: tap.Test, files: Record<string, string> = {}) {
  const dir = shortDir(t, files);
  const logs: Array<{ level: number; msg: string; [k: string]: unknown }> = [];
  const log = pino({ level: 'debug' }, { write: (line: string) => { logs.push(JSON.parse(line)); } });
  const dp = new FakeTx();
  let now = 1_000_000;
  const store = new TxSeqStore(dir);
  const tx = new TxSequencing(store, dp, log, () => now);
  const file = () => JSON.parse(fs.readFileSync(path.join(dir, TX_SEQ_FILE), 'utf8')) as
    { clean: boolean; sessions: Record<string, { next: number; numbered?: boolean }> };
  return { dir, logs, dp, tx, store, file, advance: (ms: number) => { now += ms; } };
}

const sess = (n: number): TxSession => ({ key: `100/${n}`, tunnelId: 100, sessionId: n, slot: n });
/** `seq none` / `seq send`, following the peer's S bit (the default). */
const SEQ_NONE = { seqSend: false, seqMirror: true };
const SEQ_SEND = { seqSend: true, seqMirror: true };
const nextOf = (tx: TxSequencing, key: string) => tx.startAt(key, SEQ_NONE).nextSeq;

t.test('the file: exact numbers after a clean stop, and what is wrong in it is said and skipped', async (t) => {
  const dir = shortDir(t);
  const store = new TxSeqStore(dir);
  t.same(store.load(), { next: new Map(), clean: false, found: false }, 'no file: nothing to resume, no complaint');
  const entries = new Map([['100/2', { next: 5, numbered: true }], ['100/10', { next: SEQ_MASK, numbered: false }], ['100/11', { next: 9 }]]);
  store.save(entries, true);
  t.same(store.load(), { next: entries, clean: true, found: true });
  const written = JSON.parse(fs.readFileSync(store.path, 'utf8')) as { sessions: object };
  t.same(Object.keys(written.sessions), ['100/2', '100/10', '100/11'], 'in the order of tunnel and session ids, as numbers');
  t.equal((fs.statSync(store.path).mode & 0o777), 0o640, 'mode 0640');
  t.same(fs.readdirSync(dir), [TX_SEQ_FILE], 'no temporary file left');
  fs.writeFileSync(store.path, JSON.stringify({ clean: true, sessions: {
    '100/1': 3, '100/4': { next: 4, numbered: true }, x: 1, '100/2': -1, '100/3': 2 ** 24, '100/5': { next: 1, numbered: 'yes' }, '100/6': {},
  } }));
  const r = store.load();
  t.same([...r.next], [['100/1', { next: 3 }], ['100/4', { next: 4, numbered: true }]], 'only well-formed entries; a bare number is an older file\'s');
  t.match(r.error, /entries ignored .*: x, 100\/2, 100\/3, 100\/5, 100\/6/, 'the others are named');
  fs.writeFileSync(store.path, '{"clean": tr');
  t.match(store.load(), { found: true, clean: false, error: /invalid JSON/ }, 'a broken file is reported, not fatal');
});

t.test('the file\'s text is JSON.stringify(…, null, 2) of the entries in id order, however they changed between saves', async (t) => {
  const store = new TxSeqStore(shortDir(t));
  const reference = (entries: Map<string, TxSeqEntry>, clean: boolean): string => {
    const ids = (k: string) => k.split('/').map(Number);
    const keys = [...entries.keys()].sort((a, b) => ids(a)[0] - ids(b)[0] || ids(a)[1] - ids(b)[1]);
    return `${JSON.stringify({ clean, sessions: Object.fromEntries(keys.map((k) => [k, { ...entries.get(k) }])) }, null, 2)}\n`;
  };
  const entries = new Map<string, TxSeqEntry>();
  const check = (clean: boolean, what: string) => {
    store.save(entries, clean);
    t.equal(fs.readFileSync(store.path, 'utf8'), reference(entries, clean), what);
  };
  check(false, 'no sessions');
  for (let i = 20; i > 0; i--) entries.set(`${i % 3 + 1}/${i * 7}`, { next: i, numbered: i % 2 === 0 });
  check(false, 'first save');
  entries.set('2/14', { next: 99, numbered: true });
  entries.set('1/21', { next: 3, numbered: false });
  check(false, 'numbers and numbering changed');
  entries.delete('3/14');
  entries.set('1/1', { next: 1 });
  check(true, 'one key gone, one new, with the same count');
  entries.set('10/5', { next: SEQ_MASK, numbered: true });
  check(true, 'a key added');
  entries.clear();
  check(false, 'all gone');
});

t.test('start-up removes the file\'s temp files that dead writers left, and only those', async (t) => {
  // A pid that is not running: the largest pid this kernel hands out, plus one.
  const dead = `${TX_SEQ_FILE}.tmp-${Number(fs.readFileSync('/proc/sys/kernel/pid_max', 'utf8')) + 1}`;
  const keep = [`${TX_SEQ_FILE}.tmp-${process.ppid}`, `${TX_SEQ_FILE}.tmp-x1`, 'l2tpd.json.tmp-1'];
  const saved = JSON.stringify({ clean: true, sessions: { '100/1': 500 } });
  const h = harness(t, { [TX_SEQ_FILE]: saved, [dead]: '{"clean": tr', ...Object.fromEntries(keep.map((n) => [n, '{'])) });
  h.tx.load(new Set(['100/1']));
  t.same(fs.readdirSync(h.dir).sort(), [TX_SEQ_FILE, ...keep].sort(), 'the dead writer\'s temp file is gone; live, odd and other files stay');
  t.match(h.logs, [{ msg: /removed a send numbering temp file/, file: dead }], 'and its removal is logged');
  t.equal(nextOf(h.tx, '100/1'), 500, 'the file itself is read as before');
});

t.test('resuming: exact after a clean stop, SEQ_CRASH_SKIP ahead after a crash, only for configured sessions', async (t) => {
  const clean = harness(t, { [TX_SEQ_FILE]: JSON.stringify({ clean: true, sessions: { '100/1': 500, '100/9': 7 } }) });
  clean.tx.load(new Set(['100/1', '100/2']));
  t.same([nextOf(clean.tx, '100/1'), nextOf(clean.tx, '100/2'), nextOf(clean.tx, '100/9')], [500, 0, 0],
    'exact; a session without a number starts at 0; one no longer configured is forgotten');
  t.same(clean.logs.filter((l) => l.level >= 40), [], 'nothing to warn about');

  const crashed = harness(t, { [TX_SEQ_FILE]: JSON.stringify({ clean: false, sessions: { '100/1': 500, '100/2': SEQ_MASK - 10 } }) });
  crashed.tx.load(new Set(['100/1', '100/2']));
  t.same([nextOf(crashed.tx, '100/1'), nextOf(crashed.tx, '100/2')], [500 + SEQ_CRASH_SKIP, SEQ_CRASH_SKIP - 11], 'skipped ahead, wrapping at 2^24');
  t.match(crashed.logs.find((l) => l.level === 40), { sessions: 2, skip: SEQ_CRASH_SKIP, msg: /did not stop cleanly/ }, 'said once');

  // The file is written shortly after an add: a session added just before the crash may be missing.
  const added = harness(t, { [TX_SEQ_FILE]: JSON.stringify({ clean: false, sessions: { '100/1': 500 } }) });
  added.tx.load(new Set(['100/1', '100/3']));
  t.equal(nextOf(added.tx, '100/3'), SEQ_CRASH_SKIP, 'after a crash, a configured session the file lacks starts ahead too');
  const fresh = harness(t);
  fresh.tx.load(new Set(['100/3']));
  t.equal(nextOf(fresh.tx, '100/3'), 0, 'with no file at all, at 0');
});

t.test('saving: at start, when numbering moved a stride, on a clean stop; a deleted session is forgotten', async (t) => {
  const h = harness(t);
  h.tx.load(new Set(['100/1', '100/2']));
  const running = [sess(1), sess(2)];
  for (const s of running) h.tx.started(s);
  h.tx.flush(running);
  t.same(h.file(), { clean: false, sessions: { '100/1': { next: 0, numbered: false }, '100/2': { next: 0, numbered: false } } }, 'written at start, not clean');

  const mtime = () => fs.statSync(path.join(h.dir, TX_SEQ_FILE)).mtimeMs;
  const before = h.file();
  h.dp.set(1, { nextSeq: SEQ_SAVE_STRIDE - 1 });
  h.advance(1000);
  const m0 = mtime();
  h.tx.check(running);
  t.same(h.file(), before, 'less than a stride: not written');
  t.equal(mtime(), m0);
  h.dp.set(1, { nextSeq: SEQ_SAVE_STRIDE });
  h.tx.check(running);
  t.same(h.file().sessions, { '100/1': { next: SEQ_SAVE_STRIDE, numbered: false }, '100/2': { next: 0, numbered: false } }, 'a stride: written');
  // Across the wrap: from SEQ_MASK - 5 to 2^20 - 10 is a stride minus 4.
  h.dp.set(1, { nextSeq: SEQ_MASK - 5 });
  h.tx.check(running);
  h.dp.set(1, { nextSeq: SEQ_SAVE_STRIDE - 10 });
  h.tx.check(running);
  t.equal(h.file().sessions['100/1'].next, SEQ_MASK - 5, 'distance is measured modulo 2^24');

  h.dp.set(2, { nextSeq: 42 });
  h.tx.stopped(sess(2), false);
  h.tx.flush([sess(1)]);
  t.equal(h.file().sessions['100/2'].next, 42, 'stopped (reload, restart): its exact number is kept');
  t.equal(nextOf(h.tx, '100/2'), 42, 'and it resumes there');
  h.tx.stopped(sess(1), true);
  h.tx.flush([]);
  t.same(Object.keys(h.file().sessions), ['100/2'], 'deleted: forgotten (a new session starts at 0)');
  t.equal(nextOf(h.tx, '100/1'), 0);
  h.tx.flush([], true);
  t.same(h.file(), { clean: true, sessions: { '100/2': { next: 42, numbered: false } } }, 'a clean stop says so');
});

t.test('whether a session numbers is kept with its number: across a restart and a re-creation', async (t) => {
  // seq recv against a Linux seq send: the kernel's numbered frames turned l2tpd's numbering on.
  const h = harness(t);
  h.tx.load(new Set(['100/1', '100/2']));
  const running = [sess(1), sess(2)];
  for (const s of running) h.tx.started(s);
  h.dp.set(1, { nextSeq: 77, numbered: true, changes: 1 });
  h.dp.set(2, { nextSeq: 5, numbered: false, changes: 1 });
  h.tx.stopped(sess(1), false);
  t.same(h.tx.startAt('100/1', SEQ_NONE), { nextSeq: 77, numbered: true }, 're-created (reload): numbering as the worker had it, not as `seq` says');
  h.tx.flush([sess(2)]);
  h.tx.stopped(sess(2), false);
  h.tx.flush([], true);
  t.same(h.file().sessions, { '100/1': { next: 77, numbered: true }, '100/2': { next: 5, numbered: false } }, 'written next to the number');

  const after = new TxSequencing(h.store, h.dp, pino({ level: 'silent' }));
  after.load(new Set(['100/1', '100/2']));
  t.same(after.startAt('100/1', SEQ_NONE), { nextSeq: 77, numbered: true }, 'after a restart: still numbering');
  t.same(after.startAt('100/2', SEQ_SEND), { nextSeq: 5, numbered: false }, 'and one the peer turned off stays off');
  t.same(after.startAt('100/1', { seqSend: false, seqMirror: false }), { nextSeq: 77, numbered: false }, 'seq_mirror off: `seq` decides');
  after.forgetNumbering('100/1');
  t.same(after.startAt('100/1', SEQ_NONE), { nextSeq: 77, numbered: false }, 'a changed `seq` decides again, the number is kept');

  const old = harness(t, { [TX_SEQ_FILE]: JSON.stringify({ clean: true, sessions: { '100/1': 9 } }) });
  old.tx.load(new Set(['100/1']));
  t.same([old.tx.startAt('100/1', SEQ_SEND), old.tx.startAt('100/1', SEQ_NONE)], [{ nextSeq: 9, numbered: true }, { nextSeq: 9, numbered: false }],
    'an older file (bare numbers): `seq` decides');
});

t.test('a clean file says clean: false from load on, before any session starts', async (t) => {
  const h = harness(t, { [TX_SEQ_FILE]: JSON.stringify({ clean: true, sessions: { '100/1': { next: 500, numbered: true }, '100/9': { next: 7 } } }) });
  h.tx.load(new Set(['100/1']));
  t.same(h.file(), { clean: false, sessions: { '100/1': { next: 500, numbered: true } } }, 'a crash while starting resumes ahead, not at 500 again');
  t.same(fs.readdirSync(h.dir), [TX_SEQ_FILE], 'written atomically: no temporary file left');
  t.same(h.tx.startAt('100/1', SEQ_NONE), { nextSeq: 500, numbered: true }, 'this start still resumes exactly');
});

t.test('a stop the data plane did not confirm: the clean stop writes clean: false', async (t) => {
  const h = harness(t);
  h.tx.load(new Set(['100/1', '100/2']));
  for (const s of [sess(1), sess(2)]) h.tx.started(s);
  h.dp.set(1, { nextSeq: 10 });
  h.dp.set(2, { nextSeq: 20 });
  h.tx.stopped(sess(1), false);
  h.tx.stopped(sess(2), false, false);
  h.tx.flush([], true);
  t.same(h.file(), { clean: false, sessions: { '100/1': { next: 10, numbered: false }, '100/2': { next: 20, numbered: false } } },
    'both kept; not clean, so the next start resumes ahead of them');
  t.match(h.logs.find((l) => l.level === 40), { msg: /did not stop cleanly in the data plane/ });
});

t.test('a state directory that cannot be written: one error, l2tpd keeps running, and recovers', async (t) => {
  const h = harness(t);
  fs.writeFileSync(path.join(h.dir, 'blocker'), '');
  const tx = new TxSequencing(new TxSeqStore(path.join(h.dir, 'blocker')), h.dp, pino({ level: 'debug' }, { write: (l: string) => { h.logs.push(JSON.parse(l)); } }));
  tx.started(sess(1));
  tx.flush([sess(1)]);
  tx.started(sess(2));
  tx.flush([sess(1), sess(2)]);
  t.equal(h.logs.filter((l) => l.level === 50 && /cannot save send numbering/.test(l.msg)).length, 1, 'one error for the streak');
  fs.rmSync(path.join(h.dir, 'blocker'));
  tx.flush([sess(1), sess(2)]);
  t.match(h.logs.slice(-1)[0], { level: 30, msg: 'send numbering saved again' }, 'the next write that works says so');
  t.ok(fs.existsSync(path.join(h.dir, 'blocker', TX_SEQ_FILE)), 'and the file is there');
});

t.test("the peer's S bit: each switch reported once, a flipping peer summed up, and bounded per check", async (t) => {
  const h = harness(t);
  const running = Array.from({ length: SEQ_LOG_LINES_MAX + 5 }, (_, i) => sess(i + 1));
  for (const s of running) h.tx.started(s);
  const switches = () => h.logs.filter((l) => /sequence numbers/.test(l.msg));

  h.dp.set(1, { numbered: true, changes: 1 });
  h.tx.check(running);
  t.match(switches(), [{ level: 30, tunnel_id: 100, session_id: 1, tx_seq: 'on', changes: 1, msg: 'the peer sends sequence numbers: sending them too' }]);
  h.tx.check(running);
  t.equal(switches().length, 1, 'once per switch, not per check');

  // A peer flipping: 999 more switches within the interval are held back, then summed up.
  h.dp.set(1, { numbered: false, changes: 1000 });
  h.advance(SEQ_LOG_INTERVAL_MS - 1);
  h.tx.check(running);
  t.equal(switches().length, 1, `nothing more within ${SEQ_LOG_INTERVAL_MS} ms`);
  h.advance(1);
  h.tx.check(running);
  t.match(switches()[1], { level: 40, tx_seq: 'off', changes: 999, msg: /stopped sending sequence numbers: sending none \(switched 999 times/ });

  // Many sessions switching at once: SEQ_LOG_LINES_MAX lines, and one for the rest.
  const before = h.logs.length;
  for (const s of running.slice(1)) h.dp.set(s.slot, { numbered: true, changes: 1 });
  h.tx.check(running);
  const lines = h.logs.slice(before);
  t.equal(lines.filter((l) => l.session_id !== undefined).length, SEQ_LOG_LINES_MAX, `${SEQ_LOG_LINES_MAX} sessions listed`);
  t.match(lines.find((l) => l.session_id === undefined), { sessions: running.length - 1 - SEQ_LOG_LINES_MAX, msg: /more sessions/ });
});
