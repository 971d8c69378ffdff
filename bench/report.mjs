// Aggregates bench/run.sh's raw JSON lines into bench/results/<stamp>-<mode>.{json,md} and
// latest-<mode>.{json,md}. Usage: node report.mjs RAW.jsonl OUTDIR MODE RUNS SECS WARM
import { readFileSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';

const [raw, outDir, mode, runs, secs, warm] = process.argv.slice(2);
const rows = readFileSync(raw, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));

const sh = (cmd, args) => { try { return execFileSync(cmd, args, { encoding: 'utf8' }).trim(); } catch { return ''; } };
const cpuModel = (readFileSync('/proc/cpuinfo', 'utf8').match(/^model name\s*:\s*(.*)$/m) || [])[1] || os.cpus()[0]?.model;
const machine = {
  cpu: cpuModel, cores: os.cpus().length, kernel: os.release(), node: process.version,
  libuv: process.versions.uv, qemu: sh('qemu-system-x86_64', ['--version']).split('\n')[0],
  iperf3: sh('iperf3', ['--version']).split('\n')[0], gcc: sh('gcc', ['-dumpfullversion']),
  loadavg: os.loadavg().map((x) => +x.toFixed(2)),
};

const median = (xs) => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };
const stat = (xs) => (xs.length ? { median: median(xs), min: Math.min(...xs), max: Math.max(...xs), n: xs.length, runs: xs } : null);

const duts = [...new Set(rows.map((r) => r.dut))];
const pps = {};
for (const r of rows.filter((x) => x.kind === 'pps')) {
  const k = `${r.dir}/${r.size}/${r.dut}`;
  (pps[k] ||= []).push(r);
}
const points = {};
for (const [k, rs] of Object.entries(pps)) {
  const [dir, size, dut] = k.split('/');
  const p = {
    dir, size: +size, dut,
    pps: stat(rs.map((r) => r.packets / (r.ns / 1e9))),
    gbps: stat(rs.map((r) => (r.packets * +size * 8) / r.ns)),
    offered_pps: stat(rs.map((r) => r.offered_pps)),
    preemptions: stat(rs.map((r) => r.preemptions ?? 0)),
    input_drops_pps: stat(rs.map((r) => (r.input_drops ?? 0) / (r.ns / 1e9))),
    cpu_us_per_packet: stat(rs.filter((r) => r.packets > 0).map((r) => (r.ticks / r.hz) * 1e6 / r.packets)),
    cpu_util: stat(rs.map((r) => r.ticks / r.hz / (r.ns / 1e9))),
    rss_growth_kb: stat(rs.map((r) => r.rss_kb[1] - r.rss_kb[0])),
    sink: rs.map((r) => r.sink),
  };
  if (dut.startsWith('l2tpd')) {
    const g = rs.filter((r) => r.gc[0].gc !== undefined && r.gc[1].gc !== undefined);
    p.worker_gc_events = stat(g.map((r) => r.gc[1].gc - r.gc[0].gc));
    p.worker_gc_major = stat(g.map((r) => r.gc[1].major - r.gc[0].major));
    p.worker_heap_growth_bytes = stat(g.map((r) => r.gc[1].heapUsed - r.gc[0].heapUsed));
    p.process_trace_gc_lines = stat(rs.map((r) => r.trace_gc_lines));
    p.process_trace_gc_alloc = stat(rs.map((r) => r.trace_gc_alloc ?? 0));
  }
  points[k] = p;
}
// GC soak: one long window per direction for l2tpd at full rate (64 B).
const soak = rows.filter((r) => r.kind === 'soak' && r.gc[0].gc !== undefined && r.gc[1].gc !== undefined).map((r) => ({
  dir: r.dir, size: r.size, window_s: r.ns / 1e9, pps: r.packets / (r.ns / 1e9),
  worker_gc_events: r.gc[1].gc - r.gc[0].gc, worker_gc_major: r.gc[1].major - r.gc[0].major,
  worker_heap_growth_bytes: r.gc[1].heapUsed - r.gc[0].heapUsed, process_trace_gc_alloc: r.trace_gc_alloc ?? 0,
  rss_growth_kb: r.rss_kb[1] - r.rss_kb[0],
}));
const tcp = {};
for (const d of duts) {
  const rs = rows.filter((r) => r.kind === 'tcp' && r.dut === d);
  if (rs.length) tcp[d] = { gbps: stat(rs.map((r) => r.bps / 1e9)), retransmits: stat(rs.map((r) => r.retransmits)),
    cpu_util_site_a: stat(rs.map((r) => r.ticks[0] / r.hz / r.secs)), cpu_util_site_b: stat(rs.map((r) => r.ticks[1] / r.hz / r.secs)) };
}

