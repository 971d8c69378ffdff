import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import * as http from 'node:http';
import { main, DEFAULT_SOCKET } from '../../src/cli/main.js';
import { startApiServer } from '../../src/control/api.js';
import { FakeEngine } from '../helpers/fake-engine.js';
import { shortDir } from '../helpers/tmp.js';

/**
 * The engine behind the API server: views without the daemon's runtime fields (so l2tpctl fills
 * in the peer tunnel itself), fixed counters and reload counts.
 */
const cliEngine = (): FakeEngine => new FakeEngine({
  runtimeFields: false, stats: { rx_packets: 3, tx_packets: 4 }, reloadResult: { added: 1, removed: 0, changed: 0 },
});

class Capture {
  text = '';
  write(s: string): boolean { this.text += s; return true; }
}

async function run(argv: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; out: string; err: string }> {
  const out = new Capture();
  const err = new Capture();
  const code = await main(argv, { env, stdout: out, stderr: err, timeoutMs: 5000 });
  return { code, out: out.text, err: err.text };
}

const ADD_TUNNEL = 'add tunnel tunnel_id 3000 peer_tunnel_id 4000 encap udp local 192.0.2.1 remote 192.0.2.2 udp_sport 5000 udp_dport 6000';
const w = (s: string): string[] => s.split(' ');

t.test('l2tpctl against the API server', async (t) => {
  const dir = shortDir(t);
  const sock = path.join(dir, 'l2tpd.sock');
  const engine = cliEngine();
  const server = await startApiServer(sock, engine);
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const S = ['--socket', sock];

  let r = await run([...S, ...w(ADD_TUNNEL)]);
  t.same(r, { code: 0, out: '', err: '' }, 'add tunnel: silent success like ip l2tp');
  t.same(engine.bodies[0], { tunnel_id: 3000, peer_tunnel_id: 4000, encap: 'udp', local: '192.0.2.1', remote: '192.0.2.2', udp_sport: 5000, udp_dport: 6000, udp_csum: 'off' });

  r = await run([...S, ...w(ADD_TUNNEL)]);
  t.same(r, { code: 1, out: '', err: 'l2tpctl: refused by l2tpd: tunnel 3000 already exists\n' }, 'refusal: exit 1');

  r = await run([...w('add session tunnel_id 3000 session_id 1000 peer_session_id 2000 cookie 0123ABCD seq both'), '--socket', sock]);
  t.equal(r.code, 0, 'options after the words');
  r = await run([...S, ...w('add session tunnel_id 9 session_id 1 peer_session_id 2')]);
  t.same([r.code, r.err], [1, 'l2tpctl: refused by l2tpd: tunnel 9 does not exist\n']);

  r = await run([...S, 'show', 'tunnel']);
  t.equal(r.code, 0);
  t.equal(r.out, 'Tunnel 3000, encap UDP\n  From 192.0.2.1 to 192.0.2.2\n  Peer tunnel 4000\n  UDP source / dest ports: 5000/6000\n  UDP checksum: disabled\n');
  r = await run([...S, ...w('show tunnel tunnel_id 3000')]);
  t.match(r.out, /^Tunnel 3000, encap UDP\n/);
  r = await run([...S, ...w('show tunnel tunnel_id 3001')]);
  t.same([r.code, r.out, r.err], [1, '', 'l2tpctl: refused by l2tpd: tunnel 3001 does not exist\n']);

  r = await run([...S, 'show', 'session']);
  t.equal(r.code, 0);
  t.match(r.out, /^Session 1000 in tunnel 3000\n  Peer session 2000, tunnel 4000\n  interface name: l2tpeth0\n/, 'peer tunnel filled in from the tunnel list');
  t.match(r.out, /  cookie 0123abcd\n/);
  t.match(r.out, /  sequence numbering: send recv\n/);
  t.notMatch(r.out, /RX:/);
  r = await run([...S, ...w('show session tunnel_id 3000 session_id 1000 -s')]);
  t.match(r.out, /RX: packets\n +3\n/);
  t.match(r.out, /TX: packets\n +4\n/);
  r = await run(['-s', ...S, 'show', 'session']);
  t.match(r.out, /RX: packets/, '-s before the words');
  r = await run([...S, ...w('show session -stats')]);
  t.match(r.out, /RX: packets/, '-stats');
  r = await run([...S, ...w('show session tunnel_id 4')]);
  t.same([r.code, r.out], [0, ''], 'empty list is not an error');

  r = await run(['-j', ...S, 'show', 'session']);
  t.equal(r.code, 0);
  t.match(JSON.parse(r.out), [{ tunnel_id: 3000, session_id: 1000, interface: 'l2tpeth0', mtu: 1446, cookie: '0123abcd', seq: 'both' }]);
  r = await run([...S, 'show', 'tunnel', '--json']);
  t.match(JSON.parse(r.out), [{ tunnel_id: 3000, udp_sport: 5000 }]);
  r = await run([...S, '-json', 'status']);
  t.same(JSON.parse(r.out), { tunnels: 1, sessions: 1 });
  r = await run([...S, 'status']);
  t.same([r.code, r.out], [0, 'tunnels: 1\nsessions: 1\n']);
  r = await run([...S, 'reload']);
  t.same([r.code, r.out], [0, 'added: 1\nremoved: 0\nchanged: 0\n']);

  r = await run([...S, ...w('del tunnel tunnel_id 3000')]);
  t.same([r.code, r.err], [1, 'l2tpctl: refused by l2tpd: tunnel 3000 still has 1 session; delete them first\n']);
  r = await run([...S, ...w('del session tunnel_id 3000 session_id 1000')]);
  t.equal(r.code, 0);
  r = await run([...S, '--json', ...w('del tunnel tunnel_id 3000')]);
  t.same([r.code, JSON.parse(r.out)], [0, { deleted: { tunnel_id: 3000 } }]);

  // environment picks the socket when --socket is absent
  r = await run(['status'], { L2TPD_SOCKET: sock });
  t.same([r.code, r.out], [0, 'tunnels: 0\nsessions: 0\n']);
  r = await run(['--socket=' + sock, 'status']);
  t.equal(r.code, 0, '--socket=PATH');
});

