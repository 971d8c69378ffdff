/**
 * Data-plane worker entry: owns the Forwarder, applies the control plane's requests in order
 * and answers each with {id, ok} or {id, ok: false, error} — except `stop`, which closes the
 * port first (the main thread sees the worker exit instead).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { native } from '../native/index.js';
import { Forwarder } from './forwarder.js';
import { DATAPLANE_THREAD_NAME, type DataPlaneRequest, type DataPlaneReply, type WorkerInit } from './messages.js';

/**
 * How long one readiness callback keeps forwarding before the worker's libuv loop gets a turn.
 * Node allocates an object on every turn, so returning after each batch made garbage at line rate
 * (20–30 KiB/s, a minor GC every 30–60 s); a slice ends early for a due timer or a control request.
 */
const SLICE_MS = 50;

const init = workerData as WorkerInit;
// Named so `top -H`, `ps -L` and a debugger can tell the forwarding thread from Node's own.
native.setThreadName(DATAPLANE_THREAD_NAME);
native.pollSlice(SLICE_MS);
native.pollWake(init.wakeFd);
const forwarder = new Forwarder(native, init.pool, init.sessionCounters, init.tunnelCounters, init.status);

function apply(req: DataPlaneRequest): void {
  switch (req.op) {
    case 'addTunnel': forwarder.addTunnel(req.tunnel); break;
    case 'delTunnel': forwarder.delTunnel(req.slot); break;
    case 'addSession': forwarder.addSession(req.session); break;
    case 'delSession': forwarder.delSession(req.slot); break;
    case 'ping': break; // liveness: the reply is the answer
    case 'stop': forwarder.stop(); parentPort!.close(); break;
  }
}

parentPort!.on('message', (req: DataPlaneRequest) => {
  let reply: DataPlaneReply;
  try {
    apply(req);
    reply = { id: req.id, ok: true };
  } catch (err) {
    reply = { id: req.id, ok: false, error: (err as Error).message };
  }
  parentPort!.postMessage(reply);
});
