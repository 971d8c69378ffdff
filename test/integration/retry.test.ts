/**
 * Entries of the config file that cannot start are retried by themselves: a tunnel whose local
 * address is not on the host yet starts when the address appears (address events), one whose UDP
 * port is taken starts once the port is free (retries with backoff), and their sessions follow.
 * Meanwhile `show` says why each is down and since when. No reload is involved.
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { writeFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { netnsUnavailable, nsExec, stopProcess, waitUntil, ipLink } from '../helpers/netns.js';
import { Sites, UNDERLAY } from '../helpers/sites.js';

const skip = netnsUnavailable();

interface Shown { tunnel_id: number; session_id?: number; state: string; error?: string; since?: string }

t.test('entries that could not start come up on address events and retries, and show says why they were down', { skip, timeout: 120000 }, async (t) => {
  const sites = new Sites();
  t.teardown(() => sites.close());
  const a = sites.a;
  const late = '192.0.2.77';
  mkdirSync(path.dirname(a.config), { recursive: true });
  writeFileSync(a.config, `${JSON.stringify({
    tunnels: [
      { tunnel_id: 1, peer_tunnel_id: 1, local: late, remote: UNDERLAY.b4, udp_sport: 1701, udp_dport: 1701 },
      { tunnel_id: 2, peer_tunnel_id: 2, local: UNDERLAY.a4, remote: UNDERLAY.b4, udp_sport: 1702, udp_dport: 1702 },
    ],
    sessions: [
      { tunnel_id: 1, session_id: 1, peer_session_id: 1, name: 'pwlate' },
      { tunnel_id: 2, session_id: 2, peer_session_id: 2, name: 'pwbusy' },
    ],
  })}\n`);
  // Another program holds tunnel 2's port when l2tpd starts.
  const holder = spawn('ip', ['netns', 'exec', a.ns, process.execPath, '-e',
    `const s = require('node:dgram').createSocket('udp4'); s.bind(1702, '${UNDERLAY.a4}', () => console.log('bound')); setTimeout(() => s.close(), 110000);`],
  { stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => stopProcess(holder));
  await new Promise<void>((r) => holder.stdout.once('data', () => r()));
  const started = Date.now();
  await sites.start(a);

  const tunnels = () => sites.json<Shown[]>(a, ['show', 'tunnel']);
  const sessions = () => sites.json<Shown[]>(a, ['show', 'session']);
  const [t1, t2] = tunnels();
  t.match(t1, { tunnel_id: 1, state: 'down', error: /^local 192\.0\.2\.77: expected an address configured on this host$/ }, 'tunnel 1: down, and why');
  t.match(t2, { tunnel_id: 2, state: 'down', error: /^udp_sport 1702: expected a UDP port not already in use on 192\.0\.2\.1$/ }, 'tunnel 2: down, and why');
  for (const x of [t1, t2]) {
    const since = Date.parse(x.since ?? '');
    t.ok(since >= started - 1000 && since <= Date.now(), `tunnel ${x.tunnel_id}: down since ${x.since}`);
  }
  t.match(sessions(), [{ session_id: 1, state: 'down', error: /tunnel not running/ }, { session_id: 2, state: 'down', error: /tunnel not running/ }],
    'their sessions: down, and why');
  t.match(sites.ok(a, ['show', 'tunnel', 'tunnel_id', '1']), /\n {2}state: down since \d{4}-\d\d-\d\dT[\d:.]+Z\n {2}error: local 192\.0\.2\.77: expected an address configured on this host\n/,
    'show tunnel prints why and since when');

  // The address appears: tunnel 1 and its session start without a reload.
  const addressAdded = Date.now();
  nsExec(a.ns, 'ip', ['addr', 'add', `${late}/32`, 'dev', 'ul0']);
  t.ok(await waitUntil(() => tunnels()[0].state === 'up' && sessions()[0].state === 'up', 10000), 'tunnel 1 and session 1 up once the address is there');
  t.ok(ipLink(a.ns, 'pwlate'), 'session 1 has its interface');
  const up = tunnels()[0];
  t.notOk('error' in up, 'no error shown once it is up');
  // `since` now says since when it is up (the liveness state), not since when it failed.
  t.ok(Date.parse(up.since ?? '') >= addressAdded - 1000, `up since ${up.since}, after the address appeared`);
  t.equal(tunnels()[1].state, 'down', 'tunnel 2 still down while its port is taken');

  // The port is freed: the retries with backoff bring tunnel 2 up.
  await stopProcess(holder);
  t.ok(await waitUntil(() => tunnels()[1].state === 'up' && sessions()[1].state === 'up', 40000), 'tunnel 2 and session 2 up once the port is free');
  t.ok(ipLink(a.ns, 'pwbusy'), 'session 2 has its interface');
  t.ok(a.log.some((l) => l.includes('entries that could not start are up now')), 'logged');
  t.notOk(a.log.some((l) => l.includes('configuration reloaded')), 'no reload was involved');
});
