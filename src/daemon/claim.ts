/**
 * One l2tpd per network namespace. The interfaces l2tpd marks as its own are per namespace, and
 * the start-up sweep removes marked interfaces its config does not name, so a second instance
 * would delete the first one's taps and bridges. Before anything is touched, the daemon binds
 * the abstract UNIX socket `@l2tpd`: abstract names are scoped to the network namespace, and the
 * kernel releases the name when the process dies (no stale lock file after kill -9). Whoever
 * connects to it gets one JSON line saying who holds it.
 */
import * as net from 'node:net';

/** The abstract socket name (leading NUL); `ss -xlp` shows it as `@l2tpd`. */
export const CLAIM_NAME = '\0l2tpd';

/** What the holder tells a second instance. */
export interface ClaimInfo {
  pid: number;
  config: string;
  socket: string;
  metrics: string;
  version: string;
  started: string;
}

export class AlreadyRunningError extends Error {
  constructor(readonly holder: Partial<ClaimInfo> | undefined) {
    const who = holder?.pid !== undefined
      ? `pid ${holder.pid}, config ${holder.config}, socket ${holder.socket}, metrics ${holder.metrics}, running since ${holder.started}`
      : 'it did not say who it is';
    super(`another l2tpd is running in this network namespace (${who}); it owns the l2tpd interfaces here, so this one exits without touching anything`);
    this.name = 'AlreadyRunningError';
  }
}

/**
 * Claim this network namespace for `info.pid`. Resolves with the server holding the claim (close
 * it at exit); rejects with AlreadyRunningError when another process holds it.
 */
export async function claimNamespace(info: ClaimInfo, name = CLAIM_NAME): Promise<net.Server> {
  const line = `${JSON.stringify(info)}\n`;
  const server = net.createServer((c) => {
    c.on('error', () => undefined);
    c.end(line);
  });
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ path: name }, () => { server.off('error', reject); resolve(); });
    });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err;
    throw new AlreadyRunningError(await askHolder(name));
  }
  server.unref();
  return server;
}

/** The holder's ClaimInfo, or undefined if it does not answer within a second. */
function askHolder(name: string): Promise<Partial<ClaimInfo> | undefined> {
  return new Promise((resolve) => {
    let text = '';
    const c = net.connect({ path: name });
    const done = (v: Partial<ClaimInfo> | undefined): void => { c.destroy(); resolve(v); };
    c.setTimeout(1000, () => done(undefined));
    c.on('data', (d: Buffer) => {
      text += d.toString('utf8');
      if (text.length > 4096) done(undefined);
    });
    c.on('end', () => {
      try { done(JSON.parse(text) as Partial<ClaimInfo>); } catch { done(undefined); }
    });
    c.on('error', () => done(undefined));
  });
}
