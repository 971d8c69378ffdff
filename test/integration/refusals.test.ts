/**
 * Through a real daemon: every refused request exits 1 with a message naming the word, the
 * value and what is allowed, and leaves both the running state and the config file unchanged;
 * usage errors exit 2 before reaching the daemon; an unreachable daemon exits 1 and says so.
 * Also: a restarted daemon restores its tunnels and sessions from the config file.
 */
import t from 'tap';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { createNetns, deleteNetns, hasCommand, netnsUnavailable, stopProcess, waitUntil } from '../helpers/netns.js';
import { CLI, DAEMON, Sites, UNDERLAY } from '../helpers/sites.js';

const skip = netnsUnavailable() || (!hasCommand('curl') && 'curl is not installed');

/** POST `body` to the API with curl (an independent client); status and parsed body. */
function curl(socket: string, urlPath: string, body: string): { status: number; body: { field?: string; error?: string } } {
  const r = spawnSync('curl', ['-s', '--unix-socket', socket, '-o', '-', '-w', '\n%{http_code}', '-H', 'content-type: application/json',
    '--data-binary', '@-', `http://l2tpd${urlPath}`], { input: body, encoding: 'utf8', timeout: 20000 });
  const lines = r.stdout.trimEnd().split('\n');
  const status = Number(lines.pop());
  return { status, body: JSON.parse(lines.join('\n') || '{}') };
}

