/**
 * Through a real daemon: every refused request exits 1 with a message naming the word, the
 * value and what is allowed, and leaves both the running state and the config file unchanged;
 * usage errors exit 2 before reaching the daemon; an unreachable daemon exits 1 and says so.
 * Also: a restarted daemon restores its tunnels and sessions from the config file.
 */
import t from 'tap';
import { readFileSync, writeFileSync } from 'node:fs';
import { netnsUnavailable } from '../helpers/netns.js';
import { Sites, UNDERLAY } from '../helpers/sites.js';

const skip = netnsUnavailable();

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
  ];
  for (const [label, words, message] of usage) {
    const r = sites.cli(a, words);
    t.equal(r.status, 2, `${label}: exit 2`);
    t.match(r.stderr, message, `${label}: message "${r.stderr.trim()}"`);
  }
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
