#!/usr/bin/env node
// Control-plane benchmark (`npm run bench:control`, as root, after `npm run build`): one l2tpd in
// a network namespace, driven through its API, at each size of BENCH_CONTROL_SIZES side by side,
// then the data path with many busy sessions against one. See bench/README.md ("Control plane").
//
//   BENCH_CONTROL_SIZES="100:4 10000:250"   SESSIONS:TUNNELS per size (sessions spread evenly)
//   BENCH_CONTROL_WALK=0     1: every session is added and deleted through the API; default: the
//                            first and last K (=100) go through the API and a reload fills the middle
//   BENCH_CONTROL_DATA=1     0 skips the data-path part
//   BENCH_CONTROL_DATA_SESSIONS=1000  BENCH_CONTROL_DATA_TUNNELS=25  BENCH_CONTROL_DATA_PPS=40000
//   BENCH_CONTROL_DATA_SECS=5  BENCH_CONTROL_DATA_RUNS=3  BENCH_CONTROL_DATA_SIZE=64
//   BENCH_CONTROL_LABEL=text  a label for the result files (e.g. "before")
//   BENCH_CONTROL_OP_TIMEOUT=S  longest wait for one reload, start or stop (default 1800); one that
//                            takes longer is recorded as such and ends that size's run
//   BENCH_CONTROL_ORDER="data control"  which part runs first
//   BENCH_CONTROL_NODE_ARGS="--cpu-prof --cpu-prof-dir=DIR"  node options for the daemon
//   BENCH_KEEP=DIR           copy the daemon logs to DIR before cleanup
//
// It runs itself inside the daemon's namespace (so /metrics on 127.0.0.1 is reachable), pins the
// daemon to CPU0 and itself and the generators to CPU1, creates two namespaces tagged with its PID
// (documentation addresses only) and removes them, and signals only the processes it started.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..');
const DAEMON = path.join(ROOT, 'dist', 'daemon', 'main.js');
const env = process.env;
const num = (k, d) => (env[k] === undefined || env[k] === '' ? d : Number(env[k]));

const SIZES = (env.BENCH_CONTROL_SIZES || '100:4 10000:250').trim().split(/\s+/).map((x) => {
  const [s, t] = x.split(':').map(Number);
  if (!(s > 0 && t > 0 && s % t === 0)) throw new Error(`BENCH_CONTROL_SIZES: "${x}" must be SESSIONS:TUNNELS with TUNNELS dividing SESSIONS`);
  return { sessions: s, tunnels: t };
});
const WALK = env.BENCH_CONTROL_WALK === '1';
const K = 100;
const DATA = env.BENCH_CONTROL_DATA !== '0';
const DATA_SESSIONS = num('BENCH_CONTROL_DATA_SESSIONS', 1000);
const DATA_TUNNELS = num('BENCH_CONTROL_DATA_TUNNELS', 25);
const DATA_PPS = num('BENCH_CONTROL_DATA_PPS', 40000);
const DATA_SECS = num('BENCH_CONTROL_DATA_SECS', 5);
const DATA_RUNS = num('BENCH_CONTROL_DATA_RUNS', 3);
const DATA_SIZE = num('BENCH_CONTROL_DATA_SIZE', 64);
/** The unit's LimitNOFILE, or the hard limit this process may not exceed (no CAP_SYS_RESOURCE). */
const OP_TIMEOUT_MS = num('BENCH_CONTROL_OP_TIMEOUT', 1800) * 1000;
/** Extra node options for the daemon, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof" (NODE_OPTIONS refuses those). */
const NODE_ARGS = (env.BENCH_CONTROL_NODE_ARGS || '').trim().split(/\s+/).filter(Boolean);
const ORDER = (env.BENCH_CONTROL_ORDER || 'data control').trim().split(/\s+/);
const NOFILE = Math.min(65536, (() => {
  const m = /^Max open files\s+\S+\s+(\S+)/m.exec(fs.readFileSync('/proc/self/limits', 'utf8'));
  return m && m[1] !== 'unlimited' ? Number(m[1]) : 65536;
})());
const METRICS = { host: '127.0.0.1', port: 9701 };
const LOCAL = '192.0.2.1';
const REMOTE = '192.0.2.2';
const PEER_PORT = 1701;
const SPORT0 = 10000;
const HZ = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());

const log = (...a) => console.error(`[control-bench ${new Date().toISOString().slice(11, 19)}]`, ...a);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const nowMs = () => Number(process.hrtime.bigint()) / 1e6;

// ---------------------------------------------------------------- outer: namespaces, then re-exec inside

