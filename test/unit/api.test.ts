import t from 'tap';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import pino from 'pino';
import { startApiServer, socketActivated, MAX_BODY_BYTES } from '../../src/control/api.js';
import { FakeEngine } from '../helpers/fake-engine.js';
import { shortDir } from '../helpers/tmp.js';

interface Res { status: number; body: any; headers: http.IncomingHttpHeaders }

function req(socketPath: string, method: string, urlPath: string, body?: unknown, raw?: string | Buffer): Promise<Res> {
  return new Promise((resolve, reject) => {
    const payload = raw ?? (body === undefined ? undefined : JSON.stringify(body));
    const r = http.request({ socketPath, method, path: urlPath, headers: { host: 'l2tpd' } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        resolve({ status: res.statusCode ?? 0, body: text ? JSON.parse(text) : undefined, headers: res.headers });
      });
    });
    r.on('error', reject);
    r.end(payload);
  });
}

const T = { tunnel_id: 3000, peer_tunnel_id: 4000, local: '192.0.2.1', remote: '192.0.2.2', udp_sport: 5000, udp_dport: 6000 };
const S = { tunnel_id: 3000, session_id: 1000, peer_session_id: 2000 };

t.test('API over a real UNIX socket', async (t) => {
  const dir = shortDir(t);
  const sock = path.join(dir, 'run', 'l2tpd', 'l2tpd.sock');
  const engine = new FakeEngine();
  const server = await startApiServer(sock, engine, pino({ level: 'silent' }));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));

  t.equal(fs.statSync(sock).mode & 0o777, 0o660, 'socket mode 0660');
  t.ok(fs.statSync(sock).isSocket());

  let r = await req(sock, 'GET', '/v1/tunnels');
  t.same([r.status, r.body], [200, { tunnels: [] }]);
  t.match(r.headers['content-type'], /application\/json/);

  r = await req(sock, 'POST', '/v1/tunnels', { ...T, tunnel_id: '3000' });
  t.equal(r.status, 201, 'tunnel created');
  t.same(r.body, { ...T, encap: 'udp', udp_csum: 'off' }, 'normalised config echoed');

  r = await req(sock, 'POST', '/v1/tunnels', T);
  t.same([r.status, r.body], [409, { error: 'tunnel 3000 already exists', field: 'tunnel_id', value: 3000 }]);

  r = await req(sock, 'POST', '/v1/tunnels', { ...T, tunnel_id: 0 });
  t.same([r.status, r.body], [400, {
    error: 'tunnel_id 0: expected an integer 1..4294967295', field: 'tunnel_id', value: 0, allowed: 'an integer 1..4294967295',
  }]);

  r = await req(sock, 'POST', '/v1/tunnels', undefined, '{"tunnel_id": ');
  t.equal(r.status, 400);
  t.match(r.body, { error: /^request body: invalid JSON/, field: 'body' });

  r = await req(sock, 'POST', '/v1/tunnels');
  t.match([r.status, r.body.error], [400, /request body: missing/]);

  const deep = `{"tunnel_id": ${'['.repeat(200000)}${']'.repeat(200000)}}`;
  r = await req(sock, 'POST', '/v1/tunnels', undefined, deep);
  t.same([r.status, r.body], [400, {
    error: 'request body: nested deeper than 16 levels; expected a JSON object of tunnel or session fields',
    field: 'body', allowed: 'a JSON object nested at most 16 levels deep',
  }], 'deeply nested JSON: 400 naming the body, not a stack overflow');
  r = await req(sock, 'POST', '/v1/tunnels', { ...T, tunnel_id: [[[[[[1]]]]]] });
  t.match([r.status, r.body], [400, { field: 'tunnel_id', error: /^tunnel_id \[\[\[\[\[\[1\]\]\]\]\]\]: expected an integer/ }], 'nested but within the limit: names the field');
  r = await req(sock, 'POST', '/v1/sessions', { ...S, bridge: 'b\u0000r' });
  t.match([r.status, r.body], [400, { field: 'bridge', value: 'b\u0000r', error: /^bridge "b\\u0000r": contains a control character/ }],
    'NUL in a bridge name: 400 naming bridge');
  r = await req(sock, 'POST', '/v1/tunnels', { ...T, local: '::ffff:192.0.2.1', remote: '2001:db8::2' });
  t.match([r.status, r.body], [400, { field: 'local', error: /IPv4-mapped/ }], 'IPv4-mapped local: 400 naming local');

  r = await req(sock, 'POST', '/v1/tunnels', undefined, Buffer.alloc(MAX_BODY_BYTES + 10, 0x20));
  t.match([r.status, r.body], [413, { error: /exceeds 1048576 bytes/ }], 'body limit 1 MiB');

  r = await req(sock, 'GET', '/v1/tunnels/3000');
  t.match([r.status, r.body], [200, { tunnel_id: 3000, state: 'up', sessions: 0 }]);
  r = await req(sock, 'GET', '/v1/tunnels/9');
  t.same([r.status, r.body], [404, { error: 'tunnel 9 does not exist', field: 'tunnel_id', value: 9 }]);
  r = await req(sock, 'GET', '/v1/tunnels/abc');
  t.match([r.status, r.body], [400, { field: 'tunnel_id', value: 'abc' }]);

  r = await req(sock, 'POST', '/v1/sessions', { ...S, tunnel_id: 9 });
  t.same([r.status, r.body.error], [404, 'tunnel 9 does not exist']);
  r = await req(sock, 'POST', '/v1/sessions', { ...S, cookie: 'xyz' });
  t.match([r.status, r.body], [400, { field: 'cookie', value: 'xyz', allowed: '8 or 16 hex digits' }]);
  r = await req(sock, 'POST', '/v1/sessions', S);
  t.match([r.status, r.body], [201, { ...S, interface: 'l2tpeth0', mtu: 1446 }], 'engine view returned');
  r = await req(sock, 'POST', '/v1/sessions', { ...S, session_id: 1001, name: 'pw1' });
  t.equal(r.status, 201);

  r = await req(sock, 'GET', '/v1/sessions');
  t.equal(r.status, 200);
  t.equal(r.body.sessions.length, 2);
  t.notOk('stats' in r.body.sessions[0], 'no stats unless asked');
  r = await req(sock, 'GET', '/v1/sessions?tunnel_id=3000&session_id=1001&stats=1');
  t.match(r.body.sessions, [{ session_id: 1001, interface: 'pw1', stats: { rx_packets: 1 } }]);
  t.equal(r.body.sessions.length, 1);
  r = await req(sock, 'GET', '/v1/tunnels/3000/sessions/1000');
  t.match([r.status, r.body], [200, { session_id: 1000 }]);
  r = await req(sock, 'GET', '/v1/tunnels/3000/sessions/7');
  t.equal(r.status, 404);
  r = await req(sock, 'GET', '/v1/tunnels/3000/sessions?stats=1');
  t.equal(r.body.sessions.length, 2);
  r = await req(sock, 'GET', '/v1/sessions?tunnel_id=0');
  t.match([r.status, r.body], [400, { field: 'tunnel_id', value: '0' }]);
  r = await req(sock, 'GET', '/v1/sessions?stats=maybe');
  t.match([r.status, r.body], [400, { field: 'stats' }]);
  r = await req(sock, 'GET', '/v1/sessions?tunel_id=1');
  t.match([r.status, r.body], [400, { error: /unknown query parameter "tunel_id"/ }]);

  r = await req(sock, 'DELETE', '/v1/tunnels/3000');
  t.same([r.status, r.body.error], [409, 'tunnel 3000 still has 2 sessions; delete them first']);
  r = await req(sock, 'DELETE', '/v1/tunnels/3000/sessions/1000');
  t.same([r.status, r.body], [200, { deleted: { tunnel_id: 3000, session_id: 1000 } }]);
  r = await req(sock, 'DELETE', '/v1/tunnels/3000/sessions/1000');
  t.same([r.status, r.body.error], [404, 'session 1000 does not exist in tunnel 3000']);
  r = await req(sock, 'DELETE', '/v1/tunnels/3000/sessions/1001/');
  t.equal(r.status, 200, 'trailing slash tolerated');
  r = await req(sock, 'DELETE', '/v1/tunnels/3000');
  t.same([r.status, r.body], [200, { deleted: { tunnel_id: 3000 } }]);

  r = await req(sock, 'POST', '/v1/reload');
  t.same([r.status, r.body], [200, { added: 0, removed: 0, changed: 0 }]);
  r = await req(sock, 'GET', '/v1/status');
  t.same([r.status, r.body], [200, { tunnels: 0, sessions: 0 }]);

  r = await req(sock, 'GET', '/v1/nothing');
  t.match([r.status, r.body], [404, { error: /no such resource: GET \/v1\/nothing/ }]);
  r = await req(sock, 'GET', '/');
  t.equal(r.status, 404);
  r = await req(sock, 'PUT', '/v1/tunnels');
  t.match([r.status, r.body, r.headers.allow], [405, { error: /not allowed/ }, 'GET, POST']);
  r = await req(sock, 'GET', '/v1/tunnels/%E0%A4%A');
  t.equal(r.status, 400, 'bad percent-encoding');

  engine.failNext = new Error('netlink exploded');
  r = await req(sock, 'GET', '/v1/status');
  t.same([r.status, r.body], [500, { error: 'netlink exploded' }]);
});

