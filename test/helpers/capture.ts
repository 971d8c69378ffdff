/** tcpdump inside a test's namespace, writing a pcap for tshark to judge. */
import { spawn, type ChildProcess } from 'node:child_process';
import { sleep } from './netns.js';

/**
 * Start tcpdump on `ifname` in `ns`, writing every packet to `file` (its first `snaplen` bytes;
 * 0: all of it), and wait until it is listening. Stop it with stopProcess(proc, 'SIGINT') so the file is complete.
 */
export async function startCapture(ns: string, file: string, ifname = 'ul0', snaplen = 0): Promise<{ proc: ChildProcess; err: string[] }> {
  const proc = spawn('ip', ['netns', 'exec', ns, 'tcpdump', '-i', ifname, '-n', '-U', '--immediate-mode', '-B', '65536', '-s', String(snaplen), '-Z', 'root', '-w', file],
    { stdio: ['ignore', 'ignore', 'pipe'] });
  const err: string[] = [];
  proc.stderr!.on('data', (b: Buffer) => err.push(b.toString()));
  const deadline = Date.now() + 15000;
  while (Date.now() < deadline && !/listening on/.test(err.join('')) && proc.exitCode === null) await sleep(50);
  if (!/listening on/.test(err.join(''))) throw new Error(`tcpdump did not start: ${err.join('')}`);
  return { proc, err };
}