if (process.argv[2] !== '--inner') {
  if (process.getuid?.() !== 0) { console.error('bench:control: needs root (network namespaces)'); process.exit(1); }
  if (!fs.existsSync(DAEMON)) { console.error('bench:control: build l2tpd first: npm run build'); process.exit(1); }
  if (os.cpus().length < 2) { console.error('bench:control: needs 2 CPUs (daemon on CPU0, driver/generators on CPU1)'); process.exit(1); }
  const tag = `cb${process.pid % 100000}`;
  const nsD = `${tag}d`;
  const nsP = `${tag}p`;
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), `l2tpd-cbench-${tag}-`));
  const ip = (...a) => execFileSync('ip', a, { stdio: ['ignore', 'ignore', 'pipe'] });
  const cleanup = () => {
    for (const ns of [nsD, nsP]) {
      const pids = spawnSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }).stdout?.split('\n').filter(Boolean) ?? [];
      // Anything still inside our own namespaces was started by this run.
      for (const p of pids) { try { process.kill(Number(p), 'SIGKILL'); } catch { /* gone */ } }
      spawnSync('ip', ['netns', 'del', ns]);
    }
    if (env.BENCH_KEEP) { fs.mkdirSync(env.BENCH_KEEP, { recursive: true }); fs.cpSync(tmp, env.BENCH_KEEP, { recursive: true, filter: (src) => !fs.statSync(src).isSocket() }); }
    fs.rmSync(tmp, { recursive: true, force: true });
  };
  let code = 1;
  try {
    execFileSync('gcc', ['-O2', '-Wall', '-o', path.join(tmp, 'gen'), path.join(HERE, 'gen.c')]);
    for (const ns of [nsD, nsP]) {
      ip('netns', 'add', ns);
      ip('-n', ns, 'link', 'set', 'lo', 'up');
      // No IPv6 in the bench namespaces: 10,000 taps coming up would otherwise each send router
      // solicitations and DAD probes, which l2tpd would dutifully carry to the peer.
      execFileSync('ip', ['netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1']);
    }
    ip('link', 'add', 'ul0', 'netns', nsD, 'type', 'veth', 'peer', 'name', 'ul0', 'netns', nsP);
    ip('-n', nsD, 'addr', 'add', `${LOCAL}/24`, 'dev', 'ul0');
    ip('-n', nsP, 'addr', 'add', `${REMOTE}/24`, 'dev', 'ul0');
    ip('-n', nsD, 'link', 'set', 'ul0', 'up');
    ip('-n', nsP, 'link', 'set', 'ul0', 'up');
    const r = spawnSync('ip', ['netns', 'exec', nsD, 'taskset', '-c', '1', process.execPath, fileURLToPath(import.meta.url), '--inner', tmp, nsP],
      { stdio: 'inherit', env });
    code = r.status ?? 1;
  } finally {
    cleanup();
  }
  process.exit(code);
}

// ---------------------------------------------------------------- inner: runs in the daemon's namespace

const TMP = process.argv[3];
const NS_PEER = process.argv[4];
const GEN = path.join(TMP, 'gen');
const started = new Set();

function quantile(xs, q) {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))];
}
const summary = (xs) => (xs.length === 0 ? null : {
  n: xs.length, median: quantile(xs, 0.5), p99: quantile(xs, 0.99), max: Math.max(...xs), min: Math.min(...xs),
});

/** One HTTP request on a fresh connection (as l2tpctl makes), with its latency in ms. */
function request({ socketPath, host, port, method = 'GET', urlPath, body, timeoutMs = OP_TIMEOUT_MS }) {
  return new Promise((resolve) => {
    const data = body === undefined ? undefined : JSON.stringify(body);
    const t0 = nowMs();
    const req = http.request({
      socketPath, host, port, method, path: urlPath, agent: false,
      headers: data === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) },
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      // Timed to the last byte: decoding 20 MB of /metrics here is this driver's work, not the daemon's.
      res.on('end', () => { const ms = nowMs() - t0; resolve({ status: res.statusCode, text: Buffer.concat(chunks).toString('utf8'), ms }); });
      res.on('error', (e) => resolve({ status: 0, text: e.message, ms: nowMs() - t0 }));
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error('timeout')));
    req.on('error', (e) => resolve({ status: 0, text: e.message, ms: nowMs() - t0 }));
    if (data !== undefined) req.write(data);
    req.end();
  });
}

class Daemon {
  constructor(dir) {
    this.dir = dir;
    this.socket = path.join(dir, 'l2tpd.sock');
    this.config = path.join(dir, 'l2tpd.json');
    this.logFile = path.join(dir, 'out.log');
    this.proc = null;
    fs.mkdirSync(dir, { recursive: true });
  }

  spawn() {
    const out = fs.openSync(this.logFile, 'a');
    // prlimit and taskset exec in place, so the child's pid is the daemon's.
    this.proc = spawn('prlimit', [`--nofile=${NOFILE}:${NOFILE}`, 'taskset', '-c', '0', process.execPath, ...NODE_ARGS, DAEMON,
      '--config', this.config, '--socket', this.socket, '--metrics-listen', `${METRICS.host}:${METRICS.port}`, '--log-level', 'warn'],
    { stdio: ['ignore', out, out] });
    fs.closeSync(out);
    started.add(this.proc);
    this.exited = new Promise((r) => this.proc.once('exit', (code, sig) => { started.delete(this.proc); r({ code, sig }); }));
    this.spawnedAt = nowMs();
    return this.proc;
  }

