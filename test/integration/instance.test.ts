/**
 * One l2tpd per network namespace. A second instance started next to a running one (another
 * config file, another control socket, the metrics port the first one holds) must say who is
 * running and exit without touching anything: the first one's taps and bridges keep their
 * ifindex, the operator's address on the bridge stays, and the first one keeps working.
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { mustLink, netnsUnavailable, nsExec, sleep, stopProcess, uniqueName } from '../helpers/netns.js';
import { DAEMON, Sites, UNDERLAY } from '../helpers/sites.js';

const skip = netnsUnavailable();

t.test('a second instance in the same namespace touches nothing and says who is running', { skip }, async (t) => {
  const sites = new Sites();
  t.teardown(() => sites.close());
  const a = sites.a;
  const port = 19000 + (process.pid % 1000);
  await sites.start(a, ['--metrics-listen', `127.0.0.1:${port}`]);
  const pw = uniqueName('pw');
  const br = uniqueName('br');
  sites.ok(a, ['add', 'tunnel', 'tunnel_id', '1', 'peer_tunnel_id', '1', 'local', UNDERLAY.a4, 'remote', UNDERLAY.b4,
    'udp_sport', '1701', 'udp_dport', '1701']);
  sites.ok(a, ['add', 'session', 'name', pw, 'tunnel_id', '1', 'session_id', '1', 'peer_session_id', '1', 'bridge', br]);
  // What the operator added by hand: an address on the bridge l2tpd created.
  nsExec(a.ns, 'ip', ['addr', 'add', '198.51.100.1/24', 'dev', br]);
  const before = { tap: mustLink(a.ns, pw).ifindex, bridge: mustLink(a.ns, br).ifindex, config: readFileSync(a.config, 'utf8') };

  const dir = mkdtempSync(path.join(os.tmpdir(), 'l2tpd-second-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const second = spawn('ip', ['netns', 'exec', a.ns, process.execPath, DAEMON, '--config', path.join(dir, 'other.json'),
    '--socket', path.join(dir, 'other.sock'), '--metrics-listen', `127.0.0.1:${port}`], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  second.stdout.on('data', (b: Buffer) => { out += b.toString(); });
  second.stderr.on('data', (b: Buffer) => { out += b.toString(); });
  const exited = new Promise<number | null>((r) => second.once('exit', (c) => r(c)));
  const code = await Promise.race([exited, sleep(15000).then(() => 'still running' as const)]);
  await stopProcess(second);
  t.equal(code, 1, 'the second instance exits 1');
  t.match(out, new RegExp(`another l2tpd is running in this network namespace \\(pid ${a.proc!.pid}, config ${a.config}, socket ${a.socket}`),
    `it says who is running: ${out.trim()}`);
  t.notMatch(out, /EADDRINUSE|removed interface/, 'it neither reached the metrics port nor swept');

  t.equal(mustLink(a.ns, pw).ifindex, before.tap, 'the running daemon\'s tap is the same device');
  t.equal(mustLink(a.ns, br).ifindex, before.bridge, 'its bridge is the same device');
  t.match(nsExec(a.ns, 'ip', ['-br', 'addr', 'show', 'dev', br]), /198\.51\.100\.1\/24/, 'the operator\'s address on the bridge is still there');
  t.equal(readFileSync(a.config, 'utf8'), before.config, 'its config file is unchanged');
  const shown = sites.json<Array<{ interface: string; state: string; restored: number }>>(a, ['show', 'session']);
  t.match(shown, [{ interface: pw, state: 'up', restored: 0 }], 'the running daemon answers, its session up and never restored');
});
