/** Garbage collections while a synchronous loop runs: the allocation-free tests' one measure. */
import { PerformanceObserver, performance } from 'node:perf_hooks';

/** Run `fn` and count the GCs that started while it ran (observed after it returns). */
export async function gcsDuring(fn: () => void): Promise<{ gcs: number; ms: number }> {
  const starts: number[] = [];
  const obs = new PerformanceObserver((list) => { for (const e of list.getEntries()) starts.push(e.startTime); });
  obs.observe({ entryTypes: ['gc'] });
  const t0 = performance.now();
  fn();
  const t1 = performance.now();
  // GC entries are delivered asynchronously.
  await new Promise((resolve) => setTimeout(resolve, 20));
  obs.disconnect();
  return { gcs: starts.filter((x) => x >= t0 && x <= t1).length, ms: t1 - t0 };
}