  api(method, urlPath, body, timeoutMs) { return request({ socketPath: this.socket, method, urlPath, body, timeoutMs }); }
  metrics(timeoutMs) { return request({ ...METRICS, urlPath: '/metrics', timeoutMs }); }

  async json(method, urlPath, body) {
    const r = await this.api(method, urlPath, body);
    if (r.status < 200 || r.status >= 300) throw new Error(`${method} ${urlPath} -> ${r.status}: ${r.text.slice(0, 500)}`);
    return JSON.parse(r.text);
  }

  /** Wait until the API answers; ms since spawn. */
  async ready(limitMs = OP_TIMEOUT_MS) {
    const end = nowMs() + limitMs;
    while (nowMs() < end) {
      if (this.proc.exitCode !== null) throw new Error(`l2tpd exited ${this.proc.exitCode}: ${this.tail()}`);
      const r = fs.existsSync(this.socket) ? await this.api('GET', '/v1/status', undefined, 5000) : { status: 0 };
      if (r.status === 200) return nowMs() - this.spawnedAt;
      await sleep(20);
    }
    throw new TimedOut(`start: API not answering after ${limitMs / 1000} s`);
  }

  /** SIGTERM; ms until the process is gone (SIGKILL after limitMs). */
  async stop(limitMs = OP_TIMEOUT_MS) {
    if (!this.proc || this.proc.exitCode !== null) return 0;
    const t0 = nowMs();
    this.proc.kill('SIGTERM');
    const r = await Promise.race([this.exited, sleep(limitMs).then(() => null)]);
    const ms = nowMs() - t0;
    if (r === null) { this.proc.kill('SIGKILL'); await this.exited; return { ms, killed: true }; }
    return { ms, killed: false, code: r.code };
  }

  writeConfig(cfg) {
    const tmp = `${this.config}.bench`;
    fs.writeFileSync(tmp, `${JSON.stringify(cfg)}\n`);
    fs.renameSync(tmp, this.config);
  }

  memory() {
    const st = fs.readFileSync(`/proc/${this.proc.pid}/status`, 'utf8');
    return { rss_kb: Number(/^VmRSS:\s+(\d+)/m.exec(st)?.[1] ?? 0) };
  }

  cpuTicks() {
    const f = fs.readFileSync(`/proc/${this.proc.pid}/stat`, 'utf8');
    const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
    return Number(rest[11]) + Number(rest[12]); // utime + stime
  }

  tail() { try { return fs.readFileSync(this.logFile, 'utf8').split('\n').slice(-20).join('\n'); } catch { return ''; } }
}

function heapFrom(metricsText) {
  const v = /^nodejs_heap_size_used_bytes (\S+)$/m.exec(metricsText);
  return v ? Number(v[1]) : null;
}

function tunnelsFor(nt) {
  const out = [];
  for (let t = 0; t < nt; t++) {
    out.push({ tunnel_id: t + 1, peer_tunnel_id: t + 1, encap: 'udp', local: LOCAL, remote: REMOTE, udp_sport: SPORT0 + t, udp_dport: PEER_PORT });
  }
  return out;
}

/** Sessions tunnel by tunnel: session id t * spt + k + 1, interface cp<id - 1> (gen ethmesh's names). */
function sessionsFor(nt, spt) {
  const out = [];
  for (let t = 0; t < nt; t++) {
    for (let k = 0; k < spt; k++) {
      const id = t * spt + k + 1;
      out.push({ tunnel_id: t + 1, session_id: id, peer_session_id: id, name: `cp${id - 1}` });
    }
  }
  return out;
}

