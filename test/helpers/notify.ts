/**
 * A stand-in for systemd's notification socket: python3 bound to an AF_UNIX datagram socket (Node
 * cannot bind one), collecting what a service sends with sd_notify(3). `name` is a path or an
 * @abstract name; abstract names live in a network namespace, so pass the service's `ns`.
 */
import { spawn } from 'node:child_process';
import type tap from 'tap';
import { hasCommand, sleep } from './netns.js';

export interface NotifyReceiver {
  /** Each datagram, in arrival order. */
  messages: string[];
}

export function notifyReceiverUnavailable(): string | false {
  return hasCommand('python3') ? false : 'python3 is not installed (it stands in for the notification socket)';
}

export async function notifyReceiver(t: tap.Test, name: string, ns?: string): Promise<NotifyReceiver> {
  const bind = name.startsWith('@') ? `'\\0' + ${JSON.stringify(name.slice(1))}` : JSON.stringify(name);
  const script = [
    'import json, socket',
    's = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)',
    `s.bind(${bind})`,
    'print("bound")',
    'while True: print(json.dumps(s.recv(65536).decode()))',
  ].join('\n');
  const argv = ['python3', '-u', '-c', script];
  const py = ns ? spawn('ip', ['netns', 'exec', ns, ...argv], { stdio: ['ignore', 'pipe', 'inherit'] })
    : spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => { py.kill('SIGKILL'); });
  const r: NotifyReceiver = { messages: [] };
  let bound = false;
  let buf = '';
  py.stdout.on('data', (b: Buffer) => {
    buf += b.toString();
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      if (line === 'bound') bound = true;
      else r.messages.push(JSON.parse(line) as string);
    }
  });
  for (let i = 0; i < 200 && !bound && py.exitCode === null; i++) await sleep(50);
  if (!bound) throw new Error(`python3 did not bind ${name}`);
  return r;
}