t.test('usage errors exit 2 without contacting the daemon', async (t) => {
  const env = { L2TPD_SOCKET: '/nonexistent/never.sock' };
  let r = await run(w('add tunnel tunnel_id 0 peer_tunnel_id 4000'), env);
  t.same(r, { code: 2, out: '', err: 'l2tpctl: tunnel_id 0: expected an integer 1..4294967295\nTry "l2tpctl --help".\n' });
  r = await run(w('add tunnel tunnl_id 3000'), env);
  t.equal(r.code, 2);
  t.match(r.err, /unknown word "tunnl_id" for "add tunnel"; expected one of: tunnel_id, /);
  r = await run(w('add tunnel tunnel_id 3 peer_tunnel_id 4 encap gre local 192.0.2.1 remote 192.0.2.2'), env);
  t.same([r.code, r.err.split('\n')[0]], [2, 'l2tpctl: encap gre: expected ip or udp']);
  r = await run(['add', 'tunnel', 'tunnel_id', '-1', 'peer_tunnel_id', '4'], env);
  t.same([r.code, r.err.split('\n')[0]], [2, 'l2tpctl: tunnel_id -1: expected an integer 1..4294967295'], 'negative value is a value, not an option');
  r = await run(['show', 'tunnel', 'tunnel_id'], env);
  t.same([r.code, r.err.split('\n')[0]], [2, 'l2tpctl: tunnel_id: missing value; expected tunnel_id ID']);
  r = await run([], env);
  t.same([r.code, r.err.split('\n')[0]], [2, 'l2tpctl: missing command; expected add, del, show, reload, status or import']);
  r = await run(['--socket'], env);
  t.equal(r.code, 2, 'option without its value');
  t.match(r.err, /--socket/);
  r = await run(['--help'], env);
  t.equal(r.code, 0);
  t.match(r.out, /Usage: l2tpctl \[--socket PATH\] \[-j\|--json\] OBJECT COMMAND WORDS/);
  t.match(r.out, /add session \[name NAME\] tunnel_id ID session_id ID peer_session_id ID/);
  r = await run(['help'], env);
  t.same([r.code, r.err], [0, '']);
  t.match(r.out, /l2tpctl del session tunnel_id ID session_id ID/);
  r = await run(['-V'], env);
  t.same([r.code, r.out], [0, '0.1.0\n']);
});

t.test('unreachable daemon: exit 1 with a message that says so', async (t) => {
  const dir = shortDir(t, { 'not-a-socket': 'x' });
  const missing = path.join(dir, 'missing.sock');
  let r = await run(['--socket', missing, 'show', 'tunnel']);
  t.same(r, { code: 1, out: '', err: `l2tpctl: cannot reach l2tpd at ${missing}: ENOENT (is the daemon running?)\n` });
  r = await run(['--socket', path.join(dir, 'not-a-socket'), 'status']);
  t.same([r.code, r.err], [1, `l2tpctl: cannot reach l2tpd at ${path.join(dir, 'not-a-socket')}: ECONNREFUSED (is the daemon running?)\n`]);
  t.equal(DEFAULT_SOCKET, '/run/l2tpd/l2tpd.sock');
  const long = `/tmp/${'x'.repeat(120)}.sock`;
  r = await run(['--socket', long, 'status']);
  t.same([r.code, r.err], [1, `l2tpctl: cannot reach l2tpd at ${long}: ENAMETOOLONG (socket paths are limited to 107 bytes)\n`]);
  t.test('the default socket', { skip: fs.existsSync(DEFAULT_SOCKET) && `${DEFAULT_SOCKET} exists (a daemon runs here)` }, async (t) => {
    const d = await run(['status'], {});
    t.same([d.code, d.err], [1, 'l2tpctl: cannot reach l2tpd at /run/l2tpd/l2tpd.sock: ENOENT (is the daemon running?)\n'], 'default socket');
  });
});