/** A generator process; resolves to its summary line. */
function gen(args, { peer = false } = {}) {
  const argv = peer ? ['netns', 'exec', NS_PEER, 'taskset', '-c', '1', GEN, ...args] : ['-c', '1', GEN, ...args];
  const p = spawn(peer ? 'ip' : 'taskset', argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  started.add(p);
  let out = '';
  p.stdout.on('data', (d) => { out += d; });
  p.stderr.on('data', (d) => { out += d; });
  const done = new Promise((r) => p.once('exit', (code) => { started.delete(p); r({ code, out: out.trim() }); }));
  return { proc: p, done };
}

/** Wall ms and daemon CPU s (utime + stime, all threads) of `fn`. */
async function measured(d, fn) {
  const c0 = d.cpuTicks();
  const t0 = nowMs();
  const result = await fn();
  return { ms: nowMs() - t0, cpu_s: (d.cpuTicks() - c0) / HZ, result };
}

/** Sequential API requests; latencies in ms. Stops on the first refusal. */
async function timed(d, reqs) {
  const ms = [];
  for (const [method, urlPath, body] of reqs) {
    const r = await d.api(method, urlPath, body);
    if (r.status < 200 || r.status >= 300) throw new Error(`${method} ${urlPath} -> ${r.status}: ${r.text.slice(0, 500)}`);
    ms.push(r.ms);
  }
  return ms;
}

const addReq = (s) => ['POST', '/v1/sessions', s];
const delReq = (s) => ['DELETE', `/v1/tunnels/${s.tunnel_id}/sessions/${s.session_id}`];

/**
 * Run `op` while reading status, show tunnel, show session (one tunnel) and /metrics in four
 * loops, each one request at a time with 20 ms between; latency statistics per read.
 */
async function withReads(d, op) {
  const reads = {
    status: () => d.api('GET', '/v1/status', undefined, 600_000),
    show_tunnel: () => d.api('GET', '/v1/tunnels', undefined, 600_000),
    show_session_tunnel: () => d.api('GET', '/v1/tunnels/1/sessions', undefined, 600_000),
    metrics: () => d.metrics(600_000),
  };
  let running = true;
  const samples = Object.fromEntries(Object.keys(reads).map((k) => [k, []]));
  const failures = Object.fromEntries(Object.keys(reads).map((k) => [k, 0]));
  const loops = Object.entries(reads).map(async ([k, fn]) => {
    while (running) {
      const r = await fn();
      samples[k].push(r.ms);
      if (r.status === 0 || r.status >= 500) failures[k]++;
      await sleep(20);
    }
  });
  const c0 = d.cpuTicks();
  const t0 = nowMs();
  try {
    const result = await op();
    const ms = nowMs() - t0;
    return { ms, cpu_s: (d.cpuTicks() - c0) / HZ, result, reads: stats() };
  } finally {
    running = false;
    // On a timeout the daemon is killed next, which ends the reads still waiting.
    await Promise.race([Promise.all(loops), sleep(5000)]);
  }
  function stats() {
    return Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, { ...summary(v), failures: failures[k] }]));
  }
}

/** A wait that took longer than BENCH_CONTROL_OP_TIMEOUT: recorded, and the size's run ends. */
class TimedOut extends Error {}

async function reload(d) {
  const r = await d.api('POST', '/v1/reload', undefined);
  if (r.status === 0 && r.text === 'timeout') throw new TimedOut(`reload: more than ${OP_TIMEOUT_MS / 1000} s`);
  if (r.status !== 200) throw new Error(`reload -> ${r.status}: ${r.text.slice(0, 500)}`);
  return JSON.parse(r.text);
}

async function status(d) { return d.json('GET', '/v1/status'); }

/** Spawn → every session has received a frame: one round of the mesh generator per check. */
async function untilAllForwarding(d, nt, spt, limitMs = 600_000) {
  const end = d.spawnedAt + limitMs;
  let rounds = 0;
  let forwarding = 0;
  const total = nt * spt;
  while (nowMs() < end) {
    const g = gen(['mesh', REMOTE, String(PEER_PORT), LOCAL, String(SPORT0), String(nt), String(spt), '64', '200000', '10', '1'], { peer: true });
    await g.done;
    rounds++;
    await sleep(20);
    const list = await d.json('GET', '/v1/sessions?stats=1');
    forwarding = list.sessions.filter((s) => (s.stats?.rx_packets ?? 0) > 0).length;
    if (forwarding === total) return { ms: nowMs() - d.spawnedAt, rounds };
  }
  return { ms: null, rounds, forwarding };
}

/** One size's run into `res` (filled as it goes, so a run cut short still reports what it measured). */
async function controlRun({ sessions: S, tunnels: T }, res, save) {
  const spt = S / T;
  const d = new Daemon(path.join(TMP, `control-${S}`));
  const tunnels = tunnelsFor(T);
  const sessions = sessionsFor(T, spt);
  Object.assign(res, { sessions: S, tunnels: T, walk: WALK });
  try {
    await controlPhases(d, S, T, spt, tunnels, sessions, res, save);
  } catch (err) {
    if (!(err instanceof TimedOut)) throw err;
    res.aborted = err.message;
    log(`  ${err.message}: this size's run ends here`);
    if (d.proc?.exitCode === null) { d.proc.kill('SIGKILL'); await d.exited; }
  }
}

