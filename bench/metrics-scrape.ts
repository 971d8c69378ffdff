/**
 * Scrape cost with many sessions: createRegistry over a fake MetricsSource with N sessions
 * (default 10,000) and non-zero counters, timing registry.metrics() (median of several runs).
 * Goal (design): under 100 ms for 10,000 sessions.
 *   npx ts-node --transpile-only bench/metrics-scrape.ts [sessions] [runs]
 */
import { performance } from 'node:perf_hooks';
import { createRegistry, type MetricsSource } from '../src/metrics/index.js';
import { SESSION_ROW_WIDTH, TUNNEL_ROW_WIDTH } from '../src/dataplane/counters.js';

const N = Number(process.argv[2] ?? 10000);
const RUNS = Number(process.argv[3] ?? 15);
const TUNNELS = 100;

const sessionCounters = new Float64Array((N + 1) * SESSION_ROW_WIDTH).map((_, i) => (i * 7919) % 1e9);
const tunnelCounters = new Float64Array((TUNNELS + 2) * TUNNEL_ROW_WIDTH).map((_, i) => i);
const sessions = Array.from({ length: N }, (_, i) => ({
  tunnel_id: 1 + (i % TUNNELS), session_id: 1 + i, interface: `l2tpeth${i}`, slot: i, up: 1, transitions: 1, mismatches: [],
}));
const tunnels = Array.from({ length: TUNNELS }, (_, i) => ({ tunnel_id: 1 + i, slot: i, up: 1, transitions: 1, rtt_ms: 1, mismatches: [] }));
const src: MetricsSource = {
  metricSessions: () => sessions, metricTunnels: () => tunnels,
  sessionCounters, tunnelCounters, hostRow: TUNNELS + 1,
};

async function main(): Promise<void> {
  const reg = createRegistry(src, 'bench');
  await reg.metrics(); // warm-up
  const times: number[] = [];
  let size = 0;
  for (let i = 0; i < RUNS; i++) {
    const t0 = performance.now();
    const text = await reg.metrics();
    times.push(performance.now() - t0);
    size = text.length;
  }
  times.sort((a, b) => a - b);
  const median = times[Math.floor(times.length / 2)];
  console.log(JSON.stringify({
    sessions: N, runs: RUNS, median_ms: +median.toFixed(1), min_ms: +times[0].toFixed(1),
    max_ms: +times[times.length - 1].toFixed(1), bytes: size, goal_ms: 100, ok: median < 100,
  }));
}
void main();
