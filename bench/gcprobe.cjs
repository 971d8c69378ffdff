/*
 * Preloaded into l2tpd by bench/run.sh (NODE_OPTIONS="--require bench/gcprobe.cjs"). Node runs
 * --require preloads in every worker too; this one only acts in worker threads (the data plane).
 * It counts the worker isolate's GC events with a PerformanceObserver (an entry is created only
 * when a GC happens, so it adds no allocation while there is none) and, each time the file
 * $BENCH_GC_TRIGGER changes, appends one JSON line to $BENCH_GC_OUT:
 *   {"thread":N,"gc":count,"minor":n,"major":n,"heapUsed":bytes,"totalHeap":bytes,"external":bytes}
 * The bench touches the trigger at the start and end of each steady window and takes differences.
 * Inactive unless both variables are set.
 */
'use strict';
const { isMainThread, threadId } = require('node:worker_threads');
const trigger = process.env.BENCH_GC_TRIGGER;
const out = process.env.BENCH_GC_OUT;
if (!isMainThread && trigger && out) {
  const fs = require('node:fs');
  const v8 = require('node:v8');
  const { PerformanceObserver, constants } = require('node:perf_hooks');
  let gc = 0;
  let minor = 0;
  let major = 0;
  const obs = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      gc++;
      const kind = e.detail ? e.detail.kind : e.kind;
      if (kind === constants.NODE_PERFORMANCE_GC_MAJOR) major++;
      else minor++;
    }
  });
  obs.observe({ entryTypes: ['gc'] });
  const watcher = fs.watch(trigger, () => {
    // Read the counters before allocating anything for the report.
    const g = gc; const mi = minor; const ma = major;
    const h = v8.getHeapStatistics();
    fs.appendFileSync(out, JSON.stringify({
      thread: threadId, gc: g, minor: mi, major: ma,
      heapUsed: h.used_heap_size, totalHeap: h.total_heap_size, external: h.external_memory,
    }) + '\n');
  });
  watcher.unref();
}