async function controlPhases(d, S, T, spt, tunnels, sessions, res, save) {
  log(`${S} sessions in ${T} tunnels: start empty`);
  d.spawn();
  res.start_empty_ms = await d.ready();
  await sleep(1000);
  const mem0 = { ...d.memory(), heap: heapFrom((await d.metrics()).text) };

  // ---- adds: first K and last K through the API; the middle by a reload unless walking
  res.add_tunnel_ms = summary(await timed(d, tunnels.map((t) => ['POST', '/v1/tunnels', t])));
  const k = Math.min(K, S);
  const direct = WALK || S <= 2 * k;
  const t0 = nowMs();
  if (direct) {
    const all = await timed(d, sessions.map(addReq));
    res.add_first = summary(all.slice(0, k));
    res.add_last = summary(all.slice(-k));
    res.add_all_via_api_s = (nowMs() - t0) / 1000;
  } else {
    res.add_first = summary(await timed(d, sessions.slice(0, k).map(addReq)));
    save();
    d.writeConfig({ tunnels, sessions: sessions.slice(0, S - k) });
    const r = await measured(d, () => reload(d));
    res.fill_reload = { sessions: S - 2 * k, ms: r.ms, cpu_s: r.cpu_s, result: r.result };
    log(`  fill: reload started ${S - 2 * k} sessions in ${(r.ms / 1000).toFixed(1)} s (CPU ${r.cpu_s.toFixed(1)} s)`);
    save();
    const c0 = d.cpuTicks();
    res.add_last = summary(await timed(d, sessions.slice(S - k).map(addReq)));
    res.add_last.cpu_ms_each = ((d.cpuTicks() - c0) / HZ) * 1000 / k;
  }
  log(`  add session median first ${k}: ${res.add_first.median.toFixed(1)} ms, last ${k}: ${res.add_last.median.toFixed(1)} ms`);
  save();
  const st = await status(d);
  if (st.running_sessions !== S) throw new Error(`expected ${S} running sessions, status says ${JSON.stringify(st)}`);

  // ---- memory, quiet reads, reload of an unchanged file
  await sleep(2000);
  const mem1 = { ...d.memory(), heap: heapFrom((await d.metrics()).text) };
  res.memory = {
    rss_kb_empty: mem0.rss_kb, rss_kb: mem1.rss_kb, heap_bytes_empty: mem0.heap, heap_bytes: mem1.heap,
    rss_bytes_per_session: ((mem1.rss_kb - mem0.rss_kb) * 1024) / S,
    heap_bytes_per_session: mem0.heap !== null && mem1.heap !== null ? (mem1.heap - mem0.heap) / S : null,
  };
  const quiet = {};
  for (const [name, fn] of Object.entries({
    status: () => d.api('GET', '/v1/status'),
    show_tunnel: () => d.api('GET', '/v1/tunnels'),
    show_session_tunnel: () => d.api('GET', '/v1/tunnels/1/sessions'),
    show_session_one: () => d.api('GET', `/v1/tunnels/1/sessions/1`),
    show_session_all: () => d.api('GET', '/v1/sessions'),
    metrics: () => d.metrics(),
  })) {
    const ms = [];
    for (let i = 0; i < 10; i++) ms.push((await fn()).ms);
    quiet[name] = summary(ms);
  }
  res.quiet_reads = quiet;
  // The other readers while `show session -s` of every session is answered, five times in a row.
  res.reads_during_show_all = (await withReads(d, async () => {
    for (let i = 0; i < 5; i++) {
      const r = await d.api('GET', '/v1/sessions?stats=1', undefined, 600_000);
      if (r.status !== 200) throw new Error(`show session -s of all -> ${r.status}: ${r.text.slice(0, 500)}`);
    }
  })).reads;
  const unchanged = [];
  const uc0 = d.cpuTicks();
  for (let i = 0; i < 3; i++) {
    const t = nowMs();
    const r = await reload(d);
    unchanged.push(nowMs() - t);
    if (r.added || r.removed || r.changed) throw new Error(`unchanged reload changed something: ${JSON.stringify(r)}`);
  }
  res.reload_unchanged = { ...summary(unchanged), cpu_s_each: (d.cpuTicks() - uc0) / HZ / 3 };
  log(`  reload unchanged: ${res.reload_unchanged.median.toFixed(0)} ms`);
  save();

  // ---- stop and restart
  res.sigterm = await d.stop();
  log(`  SIGTERM: ${res.sigterm.ms.toFixed(0)} ms`);
  save();
  d.spawn();
  res.restart_api_ready_ms = await d.ready();
  res.restart_forwarding = await untilAllForwarding(d, T, spt);
  res.restart_cpu_s = d.cpuTicks() / HZ;
  log(`  restart: API after ${res.restart_api_ready_ms.toFixed(0)} ms, all forwarding after ${res.restart_forwarding.ms?.toFixed(0)} ms`);
  save();

  // ---- reloads that remove and start everything, reads meanwhile
  d.writeConfig({ tunnels: [], sessions: [] });
  const rm = await withReads(d, () => reload(d));
  res.reload_remove_all = rm;
  log(`  reload removing all: ${(rm.ms / 1000).toFixed(1)} s (CPU ${rm.cpu_s.toFixed(1)} s), status max ${rm.reads.status.max?.toFixed(0)} ms`);
  save();
  d.writeConfig({ tunnels, sessions });
  const add = await withReads(d, () => reload(d));
  res.reload_start_all = add;
  log(`  reload starting all: ${(add.ms / 1000).toFixed(1)} s (CPU ${add.cpu_s.toFixed(1)} s), status max ${add.reads.status.max?.toFixed(0)} ms`);
  save();
  const st2 = await status(d);
  if (st2.running_sessions !== S) throw new Error(`after reload: expected ${S} running sessions, status says ${JSON.stringify(st2)}`);

  // ---- deletes: first K and last K through the API
  const t1 = nowMs();
  if (direct) {
    const all = await timed(d, sessions.map(delReq));
    res.del_first = summary(all.slice(0, k));
    res.del_last = summary(all.slice(-k));
    res.del_all_via_api_s = (nowMs() - t1) / 1000;
  } else {
    const dc0 = d.cpuTicks();
    res.del_first = summary(await timed(d, sessions.slice(0, k).map(delReq)));
    res.del_first.cpu_ms_each = ((d.cpuTicks() - dc0) / HZ) * 1000 / k;
    save();
    d.writeConfig({ tunnels, sessions: sessions.slice(S - k) });
    const r = await reload(d);
    res.drain_reload = { ms: nowMs() - t1, result: r };
    res.del_last = summary(await timed(d, sessions.slice(S - k).map(delReq)));
  }
  res.del_tunnel_ms = summary(await timed(d, tunnels.map((t) => ['DELETE', `/v1/tunnels/${t.tunnel_id}`])));
  log(`  del session median first ${k}: ${res.del_first.median.toFixed(1)} ms, last ${k}: ${res.del_last.median.toFixed(1)} ms`);
  res.sigterm_empty = await d.stop();
  return res;
}