const ratio = (a, b) => (a && b && b.median > 0 ? a.median / b.median : null);
const ratios = {};
// Keys: "encap/64" and "tcp" for l2tpd (offload on, the default), "…/l2tpd-plain" for --offload off.
const ratioKey = (base, dut) => (dut === 'l2tpd' ? base : `${base}/${dut}`);
for (const p of Object.values(points)) {
  if (!p.dut.startsWith('l2tpd')) continue;
  const q = points[`${p.dir}/${p.size}/qemu`]; const c = points[`${p.dir}/${p.size}/cfwd`];
  ratios[ratioKey(`${p.dir}/${p.size}`, p.dut)] = { l2tpd_qemu: ratio(p.pps, q?.pps), l2tpd_cfwd: ratio(p.pps, c?.pps) };
}
for (const d of ['l2tpd', 'l2tpd-plain']) {
  if (tcp[d]) ratios[ratioKey('tcp', d)] = { l2tpd_qemu: ratio(tcp[d].gbps, tcp.qemu?.gbps), l2tpd_cfwd: ratio(tcp[d].gbps, tcp.cfwd?.gbps) };
}

const stamp = new Date().toISOString().replace(/[:]/g, '').replace(/\..*/, 'Z');
const result = { date: new Date().toISOString(), mode, runs: +runs, window_s: +secs, warmup_s: +warm, machine, points, tcp, ratios, soak };

const f = (x, d = 0) => (x == null ? '–' : x.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d }));
const k = (x) => f(x / 1000, 1);
const mm = (s, fmt) => (s ? (s.n > 1 ? `${fmt(s.median)} (${fmt(s.min)}–${fmt(s.max)})` : fmt(s.median)) : '–');
const r2 = (x) => (x == null ? '–' : x.toFixed(2));