t.test('refusals change nothing; restart restores', { skip }, async (t) => {
  const sites = new Sites();
  t.teardown(() => sites.close());
  const a = sites.a;
  await sites.start(a);
  sites.ok(a, ['add', 'tunnel', 'tunnel_id', '1', 'peer_tunnel_id', '2', 'encap', 'udp', 'local', UNDERLAY.a4,
    'remote', UNDERLAY.b4, 'udp_sport', '1701', 'udp_dport', '1701']);
  sites.ok(a, ['add', 'session', 'name', 'pw1', 'tunnel_id', '1', 'session_id', '10', 'peer_session_id', '20']);
  const before = readFileSync(a.config, 'utf8');
  const withoutStats = (json: string) => JSON.stringify(JSON.parse(json).map(({ stats, ...rest }: { stats?: unknown }) => rest));
  const tunnelsBefore = withoutStats(sites.ok(a, ['-j', 'show', 'tunnel']));

  const refused: Array<[string, string[], RegExp]> = [
    ['local address not on this host', ['add', 'tunnel', 'tunnel_id', '2', 'peer_tunnel_id', '2', 'encap', 'udp',
      'local', '192.0.2.77', 'remote', UNDERLAY.b4, 'udp_sport', '1800', 'udp_dport', '1800'], /local.*192\.0\.2\.77.*this host/],
    ['UDP port already in use', ['add', 'tunnel', 'tunnel_id', '3', 'peer_tunnel_id', '3', 'encap', 'udp',
      'local', UNDERLAY.a4, 'remote', '192.0.2.9', 'udp_sport', '1701', 'udp_dport', '1701'], /1701/],
    ['duplicate tunnel id', ['add', 'tunnel', 'tunnel_id', '1', 'peer_tunnel_id', '9', 'encap', 'ip',
      'local', UNDERLAY.a4, 'remote', UNDERLAY.b4], /tunnel.*1.*exists/i],
    ['session for a missing tunnel', ['add', 'session', 'tunnel_id', '42', 'session_id', '1', 'peer_session_id', '1'], /tunnel.*42/],
    ['duplicate session id', ['add', 'session', 'tunnel_id', '1', 'session_id', '10', 'peer_session_id', '30'], /session.*10.*exists/i],
    ['deleting a tunnel that has sessions', ['del', 'tunnel', 'tunnel_id', '1'], /session/],
    ['deleting a missing session', ['del', 'session', 'tunnel_id', '1', 'session_id', '99'], /99/],
    // Only the host's routes tell a subnet broadcast: the kernel would bind to it, and not send to it.
    ['local is the underlay\'s broadcast address', ['add', 'tunnel', 'tunnel_id', '4', 'peer_tunnel_id', '4', 'encap', 'udp',
      'local', '192.0.2.255', 'remote', UNDERLAY.b4, 'udp_sport', '1801', 'udp_dport', '1801'], /^l2tpctl: refused by l2tpd: local 192\.0\.2\.255: a broadcast address of this host's networks; expected a unicast address$/m],
    ['remote is the underlay\'s broadcast address', ['add', 'tunnel', 'tunnel_id', '4', 'peer_tunnel_id', '4', 'encap', 'ip',
      'local', UNDERLAY.a4, 'remote', '192.0.2.255'], /^l2tpctl: refused by l2tpd: remote 192\.0\.2\.255: a broadcast address of this host's networks/m],
  ];
  for (const [label, words, message] of refused) {
    const r = sites.cli(a, words);
    t.equal(r.status, 1, `${label}: exit 1`);
    t.match(r.stderr, message, `${label}: message "${r.stderr.trim()}"`);
  }

  const usage: Array<[string, string[], RegExp]> = [
    ['bad encap', ['add', 'tunnel', 'tunnel_id', '7', 'peer_tunnel_id', '7', 'encap', 'gre', 'local', UNDERLAY.a4, 'remote', UNDERLAY.b4], /gre/],
    ['id out of range', ['add', 'session', 'tunnel_id', '1', 'session_id', '0', 'peer_session_id', '1'], /session_id.*0/],
    ['bad cookie', ['add', 'session', 'tunnel_id', '1', 'session_id', '11', 'peer_session_id', '1', 'cookie', 'abc'], /cookie/],
    ['unknown word', ['add', 'tunnel', 'tunnl_id', '7'], /tunnl_id/],
    ['address family mismatch', ['add', 'tunnel', 'tunnel_id', '5', 'peer_tunnel_id', '5', 'encap', 'udp',
      'local', UNDERLAY.a4, 'remote', UNDERLAY.b6, 'udp_sport', '1900', 'udp_dport', '1900'], /remote|family/i],
    ['local equal to remote', ['add', 'tunnel', 'tunnel_id', '5', 'peer_tunnel_id', '5', 'encap', 'ip',
      'local', UNDERLAY.a4, 'remote', UNDERLAY.a4], /remote 192\.0\.2\.1: same as local/],
    ['multicast remote', ['add', 'tunnel', 'tunnel_id', '5', 'peer_tunnel_id', '5', 'encap', 'ip',
      'local', UNDERLAY.a4, 'remote', '224.0.0.1'], /remote 224\.0\.0\.1: a multicast address/],
    ['IPv4-mapped local', ['add', 'tunnel', 'tunnel_id', '5', 'peer_tunnel_id', '5', 'encap', 'udp',
      'local', `::ffff:${UNDERLAY.a4}`, 'remote', UNDERLAY.b6, 'udp_sport', '1900', 'udp_dport', '1900'], /local ::ffff:192\.0\.2\.1: an IPv4-mapped IPv6 address; write the IPv4 address 192\.0\.2\.1/],
    ['control character in a bridge name', ['add', 'session', 'tunnel_id', '1', 'session_id', '12', 'peer_session_id', '12',
      'bridge', 'br\u001b[0m'], /bridge "br\\u001b\[0m": contains a control character/],
  ];
  for (const [label, words, message] of usage) {
    const r = sites.cli(a, words);
    t.equal(r.status, 2, `${label}: exit 2`);
    t.match(r.stderr, message, `${label}: message "${r.stderr.trim()}"`);
  }
  // The same refusals straight through the API, where no CLI checks first.
  for (const [label, body, field, message] of [
    ['IPv4-mapped local', { tunnel_id: 5, peer_tunnel_id: 5, local: `::ffff:${UNDERLAY.a4}`, remote: UNDERLAY.b6, udp_sport: 1900, udp_dport: 1900 }, 'local', /IPv4-mapped/],
    ['local equal to remote', { tunnel_id: 5, peer_tunnel_id: 5, encap: 'ip', local: UNDERLAY.a4, remote: UNDERLAY.a4 }, 'remote', /same as local/],
    ['NUL in a bridge name', { tunnel_id: 1, session_id: 12, peer_session_id: 12, bridge: 'b\u0000r' }, 'bridge', /control character/],
  ] as const) {
    const r = curl(a.socket, label === 'NUL in a bridge name' ? '/v1/sessions' : '/v1/tunnels', JSON.stringify(body));
    t.equal(r.status, 400, `API, ${label}: 400`);
    t.match(r.body, { field, error: message }, `API, ${label}: names ${field}`);
  }
  const deep = curl(a.socket, '/v1/tunnels', `{"tunnel_id": ${'['.repeat(100000)}${']'.repeat(100000)}}`);
  t.same([deep.status, deep.body.field], [400, 'body'], 'API, deeply nested JSON: 400 naming the body, not 500');
  t.equal(readFileSync(a.config, 'utf8'), before, 'config file unchanged by refused requests');
  t.equal(withoutStats(sites.ok(a, ['-j', 'show', 'tunnel'])), tunnelsBefore, 'running tunnels unchanged');

  // Restart: the config file restores tunnels and sessions.
  t.equal(await sites.stop(a), 0, 'SIGTERM: clean exit 0');
  const down = sites.cli(a, ['show', 'tunnel']);
  t.equal(down.status, 1, 'daemon unreachable: exit 1');
  t.match(down.stderr, /reach|running/i, `unreachable message "${down.stderr.trim()}"`);
  await sites.start(a);
  const sessions = sites.json<Array<{ session_id: number; interface: string; state: string }>>(a, ['show', 'session']);
  t.same(sessions.map((s) => [s.session_id, s.interface, s.state]), [[10, 'pw1', 'up']], 'session restored after restart');
  t.equal(readFileSync(a.config, 'utf8'), before, 'config file as it was');

  // A config entry that cannot start (its local address is not on the host) is kept, shown down
  // with the reason, and does not stop the rest from running.
  await sites.stop(a);
  const cfg = JSON.parse(before) as { tunnels: object[] };
  cfg.tunnels.push({ tunnel_id: 7, peer_tunnel_id: 7, encap: 'ip', local: '192.0.2.77', remote: UNDERLAY.b4 });
  writeFileSync(a.config, `${JSON.stringify(cfg, null, 2)}\n`);
  await sites.start(a);
  const tunnels = sites.json<Array<{ tunnel_id: number; state: string; error?: string }>>(a, ['show', 'tunnel']);
  const bad = tunnels.find((x) => x.tunnel_id === 7);
  t.equal(bad?.state, 'down', 'unstartable tunnel shown down');
  t.match(bad?.error ?? '', /192\.0\.2\.77.*this host/, `with its reason: "${bad?.error}"`);
  t.equal(tunnels.find((x) => x.tunnel_id === 1)?.state, 'up', 'the other tunnel runs');
  t.match(readFileSync(a.config, 'utf8'), /192\.0\.2\.77/, 'the entry stays in the config file');
});

t.test('without CAP_NET_BIND_SERVICE, udp_sport 500 says which capability it needs', {
  skip: skip || (!hasCommand('setpriv') && 'setpriv (util-linux) is not installed'),
}, async (t) => {
  const ns = createNetns('np');
  t.teardown(() => deleteNetns(ns));
  execFileSync('ip', ['-n', ns, 'addr', 'add', `${UNDERLAY.a4}/32`, 'dev', 'lo']);
  // A directory the unprivileged daemon can write its config and socket in.
  const top = mkdtempSync(path.join(os.tmpdir(), 'l2tpd-np-'));
  t.teardown(() => rmSync(top, { recursive: true, force: true }));
  chmodSync(top, 0o755);
  const dir = path.join(top, 'd');
  mkdirSync(dir);
  chownSync(dir, 65534, 65534);
  const socket = path.join(dir, 'l2tpd.sock');
  const log: string[] = [];
  const proc = spawn('ip', ['netns', 'exec', ns, 'setpriv', '--reuid=65534', '--regid=65534', '--clear-groups',
    '--inh-caps=-all', '--bounding-set=-all', process.execPath, DAEMON, '--config', path.join(dir, 'l2tpd.json'),
    '--socket', socket, '--metrics-listen', 'off'], { stdio: ['ignore', 'pipe', 'pipe'] });
  proc.stdout.on('data', (b: Buffer) => log.push(b.toString()));
  proc.stderr.on('data', (b: Buffer) => log.push(b.toString()));
  t.teardown(() => stopProcess(proc));
  const cli = (words: string[]) => spawnSync(process.execPath, [CLI, '--socket', socket, ...words], { encoding: 'utf8', timeout: 20000 });
  t.ok(await waitUntil(() => proc.exitCode === null && existsSync(socket) && cli(['status']).status === 0, 15000),
    `the daemon runs without any capability ${log.join('')}`);
  const low = cli(['add', 'tunnel', 'tunnel_id', '1', 'peer_tunnel_id', '1', 'local', UNDERLAY.a4, 'remote', UNDERLAY.b4,
    'udp_sport', '500', 'udp_dport', '1701']);
  t.equal(low.status, 1, 'udp_sport 500: refused, exit 1');
  t.equal(low.stderr.trim(), 'l2tpctl: refused by l2tpd: udp_sport 500: binding a port below 1024 needs CAP_NET_BIND_SERVICE, which l2tpd does not have; use a port of 1024 or above, or grant it the capability');
  const high = cli(['add', 'tunnel', 'tunnel_id', '1', 'peer_tunnel_id', '1', 'local', UNDERLAY.a4, 'remote', UNDERLAY.b4,
    'udp_sport', '1701', 'udp_dport', '1701']);
  t.equal(high.status, 0, `udp_sport 1701 needs no capability ${high.stderr}`);
});
