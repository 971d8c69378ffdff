/** /metrics of a daemon in a namespace, as "name{labels}" -> value. */
import { nsRun } from './netns.js';

export type Samples = Map<string, number>;

/** Parse Prometheus text into "name{labels}" -> value. */
export function parseMetrics(text: string): Samples {
  const out: Samples = new Map();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^(\S+?(?:\{.*\})?) (\S+)$/.exec(line);
    if (m) out.set(m[1], Number(m[2]));
  }
  return out;
}

/** curl http://127.0.0.1:PORT/metrics inside `ns`. */
export function scrapeMetrics(ns: string, port: number): { text: string; samples: Samples } {
  const r = nsRun(ns, 'curl', ['-sS', '--max-time', '10', `http://127.0.0.1:${port}/metrics`], 20000);
  if (r.status !== 0) throw new Error(`curl /metrics in ${ns}: ${r.stderr}`);
  return { text: r.stdout, samples: parseMetrics(r.stdout) };
}