t.test('mutations are serialised: one engine mutation at a time', async (t) => {
  const dir = shortDir(t);
  const sock = path.join(dir, 'c.sock');
  const engine = new FakeEngine();
  engine.delayMs = 20;
  const server = await startApiServer(sock, engine);
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const results = await Promise.all([
    req(sock, 'POST', '/v1/tunnels', T),
    req(sock, 'POST', '/v1/tunnels', T),
    req(sock, 'POST', '/v1/tunnels', { ...T, tunnel_id: 3001, udp_sport: 5001 }),
  ]);
  t.equal(engine.maxActive, 1, 'never two mutations at once');
  t.same(results.map((x) => x.status).sort(), [201, 201, 409], 'check-then-apply is atomic');
  t.equal(engine.cfg.tunnels.length, 2);
});

t.test('reads are answered while a mutation runs, not queued behind it', async (t) => {
  const dir = shortDir(t);
  const sock = path.join(dir, 'c.sock');
  const engine = new FakeEngine();
  engine.delays = { reload: 500 };
  const server = await startApiServer(sock, engine);
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const done: string[] = [];
  const reload = req(sock, 'POST', '/v1/reload').then((r) => { done.push('reload'); return r; });
  await new Promise((r) => setTimeout(r, 50));
  const reads = await Promise.all([req(sock, 'GET', '/v1/status'), req(sock, 'GET', '/v1/tunnels')]);
  done.push('reads');
  t.same(reads.map((x) => x.status), [200, 200]);
  t.equal((await reload).status, 200);
  t.same(done, ['reads', 'reload'], 'the reads did not wait for the reload');
  t.ok(engine.maxActive >= 2, 'the engine saw the reads while the reload was running');
});