const md = [];
md.push(`# l2tpd benchmark — ${mode} run, ${result.date}`, '');
if (mode === 'quick') md.push('**Quick mode (1 run per point): noisy, orders of magnitude only.**', '');
md.push(`Machine: ${machine.cpu}, ${machine.cores} cores, kernel ${machine.kernel}, Node ${machine.node} (libuv ${machine.libuv}), ${machine.qemu}, gcc ${machine.gcc}; load average at the end ${machine.loadavg.join(' ')}.`, '');
md.push(`Each point: median of ${runs} run(s) of ${secs} s after ${warm} s warm-up, (min–max) when more than one. Forwarder pinned to CPU0, generator and sink to CPU1. Packets = frames delivered by the forwarder (interface counter behind it). Input drops = frames the forwarder did not take in time (encap: tap tx_dropped; decap: UDP RcvbufErrors in its namespace). CPU = utime+stime of the forwarder process ÷ packets; CPU use = share of one core; preempted = involuntary context switches of the forwarder in the window (high = other load on CPU0 took the core: treat the point as noise).`, '');
md.push('## Packets per second, one direction at a time', '');
md.push('| direction | frame | forwarder | kpps | Gbit/s (inner) | offered kpps | input drops kpps | CPU µs/packet | CPU use | preempted | l2tpd/QEMU | l2tpd/C |');
md.push('|---|---|---|---|---|---|---|---|---|---|---|---|');
const order = ['cfwd', 'qemu', 'l2tpd-plain', 'l2tpd'];
for (const dir of ['encap', 'decap']) {
  for (const size of [...new Set(Object.values(points).map((p) => p.size))].sort((a, b) => a - b)) {
    for (const dut of order) {
      const p = points[`${dir}/${size}/${dut}`]; if (!p) continue;
      const rr = dut.startsWith('l2tpd') ? ratios[ratioKey(`${dir}/${size}`, dut)] : null;
      md.push(`| ${dir} | ${size} B | ${dut} | ${mm(p.pps, k)} | ${mm(p.gbps, (x) => f(x, 2))} | ${mm(p.offered_pps, k)} | ${mm(p.input_drops_pps, k)} | ${mm(p.cpu_us_per_packet, (x) => f(x, 2))} | ${mm(p.cpu_util, (x) => f(x * 100, 0) + ' %')} | ${mm(p.preemptions, f)} | ${rr ? r2(rr.l2tpd_qemu) : ''} | ${rr ? r2(rr.l2tpd_cfwd) : ''} |`);
    }
  }
}
if (Object.keys(tcp).length) {
  md.push('', '## iperf3 TCP end to end (host → site A → pseudowire → site B → host; one stream; site A on CPU0, site B on CPU1)', '');
  md.push('| pair | Gbit/s | retransmits | CPU use site A | CPU use site B | l2tpd/QEMU | l2tpd/C |');
  md.push('|---|---|---|---|---|---|---|');
  for (const dut of order) {
    const t = tcp[dut]; if (!t) continue;
    const rr = dut.startsWith('l2tpd') ? ratios[ratioKey('tcp', dut)] : null;
    md.push(`| ${dut} ↔ ${dut} | ${mm(t.gbps, (x) => f(x, 2))} | ${mm(t.retransmits, f)} | ${mm(t.cpu_util_site_a, (x) => f(x * 100, 0) + ' %')} | ${mm(t.cpu_util_site_b, (x) => f(x * 100, 0) + ' %')} | ${rr ? r2(rr.l2tpd_qemu) : ''} | ${rr ? r2(rr.l2tpd_cfwd) : ''} |`);
  }
}
const gcRows = Object.values(points).filter((p) => p.dut.startsWith('l2tpd'));
if (gcRows.length) {
  md.push('', '## l2tpd data-plane worker: garbage collection during the steady window (goal: none)', '');
  md.push('Worker GC events from a PerformanceObserver preloaded into the worker (bench/gcprobe.cjs); heap growth = worker `used_heap_size` end − start; `--trace-gc` lines = whole process (main thread + worker) in the same window, and those triggered by "allocation failure" (young generation full: garbage being produced). the V8 memory reducer ("Mark-Compact (reduce)") runs a few seconds after start-up in both isolates, shrinks the heap (negative growth) and is not caused by forwarding; RSS growth of the process.', '');
  md.push('| forwarder | direction | frame | worker GC events | of which major | worker heap growth (KiB) | --trace-gc lines | of which "allocation failure" | RSS growth (KiB) |');
  md.push('|---|---|---|---|---|---|---|---|---|');
  for (const p of gcRows.sort((a, b) => a.dut.localeCompare(b.dut) || a.dir.localeCompare(b.dir) || a.size - b.size)) {
    md.push(`| ${p.dut} | ${p.dir} | ${p.size} B | ${mm(p.worker_gc_events, f)} | ${mm(p.worker_gc_major, f)} | ${mm(p.worker_heap_growth_bytes, (x) => f(x / 1024, 1))} | ${mm(p.process_trace_gc_lines, f)} | ${mm(p.process_trace_gc_alloc, f)} | ${mm(p.rss_growth_kb, f)} |`);
  }
}
if (soak.length) {
  md.push('', `## l2tpd GC soak: ${f(soak[0].window_s, 0)} s at full rate, 64 B frames (goal: no GC, flat heap)`, '');
  md.push('One long window per direction after the regular points (the daemon has been forwarding for a while, so start-up GCs are over). Counted as in the table above.', '');
  md.push('| direction | kpps | worker GC events | of which major | "allocation failure" GCs (process) | worker heap growth (KiB) | KiB per s | RSS growth (KiB) |');
  md.push('|---|---|---|---|---|---|---|---|');
  for (const s of soak) {
    md.push(`| ${s.dir} | ${k(s.pps)} | ${f(s.worker_gc_events)} | ${f(s.worker_gc_major)} | ${f(s.process_trace_gc_alloc)} | ${f(s.worker_heap_growth_bytes / 1024, 1)} | ${f(s.worker_heap_growth_bytes / 1024 / s.window_s, 1)} | ${f(s.rss_growth_kb)} |`);
  }
}
md.push('');

const base = path.join(outDir, `${stamp}-${mode}`);
writeFileSync(`${base}.json`, JSON.stringify(result, null, 2) + '\n');
writeFileSync(`${base}.md`, md.join('\n'));
writeFileSync(path.join(outDir, `latest-${mode}.json`), JSON.stringify(result, null, 2) + '\n');
writeFileSync(path.join(outDir, `latest-${mode}.md`), md.join('\n'));
process.stdout.write(md.join('\n'));
console.error(`bench: wrote ${base}.{md,json} and latest-${mode}.{md,json}`);
