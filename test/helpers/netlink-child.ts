/**
 * Child-process driver for src/netlink. Run inside a namespace with
 * `ip netns exec NS node --import=<ts-node fork>/import.mjs test/helpers/netlink-child.ts '<ops JSON>'`
 * (see netlink-run.ts). Executes the ops in order on one Rtnl, then closes it and prints one
 * JSON line {results:[...]} on stdout. It never calls process.exit: if close() left a socket
 * open (the monitor is ref'd) the child would hang and the parent's timeout would catch it.
 */
import { execFileSync } from 'node:child_process';
import { NetlinkError, Rtnl, toNetlinkError, vlanRequest, type LinkEvent } from '../../src/netlink/index.js';
import { SO_RCVBUF, SOL_SOCKET } from '../../src/netlink/monitor-socket.js';

export type ChildOp =
  | { op: 'linkByName'; args: [string] }
  | { op: 'linkByIndex'; args: [number] }
  | { op: 'listLinks'; args?: [{ master?: number }] }
  | { op: 'concurrentDumps'; args: [number] }
  // listLinks({master}), then linkByName of each name while that dump is under way
  | { op: 'dumpBesideGets'; args: [number, string[]] }
  // READERS loops of ROUNDS back-to-back listLinks, and linkByName(NAME) sent once they run:
  // how many dumps had finished when it answered, of how many
  | { op: 'getAmidDumps'; args: [number, number, string] }
  | { op: 'setLink'; args: [string | number, Record<string, unknown>] }
  | { op: 'createBridge'; args: [string, Record<string, unknown>?] }
  | { op: 'createVlan'; args: [string, number, string, Record<string, unknown>?] }
  | { op: 'deleteLink'; args: [string | number] }
  | { op: 'deleteLinks'; args: [number[]] }
  | { op: 'vlanRequest'; args: [number, number, string] }
  | { op: 'wrapError'; args: [unknown, string] }
  | { op: 'ip'; args: string[] }
  | { op: 'watch' }
  | { op: 'waitEvent'; args: [{ type: 'new' | 'del'; name: string }, number?] }
  | { op: 'events'; args?: [string] }
  | { op: 'unwatch' }
  | { op: 'monitorStatus' }
  // SO_RCVBUF on the monitor socket (through the fd monitorStatus found), to make an overrun certain
  | { op: 'shrinkMonitor'; args: [number] }
  // how many 'new' and 'del' events arrived for links whose name starts with the prefix
  | { op: 'countEvents'; args: [string] }
  // resolves once no event arrived for `ms` (the queued ones have been read); the number read meanwhile
  | { op: 'quiet'; args: [number] }
  | { op: 'monitorErrors' }
  | { op: 'sleep'; args: [number] };

export type ChildResult = { ok: true; value: unknown } | { ok: false; error: SerializedError };
export interface SerializedError { name: string; message: string; code?: string; errno?: number; op?: string; isNetlinkError: boolean }

function serialize(e: unknown): SerializedError {
  if (e instanceof NetlinkError) return { name: e.name, message: e.message, code: e.code, errno: e.errno, op: e.op, isNetlinkError: true };
  if (e instanceof Error) return { name: e.name, message: e.message, isNetlinkError: false };
  return { name: typeof e, message: String(e), isNetlinkError: false };
}