t.test('socket file handling', async (t) => {
  const dir = shortDir(t, { 'plain-file': 'x' });

  // a path longer than sun_path is refused up front
  await t.rejects(startApiServer(`/tmp/${'x'.repeat(120)}.sock`, new FakeEngine()), /too long \(\d+ bytes; at most 107\)/);

  // a non-socket file is never replaced
  await t.rejects(startApiServer(path.join(dir, 'plain-file'), new FakeEngine()), /exists and is not a socket/);

  // a socket with a live listener is refused
  const live = path.join(dir, 'live.sock');
  const first = await startApiServer(live, new FakeEngine());
  await t.rejects(startApiServer(live, new FakeEngine()), /in use by a running process/);
  await new Promise<void>((r) => first.close(() => r()));

  // a stale socket (its process died) is removed and replaced
  const stale = path.join(dir, 'stale.sock');
  const child = spawnSync(process.execPath, ['-e',
    `require('net').createServer().listen(${JSON.stringify(stale)}, () => process.kill(process.pid, 'SIGKILL'))`]);
  t.equal(child.signal, 'SIGKILL');
  t.ok(fs.lstatSync(stale).isSocket(), 'stale socket left behind');
  const server = await startApiServer(stale, new FakeEngine());
  const r = await req(stale, 'GET', '/v1/status');
  t.equal(r.status, 200);
  await new Promise<void>((res) => server.close(() => res()));
});

t.test('systemd socket activation is recognised only for this pid and one fd', async (t) => {
  t.ok(socketActivated({ LISTEN_FDS: '1', LISTEN_PID: String(process.pid) }));
  t.notOk(socketActivated({ LISTEN_FDS: '1', LISTEN_PID: '1' }));
  t.notOk(socketActivated({ LISTEN_FDS: '2', LISTEN_PID: String(process.pid) }));
  t.notOk(socketActivated({}));
});