/** CPU per packet, one direction, with the configured sessions busy at DATA_PPS in total. */
async function dataRun(nt, spt) {
  const d = new Daemon(path.join(TMP, `data-${nt * spt}`));
  d.writeConfig({ tunnels: tunnelsFor(nt), sessions: sessionsFor(nt, spt) });
  d.spawn();
  await d.ready();
  const st = await status(d);
  if (st.running_sessions !== nt * spt) throw new Error(`data path: ${st.running_sessions} of ${nt * spt} sessions running`);
  const total = async (field) => (await d.json('GET', '/v1/tunnels')).tunnels.reduce((a, t) => a + (t.stats?.[field] ?? 0), 0);
  const out = { sessions: nt * spt, tunnels: nt, pps: DATA_PPS, size: DATA_SIZE, secs: DATA_SECS };
  for (const dir of ['decap', 'encap']) {
    const runs = [];
    for (let run = 0; run < DATA_RUNS; run++) {
      const secs = DATA_SECS + 2;
      const sink = dir === 'encap' ? gen(['sink', REMOTE, String(PEER_PORT), '1', String(secs + 2)], { peer: true }) : null;
      await sleep(100);
      const g = dir === 'decap'
        ? gen(['mesh', REMOTE, String(PEER_PORT), LOCAL, String(SPORT0), String(nt), String(spt), String(DATA_SIZE), String(DATA_PPS), String(secs), '0'], { peer: true })
        : gen(['ethmesh', 'cp', String(nt * spt), String(DATA_SIZE), String(DATA_PPS), String(secs)]);
      await sleep(1000);
      const field = dir === 'decap' ? 'rx_packets' : 'tx_packets';
      const p0 = await total(field);
      const c0 = d.cpuTicks();
      const w0 = nowMs();
      await sleep(DATA_SECS * 1000);
      const c1 = d.cpuTicks();
      const w1 = nowMs();
      const p1 = await total(field);
      const gr = await g.done;
      if (sink) await sink.done;
      const packets = p1 - p0;
      const cpuS = (c1 - c0) / HZ;
      runs.push({ packets, secs: (w1 - w0) / 1000, pps: packets / ((w1 - w0) / 1000), cpu_s: cpuS,
        cpu_us_per_packet: packets > 0 ? (cpuS * 1e6) / packets : null, generator: gr.out });
      log(`  data ${dir} ${nt * spt} sessions run ${run + 1}: ${(packets / ((w1 - w0) / 1000)).toFixed(0)} pps, ${packets > 0 ? ((cpuS * 1e6) / packets).toFixed(2) : '-'} us/packet`);
    }
    out[dir] = { runs, pps: summary(runs.map((r) => r.pps)), cpu_us_per_packet: summary(runs.filter((r) => r.packets > 0).map((r) => r.cpu_us_per_packet)) };
  }
  await d.stop();
  return out;
}

function machine() {
  const cpu = (fs.readFileSync('/proc/cpuinfo', 'utf8').match(/^model name\s*:\s*(.*)$/m) || [])[1] || os.cpus()[0]?.model;
  const git = (a) => { try { return execFileSync('git', ['-C', ROOT, ...a], { encoding: 'utf8' }).trim(); } catch { return ''; } };
  return {
    cpu, cores: os.cpus().length, nofile: NOFILE, memory_gib: +(os.totalmem() / 2 ** 30).toFixed(1), kernel: os.release(), node: process.version,
    commit: git(['rev-parse', '--short', 'HEAD']), dirty: git(['status', '--porcelain', '--untracked-files=no']) !== '',
    loadavg: os.loadavg().map((x) => +x.toFixed(2)),
  };
}

