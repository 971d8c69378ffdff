#!/usr/bin/env node
/**
 * l2tpd: the daemon. Starts the data-plane worker, restores the config file, serves the control
 * API on a UNIX socket and Prometheus metrics on TCP, reloads on SIGHUP, stops on SIGTERM.
 */
import type { Server } from 'node:net';
import path from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { ConfigStore } from '../control/store.js';
import { TxSeqStore } from '../control/tx-seq-store.js';
import { DEFAULT_SOCKET, startApiServer } from '../control/api.js';
import { packageVersion } from '../control/version.js';
import { DataPlane } from '../dataplane/index.js';
import { native } from '../native/index.js';
import { Rtnl } from '../netlink/index.js';
import { createRegistry, startMetricsServer } from '../metrics/index.js';
import { createLogger } from './logger.js';
import { DaemonEngine } from './engine.js';
import { AlreadyRunningError, claimNamespace } from './claim.js';
import { DAEMON_OPTIONS, DEFAULT_CONFIG, DEFAULT_METRICS, optionDefault, optionKey, refuseValue } from './options.js';
import { extendStartTimeout, ServiceNotifier, startWatchdog } from './service.js';

export { DEFAULT_SOCKET, DEFAULT_CONFIG, DEFAULT_METRICS };
const VERSION = packageVersion();

function parseListen(value: string): { host: string; port: number } | null {
  if (value === 'off') return null;
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:]+):(\d+)$/.exec(value);
  const port = m ? Number(m[2]) : NaN;
  if (!m || !(port >= 1 && port <= 65535)) {
    throw new InvalidArgumentError(`"${value}": expected HOST:PORT (port 1..65535) or off`);
  }
  return { host: m[1].replace(/^\[|\]$/g, ''), port };
}

async function main(): Promise<void> {
  const program = new Command('l2tpd')
    .description('Userspace L2TPv3 pseudowire daemon')
    .version(VERSION)
    .showHelpAfterError();
  for (const o of DAEMON_OPTIONS) program.option(`${o.flag} <${o.placeholder.toLowerCase()}>`, o.summary, optionDefault(o));
  program.exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 2));
  program.parse();
  const opts = program.opts<{ config: string; socket: string; stateDir: string; metricsListen: string; logLevel: string; offload: string }>();
  for (const o of DAEMON_OPTIONS) {
    const refused = refuseValue(o, program.getOptionValue(optionKey(o)) as string);
    if (refused) {
      console.error(`l2tpd: ${refused}`);
      process.exit(2);
    }
  }
  let metrics: { host: string; port: number } | null;
  try { metrics = parseListen(opts.metricsListen); } catch (err) {
    console.error(`l2tpd: --metrics-listen ${(err as Error).message}`);
    process.exit(2);
  }
  // The main thread's name (comm): `l2tpd` in ps, top and pgrep rather than `node`.
  native.setThreadName('l2tpd');
  const log = createLogger(opts.logLevel);
  // Nothing may be touched before this instance knows it is the only one in the namespace.
  let claim: Server;
  try {
    claim = await claimNamespace({
      pid: process.pid, config: opts.config, socket: opts.socket, metrics: opts.metricsListen, version: VERSION,
      started: new Date().toISOString(),
    });
  } catch (err) {
    log.fatal({ err: (err as Error).message, holder: (err as AlreadyRunningError).holder }, (err as Error).message);
    process.exit(1);
  }
  const service = new ServiceNotifier(native.notifySend, log);
  const store = new ConfigStore(opts.config);
  // systemd's StateDirectory= (/var/lib/l2tpd in the unit) arrives as $STATE_DIRECTORY.
  const stateDir = opts.stateDir || process.env.STATE_DIRECTORY?.split(':')[0] || path.dirname(path.resolve(opts.config));
  const rtnl = await Rtnl.open();
  let stopping = false;
  const dataplane = new DataPlane((code) => {
    if (!stopping) { log.fatal({ code }, 'data plane worker died'); process.exit(1); }
  });
  const engine = new DaemonEngine(store, dataplane, rtnl, log, { offload: opts.offload === 'on', txSeq: new TxSeqStore(stateDir) });
  const listening: Array<{ close(): unknown }> = [claim];
  const abort = async (err: unknown, what: string): Promise<never> => {
    log.fatal({ err: (err as Error).message }, what);
    for (const server of listening) server.close();
    await dataplane.stop();
    rtnl.close();
    process.exit(1);
  };
  // The control socket and the metrics port are bound before the config is applied: if either
  // cannot be had, l2tpd stops before it has changed any interface.
  let started!: () => void;
  const ready = new Promise<void>((resolve) => { started = resolve; });
  const api = await startApiServer(opts.socket, engine, log, { ready }).catch((err: unknown) => abort(err, 'cannot listen on the control socket'));
  listening.push(api);
  const metricsServer = metrics
    ? await startMetricsServer(createRegistry(engine, VERSION), metrics.host, metrics.port)
      .catch((err: unknown) => abort(err, `cannot listen for /metrics on ${opts.metricsListen}`))
    : null;
  if (metricsServer) listening.push(metricsServer);

  // Signals are ours before the config is applied (seconds with thousands of sessions): Node's
  // default action would kill l2tpd half-way, without saving its send numbering. A stop asked
  // for meanwhile runs once start has finished; so does one reload, however many SIGHUPs came.
  let applied = false;
  let stopAsked: string | undefined;
  let reloadAsked = false;
  let watchdog: ReturnType<typeof startWatchdog> | undefined;
  // A refused file is logged by the engine.
  const reload = () => {
    engine.exclusive(() => engine.reload()).then((r) => log.info(r, 'SIGHUP: reloaded'), () => undefined);
  };
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down');
    service.notify('STOPPING=1');
    watchdog?.stop();
    api.close();
    metricsServer?.close();
    await engine.stop();
    rtnl.close();
    claim.close();
    log.info('stopped');
    process.exit(0);
  };
  process.on('SIGHUP', () => {
    if (applied) { reload(); return; }
    if (!reloadAsked) log.info({ signal: 'SIGHUP' }, 'reload after the configuration is applied');
    reloadAsked = true;
  });
  const onStop = (signal: string) => {
    if (applied) { void shutdown(signal); return; }
    if (stopAsked === undefined) log.info({ signal }, 'stopping once the configuration is applied');
    stopAsked ??= signal;
  };
  process.on('SIGTERM', () => onStop('SIGTERM'));
  process.on('SIGINT', () => onStop('SIGINT'));

  const extending = extendStartTimeout(service);
  try {
    await engine.start();
  } catch (err) {
    extending.stop();
    await abort(err, 'cannot load configuration');
  }
  extending.stop();
  applied = true;
  if (stopAsked !== undefined) { await shutdown(stopAsked); return; }
  started();
  log.info({ socket: opts.socket, config: opts.config, metrics: opts.metricsListen, offload: opts.offload }, 'l2tpd ready');
  service.notify('READY=1', 'STATUS=running');
  const watchdogMs = service.watchdogMs();
  watchdog = watchdogMs === undefined ? undefined
    : startWatchdog({ notifier: service, intervalMs: watchdogMs, probe: () => dataplane.ping(), log });
  if (reloadAsked) reload();
}

main().catch((err: Error) => {
  console.error(`l2tpd: ${err.message}`);
  process.exit(1);
});