const CLI_MAIN = path.join(__dirname, '..', '..', 'src', 'cli', 'main.ts');
const loader = process.execArgv.find((a) => a.includes('@tapjs/typescript'));

t.test('reload waits for the daemon however long applying the file takes; other commands time out', async (t) => {
  // A daemon that takes 10 times the client timeout to answer anything (a reload starting
  // thousands of sessions): `systemctl reload` must report its answer, not the client giving up.
  const sock = path.join(shortDir(t), 'slow.sock');
  const server = http.createServer((req, res) => {
    req.resume();
    const timer = setTimeout(() => {
      res.setHeader('content-type', 'application/json');
      res.end(req.url === '/v1/reload' ? JSON.stringify({ added: 2000, removed: 0, changed: 0 }) : JSON.stringify({ version: 'x' }));
    }, 1000);
    res.on('close', () => clearTimeout(timer));
  });
  await new Promise<void>((r) => server.listen(sock, r));
  t.teardown(() => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }));
  const call = async (argv: string[]): Promise<{ code: number; out: string; err: string }> => {
    const out = new Capture();
    const err = new Capture();
    const code = await main(['--socket', sock, ...argv], { env: {}, stdout: out, stderr: err, timeoutMs: 100 });
    return { code, out: out.text, err: err.text };
  };
  const reload = await call(['reload']);
  t.equal(reload.code, 0, `reload answered after 1 s with a 100 ms timeout: ${reload.err}`);
  t.match(reload.out, /added:?\s+2000/, 'and prints what the daemon applied');
  const status = await call(['status']);
  t.equal(status.code, 1, 'status gives up after the timeout');
  t.match(status.err, /ETIMEDOUT \(the daemon did not answer in time\)/);
});

t.test('the l2tpctl script starts with a node shebang', async (t) => {
  t.equal(fs.readFileSync(CLI_MAIN, 'utf8').split('\n')[0], '#!/usr/bin/env node');
});

t.test('the l2tpctl script itself: exit codes from a real process', {
  skip: loader ? false : 'not running under tap\'s TypeScript loader (@tapjs/typescript)',
}, async (t) => {
  const file = CLI_MAIN;
  const dir = shortDir(t, {
    'resolve.js': `const M = require('module'); const o = M._resolveFilename;
M._resolveFilename = function (r, ...a) { try { return o.call(this, r, ...a); } catch (e) {
  if (r.startsWith('.') && r.endsWith('.js')) return o.call(this, r.slice(0, -3) + '.ts', ...a); throw e; } };`,
  });
  const sock = path.join(dir, 'l2tpd.sock');
  const server = await startApiServer(sock, cliEngine());
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const exec = (args: string[]): Promise<{ code: number | null; out: string; err: string }> => new Promise((resolve) => {
    const child = spawn(process.execPath, [loader!, '-r', path.join(dir, 'resolve.js'), file, ...args],
      { env: { ...process.env, L2TPD_SOCKET: sock } });
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => { out += c.toString(); });
    child.stderr.on('data', (c: Buffer) => { err += c.toString(); });
    child.on('close', (code) => resolve({ code, out, err }));
  });
  const [ok, refused, bad, gone] = await Promise.all([
    exec(w(ADD_TUNNEL)),
    exec(w('del tunnel tunnel_id 77')),
    exec(w('add tunnel tunnel_id 1 peer_tunnel_id 2 encap gre')),
    exec(['--socket', path.join(dir, 'none.sock'), 'status']),
  ]);
  t.same([ok.code, ok.err], [0, '']);
  t.same([refused.code, refused.err], [1, 'l2tpctl: refused by l2tpd: tunnel 77 does not exist\n']);
  t.equal(bad.code, 2);
  t.match(bad.err, /encap gre: expected ip or udp/);
  t.equal(gone.code, 1);
  t.match(gone.err, /cannot reach l2tpd at .*none\.sock: ENOENT \(is the daemon running\?\)/);
});

t.test('a reader that closes the pipe early is not an error (l2tpctl --help | head -1)', {
  skip: fs.existsSync(path.join(__dirname, '..', '..', 'dist', 'cli', 'main.js')) ? false : 'dist/ not built',
}, async (t) => {
  const child = spawn(process.execPath, [path.join(__dirname, '..', '..', 'dist', 'cli', 'main.js'), '--help']);
  // Close our end before the child writes, so its first write fails with EPIPE.
  child.stdout.destroy();
  let err = '';
  child.stderr.on('data', (c: Buffer) => { err += c.toString(); });
  const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
  t.same([code, err], [0, ''], 'exit 0, nothing on stderr');
});