const f = (x, digits = 1) => (x === null || x === undefined || Number.isNaN(x) ? '–' : Number(x).toFixed(digits));
const sec = (ms) => (ms === null || ms === undefined ? '–' : `${(ms / 1000).toFixed(2)} s`);
/** "12.3 s (CPU 4.5 s)" for a phase measured with measured()/withReads(). */
const phase = (p) => (p?.ms === undefined ? '–' : `${sec(p.ms)}${p.cpu_s === undefined ? '' : ` (CPU ${f(p.cpu_s, 1)} s)`}`);

function markdown(result) {
  const c = result.control;
  let md = `# l2tpd control-plane benchmark${result.label ? ` (${result.label})` : ''}\n\n`;
  const m = result.machine;
  md += `${result.time}, commit ${m.commit}${m.dirty ? ' (with uncommitted changes)' : ''}; ${m.cpu}, ${m.cores} vCPU, ${m.memory_gib} GiB, kernel ${m.kernel}, Node ${m.node}, RLIMIT_NOFILE ${m.nofile}. `;
  md += `Load average at the start ${m.loadavg.join(' / ')}, at the last write ${(m.loadavg_now ?? []).join(' / ')} (other work on this 2-vCPU machine: wall times stretch with it, CPU times much less). `;
  md += 'Daemon on CPU0, driver and generators on CPU1. CPU = utime + stime of the l2tpd process over the phase.\n\n';
  if (c.length > 0) {
    md += c.some((r) => r.fill_reload) ? 'The first and last 100 adds and deletes go through the API; a reload fills (and drains) the middle.\n\n' : '';
    md += `| | ${c.map((r) => `${r.sessions} sessions / ${r.tunnels} tunnels`).join(' | ')} |\n|---|${c.map(() => '---').join('|')}|\n`;
    const row = (label, fn) => { md += `| ${label} | ${c.map((r) => { try { return fn(r) ?? '–'; } catch { return '–'; } }).join(' | ')} |\n`; };
    const lat = (x) => (x ? `${f(x.median)} / ${f(x.p99)}` : '–');
    const reads = (r, k) => (r?.reads?.[k]?.n ? `${f(r.reads[k].max, 0)} / ${f(r.reads[k].p99, 0)} ms (n=${r.reads[k].n})` : '–');
    const ratio = (a, b) => (a && b ? f(b.median / a.median, 2) : '–');
    row('add session, first 100: median / p99 ms', (r) => lat(r.add_first));
    row('add session, last 100: median / p99 ms', (r) => lat(r.add_last));
    row('add: last ÷ first (median)', (r) => ratio(r.add_first, r.add_last));
    row('del session, first 100: median / p99 ms', (r) => lat(r.del_first));
    row('del session, last 100: median / p99 ms', (r) => lat(r.del_last));
    row('del: last ÷ first (median)', (r) => ratio(r.del_first, r.del_last));
    row('add tunnel: median / p99 ms', (r) => lat(r.add_tunnel_ms));
    row('reload, unchanged file (median of 3)', (r) => (r.reload_unchanged ? `${sec(r.reload_unchanged.median)} (CPU ${f(r.reload_unchanged.cpu_s_each, 2)} s)` : '–'));
    row('reload that starts all', (r) => phase(r.reload_start_all));
    row('… status during it: max / p99', (r) => reads(r.reload_start_all, 'status'));
    row('… show tunnel during it: max / p99', (r) => reads(r.reload_start_all, 'show_tunnel'));
    row('… show session (one tunnel) during it: max / p99', (r) => reads(r.reload_start_all, 'show_session_tunnel'));
    row('… /metrics during it: max / p99', (r) => reads(r.reload_start_all, 'metrics'));
    row('reload that removes all', (r) => phase(r.reload_remove_all));
    row('… status during it: max / p99', (r) => reads(r.reload_remove_all, 'status'));
    row('… show tunnel during it: max / p99', (r) => reads(r.reload_remove_all, 'show_tunnel'));
    row('… show session (one tunnel) during it: max / p99', (r) => reads(r.reload_remove_all, 'show_session_tunnel'));
    row('… /metrics during it: max / p99', (r) => reads(r.reload_remove_all, 'metrics'));
    row('SIGTERM to exit', (r) => sec(r.sigterm?.ms));
    row('restart: API answers', (r) => sec(r.restart_api_ready_ms));
    row('restart: all sessions forwarding', (r) => (r.restart_forwarding ? (r.restart_forwarding.ms === null ? `not all (${r.restart_forwarding.forwarding})` : `${sec(r.restart_forwarding.ms)} (CPU ${f(r.restart_cpu_s, 1)} s)`) : '–'));
    row('quiet: status / show tunnel / show session (one tunnel) / /metrics, median ms', (r) =>
      ['status', 'show_tunnel', 'show_session_tunnel', 'metrics'].map((k) => f(r.quiet_reads[k].median)).join(' / '));
    row('quiet: show session (all), median ms', (r) => f(r.quiet_reads.show_session_all.median));
    // A few dozen reads each: a p99 would be their max, so the median goes beside it.
    const maxMedian = (x) => (x?.n ? `${f(x.max, 0)} / ${f(x.median, 0)} ms (n=${x.n})` : '–');
    row('… status / /metrics while `show session -s` of all runs: max / median', (r) => (r.reads_during_show_all
      ? `${maxMedian(r.reads_during_show_all.status)}; ${maxMedian(r.reads_during_show_all.metrics)}` : '–'));
    row('RSS per session (KiB)', (r) => f(r.memory.rss_bytes_per_session / 1024, 1));
    row('main-thread heap per session (KiB)', (r) => f(r.memory.heap_bytes_per_session / 1024, 1));
    row('RSS with all sessions (MiB)', (r) => f(r.memory.rss_kb / 1024, 0));
    if (c.some((r) => r.fill_reload)) row('(fill: reload starting the middle)', (r) => (r.fill_reload ? `${r.fill_reload.sessions} in ${phase(r.fill_reload)}` : '–'));
    if (c.some((r) => r.add_all_via_api_s)) row('(all adds through the API)', (r) => (r.add_all_via_api_s ? `${f(r.add_all_via_api_s)} s` : '–'));
    if (c.some((r) => r.aborted)) row('**run cut short**', (r) => r.aborted ?? '');
  }
  if (result.data?.length) {
    const [one, many] = result.data;
    md += `\nData path: ${one.size}-byte frames at ${one.pps} packets/s in total, ${DATA_RUNS} × ${one.secs} s, median; CPU = utime + stime of the l2tpd process ÷ frames forwarded.\n\n`;
    md += `| direction | ${one.sessions} session: pps, µs/packet |${many ? ` ${many.sessions} sessions in ${many.tunnels} tunnels: pps, µs/packet | ratio |` : ''}\n|---|---|${many ? '---|---|' : ''}\n`;
    for (const dir of ['decap', 'encap']) {
      const a = one[dir].cpu_us_per_packet?.median;
      const b = many?.[dir].cpu_us_per_packet?.median;
      md += `| ${dir} | ${f(one[dir].pps?.median, 0)}, ${f(a, 2)} |${many ? ` ${f(many[dir].pps?.median, 0)}, ${f(b, 2)} | ${a && b ? f(b / a, 2) : '–'} |` : ''}\n`;
    }
  }
  return md;
}