async function main(): Promise<void> {
  const ops = JSON.parse(process.argv[2] ?? '[]') as ChildOp[];
  const rtnl = Rtnl.open();
  const events: LinkEvent[] = [];
  const monitorErrors: SerializedError[] = [];
  const waiters = new Set<() => void>();
  let unwatch: (() => void) | undefined;
  const results: ChildResult[] = [];
  try {
    for (const o of ops) {
      try {
        results.push({ ok: true, value: await run(o) });
      } catch (e) {
        results.push({ ok: false, error: serialize(e) });
      }
    }
  } finally {
    rtnl.close();
  }
  process.stdout.write(`${JSON.stringify({ results, closed: rtnl.isClosed, pid: process.pid })}\n`);

  async function run(o: ChildOp): Promise<unknown> {
    switch (o.op) {
      case 'linkByName': return (await rtnl.linkByName(o.args[0])) ?? null;
      case 'linkByIndex': return (await rtnl.linkByIndex(o.args[0])) ?? null;
      case 'listLinks': return rtnl.listLinks(o.args?.[0]);
      // Dumps started together, as a reader's and a reload's can be: the names each one got.
      case 'concurrentDumps': return Promise.all(Array.from({ length: o.args[0] }, () => rtnl.listLinks()))
        .then((all) => all.map((links) => links.map((l) => l.name).sort()));
      case 'dumpBesideGets': {
        const [master, names] = o.args;
        const dump = rtnl.listLinks({ master });
        // A few microtask turns: the dump request is on the socket, its first part not yet read.
        for (let i = 0; i < 10; i++) await null;
        const [ports, ...got] = await Promise.all([dump, ...names.map((n) => rtnl.linkByName(n))]);
        return { ports: ports.map((l) => l.name).sort(), got: got.map((l) => l?.name) };
      }
      case 'getAmidDumps': {
        const [readers, rounds, name] = o.args;
        let dumped = 0;
        const loops = Array.from({ length: readers }, async () => {
          for (let i = 0; i < rounds; i++) { await rtnl.listLinks(); dumped++; }
        });
        while (dumped < readers) await new Promise((r) => setImmediate(r));
        const got = await rtnl.linkByName(name);
        const dumpedAtGet = dumped;
        await Promise.all(loops);
        return { got: got?.name, dumpedAtGet, dumps: dumped };
      }
      case 'setLink': return rtnl.setLink(o.args[0], o.args[1]);
      case 'createBridge': return rtnl.createBridge(o.args[0], o.args[1] ?? {});
      case 'createVlan': return rtnl.createVlan(o.args[0], o.args[1], o.args[2], o.args[3] ?? {});
      case 'deleteLink': return rtnl.deleteLink(o.args[0]);
      case 'deleteLinks': return rtnl.deleteLinks(o.args[0]);
      case 'vlanRequest': return vlanRequest(o.args[0], o.args[1], o.args[2]).toString('hex');
      case 'wrapError': {
        const [input, op] = o.args;
        const thrown = typeof input === 'object' && input !== null && 'message' in input
          ? Object.assign(new Error(String((input as { message: unknown }).message)), input)
          : input;
        return serialize(toNetlinkError(thrown, op));
      }
      case 'ip': return execFileSync('ip', o.args, { encoding: 'utf8' });
      case 'watch':
        unwatch = rtnl.onLinkEvent((ev) => { events.push(ev); for (const w of [...waiters]) w(); }, (err) => monitorErrors.push(serialize(err)));
        return true;
      case 'waitEvent': {
        const [want, timeoutMs = 5000] = o.args;
        const seen = (): boolean => events.some((e) => e.type === want.type && e.link.name === want.name);
        if (seen()) return true;
        return new Promise<boolean>((resolve) => {
          const done = (v: boolean): void => { clearTimeout(timer); waiters.delete(check); resolve(v); };
          const check = (): void => { if (seen()) done(true); };
          const timer = setTimeout(() => done(false), timeoutMs);
          waiters.add(check);
        });
      }
      case 'events': return o.args ? events.filter((e) => e.link.name === o.args?.[0]) : events;
      case 'unwatch': unwatch?.(); unwatch = undefined; return true;
      case 'monitorStatus': return rtnl.monitorStatus() ?? null;
      case 'shrinkMonitor': {
        const fd = rtnl.monitorStatus()?.fd;
        if (fd === undefined) throw new Error('monitor fd not known');
        // Loaded here: the other ops must not need the built addon.
        // eslint-disable-next-line @typescript-eslint/no-require-imports
        const { native } = require('../../src/native/index.js') as typeof import('../../src/native/index.js');
        native.setSockoptInt(fd, SOL_SOCKET, SO_RCVBUF, o.args[0]);
        return rtnl.monitorStatus()?.recvBuffer ?? null;
      }
      case 'quiet': {
        const start = events.length;
        let seen = -1;
        await new Promise<void>((resolve) => {
          const tick = (): void => {
            if (events.length === seen) { resolve(); return; }
            seen = events.length;
            setTimeout(tick, o.args[0]);
          };
          tick();
        });
        return events.length - start;
      }
      case 'monitorErrors': return monitorErrors;
      case 'sleep': await new Promise((r) => setTimeout(r, o.args[0])); return true;
      case 'countEvents': {
        const mine = events.filter((e) => e.link.name.startsWith(o.args[0]));
        return { new: mine.filter((e) => e.type === 'new').length, del: mine.filter((e) => e.type === 'del').length };
      }
    }
  }
}

void main();