t.test('l2tpctl import: --dry-run prints the plan, import applies it, a refusal undoes it', async (t) => {
  const dir = shortDir(t, {
    'site.sh': `${ADD_TUNNEL.replace('add', 'ip l2tp add')}\nip l2tp add session tunnel_id 3000 session_id 1000 peer_session_id 2000\n`
      + 'ip l2tp add session name pw2 tunnel_id 3000 session_id 1001 peer_session_id 2001\nip link set l2tpeth0 mtu 1400\n',
    'bad.sh': 'ip l2tp add tunnel tunnel_id 1 peer_tunnel_id 1 local 192.0.2.1 remote 192.0.2.2 encap gre\nip link set eth0 master br0\n',
  });
  const sock = path.join(dir, 'l2tpd.sock');
  const engine = cliEngine();
  const server = await startApiServer(sock, engine);
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const S = ['--socket', sock];
  const site = path.join(dir, 'site.sh');

  let r = await run([...S, 'import', '--dry-run', site]);
  t.equal(r.code, 0, r.err);
  const planned = JSON.parse(r.out) as { tunnels: Array<{ tunnel_id: number }>; sessions: Array<{ name?: string; mtu?: number }> };
  t.same([planned.tunnels.map((x) => x.tunnel_id), planned.sessions.map((s) => [s.name, s.mtu])], [[3000], [['l2tpeth0', 1400], ['pw2', undefined]]]);
  t.match(r.err, `l2tpctl: import: note: ${site}:2: session named l2tpeth0`);
  t.same(engine.calls.filter((c) => c.startsWith('add')), [], '--dry-run adds nothing');

  r = await run([...S, 'import', path.join(dir, 'bad.sh')]);
  t.same([r.code, r.out], [2, '']);
  t.equal(r.err, `l2tpctl: import: ${dir}/bad.sh:1: encap gre: expected ip or udp\n`
    + `l2tpctl: import: ${dir}/bad.sh:2: eth0 master br0: l2tpd puts only its session interfaces (and a VLAN interface, with vlan ID dev TRUNK) in bridges; keep this line in the host's network configuration\n`
    + 'l2tpctl: import: 2 problems; nothing was applied\n');
  t.same(engine.calls.filter((c) => c.startsWith('add')), [], 'problems: nothing is sent');

  // The daemon refuses the second session (as when its interface cannot be created): the
  // tunnel and the first session are removed again.
  const addSession = engine.addSession.bind(engine);
  engine.addSession = async (s) => (s.session_id === 1001 ? Promise.reject(new Error('cannot create tap pw2: EPERM')) : addSession(s));
  r = await run([...S, 'import', site]);
  t.equal(r.code, 1);
  t.same(r.err.split('\n').filter((l) => !l.includes(': note: ')), [
    `l2tpctl: import: ${site}:3: session 1001 in tunnel 3000: l2tpd failed: cannot create tap pw2: EPERM`,
    'l2tpctl: import: nothing was applied (the 2 added before were removed)', '']);
  t.same(engine.cfg, { tunnels: [], sessions: [] }, 'the daemon is as before');

  engine.addSession = addSession;
  r = await run([...S, 'import', site]);
  t.same([r.code, r.out], [0, `imported 1 tunnel and 2 sessions into l2tpd at ${sock}\n`]);
  t.same(engine.cfg.sessions.map((s) => s.name), ['l2tpeth0', 'pw2']);
  r = await run([...S, 'import', site]);
  t.same([r.code, r.err.split('\n').filter((l) => !l.includes(': note: '))[0]], [2, `l2tpctl: import: ${site}:1: tunnel 3000 already exists`],
    'a second import conflicts with what runs, before anything is sent');

  r = await run([...S, 'import', '--dry-run', path.join(dir, 'none.sh')]);
  t.same([r.code, r.err], [2, `l2tpctl: import: cannot read ${dir}/none.sh: ENOENT\n`]);
  r = await run(['--socket', path.join(dir, 'gone.sock'), 'import', '--dry-run', site]);
  t.equal(r.code, 0, 'dry run without a daemon');
  t.match(r.err, /note: cannot reach l2tpd at .*gone\.sock: ENOENT \(is the daemon running\?\); checked without the running configuration/);
  r = await run(['--socket', path.join(dir, 'gone.sock'), 'import', site]);
  t.equal(r.code, 1, 'applying needs the daemon');
  r = await run([...S, 'import']);
  t.same([r.code, r.err.split('\n')[0]], [2, 'l2tpctl: import: missing FILE (an ip l2tp script, a .netdev or .network file, or - for standard input)']);
});