async function main() {
  const result = { time: new Date().toISOString(), label: env.BENCH_CONTROL_LABEL || '', machine: machine(), control: [] };
  const outDir = path.join(HERE, 'results');
  fs.mkdirSync(outDir, { recursive: true });
  const stamp = result.time.replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  const base = `${stamp}-control${result.label ? `-${result.label.replace(/[^\w.-]+/g, '_')}` : ''}`;
  // Written after every phase: a run cut short (or killed) still leaves what it measured.
  const save = () => {
    result.machine.loadavg_now = os.loadavg().map((x) => +x.toFixed(2));
    const md = markdown(result);
    for (const name of [base, 'latest-control']) {
      fs.writeFileSync(path.join(outDir, `${name}.json`), `${JSON.stringify(result, null, 2)}\n`);
      fs.writeFileSync(path.join(outDir, `${name}.md`), md);
    }
    return md;
  };
  for (const part of ORDER) {
    if (part === 'control') {
      for (const size of SIZES) {
        const res = {};
        result.control.push(res);
        await controlRun(size, res, save);
        save();
      }
    } else if (part === 'data' && DATA) {
      const spt = DATA_SESSIONS / DATA_TUNNELS;
      if (!Number.isInteger(spt)) throw new Error('BENCH_CONTROL_DATA_TUNNELS must divide BENCH_CONTROL_DATA_SESSIONS');
      log(`data path: 1 session vs ${DATA_SESSIONS} sessions at ${DATA_PPS} pps`);
      result.data = [await dataRun(1, 1)];
      save();
      result.data.push(await dataRun(DATA_TUNNELS, spt));
      save();
    }
  }
  process.stdout.write(save());
  log(`written bench/results/${base}.{md,json}`);
}

let exitCode = 0;
try {
  await main();
} catch (err) {
  console.error(`bench:control: ${err.stack ?? err}`);
  exitCode = 1;
} finally {
  for (const p of started) { try { p.kill('SIGKILL'); } catch { /* gone */ } }
}
process.exit(exitCode);
