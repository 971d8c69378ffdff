/**
 * The config file and mistakes around it. On reload (SIGHUP or `l2tpctl reload`), an empty or
 * vanished file is refused and the running state kept; removing everything takes an explicit
 * empty config. At start-up, a missing file still means "start empty", and temp files a killed
 * writer left next to the config are removed.
 */
import t, { type Test } from 'tap';
import { existsSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ipLink, netnsUnavailable, waitUntil } from '../helpers/netns.js';
import { Sites, UNDERLAY, type Daemon } from '../helpers/sites.js';

const skip = netnsUnavailable();

/** Site A's daemon running with tunnel 1. */
async function siteWithTunnel(t: Test): Promise<{ sites: Sites; a: Daemon }> {
  const sites = new Sites();
  t.teardown(() => sites.close());
  await sites.start(sites.a);
  sites.ok(sites.a, ['add', 'tunnel', 'tunnel_id', '1', 'peer_tunnel_id', '1', 'local', UNDERLAY.a4, 'remote', UNDERLAY.b4,
    'udp_sport', '1701', 'udp_dport', '1701']);
  return { sites, a: sites.a };
}

t.test('an empty or vanished file on reload is refused; an explicit empty config removes everything', { skip }, async (t) => {
  const { sites, a } = await siteWithTunnel(t);
  sites.ok(a, ['add', 'session', 'name', 'pwkeep', 'tunnel_id', '1', 'session_id', '1', 'peer_session_id', '1', 'bridge', 'brkeep']);
  const running = () => sites.json<Array<{ interface: string; state: string }>>(a, ['show', 'session']);

  // `: > l2tpd.json; kill -HUP`
  writeFileSync(a.config, '');
  a.proc!.kill('SIGHUP');
  t.ok(await waitUntil(() => a.log.some((l) => l.includes('reload refused')), 10000), 'SIGHUP with an empty file: refused');
  t.ok(a.log.some((l) => l.includes('reload refused') && l.includes(`${a.config}: empty; reload refused, running state kept`)), 'the log says why');
  t.match(running(), [{ interface: 'pwkeep', state: 'up' }], 'the session still runs');
  t.ok(ipLink(a.ns, 'pwkeep') && ipLink(a.ns, 'brkeep'), 'its tap and bridge are still there');

  const emptied = sites.cli(a, ['reload']);
  t.equal(emptied.status, 1, 'l2tpctl reload of an empty file: exit 1');
  t.equal(emptied.stderr.trim(), `l2tpctl: refused by l2tpd: ${a.config}: empty; reload refused, running state kept (to remove everything, write {"tunnels": [], "sessions": []})`);

  rmSync(a.config);
  const vanished = sites.cli(a, ['reload']);
  t.equal(vanished.status, 1, 'l2tpctl reload of a vanished file: exit 1');
  t.match(vanished.stderr, `${a.config}: missing; reload refused, running state kept`);
  t.match(running(), [{ interface: 'pwkeep', state: 'up' }], 'the session still runs');

  // The next change through the API writes the whole running state back.
  sites.ok(a, ['add', 'session', 'name', 'pwmore', 'tunnel_id', '1', 'session_id', '2', 'peer_session_id', '2']);
  t.match(sites.configFile(a), { sessions: [{ name: 'pwkeep' }, { name: 'pwmore' }] }, 'the file holds what runs again');

  writeFileSync(a.config, '{"tunnels": [], "sessions": []}\n');
  const all = sites.cli(a, ['-j', 'reload']);
  t.equal(all.status, 0, 'an explicit empty config is applied');
  t.same(JSON.parse(all.stdout), { added: 0, removed: 3, changed: 0 }, 'removing the tunnel and both sessions');
  t.same(running(), [], 'nothing runs');
  t.notOk(ipLink(a.ns, 'pwkeep') || ipLink(a.ns, 'brkeep'), 'the tap and bridge l2tpd made are gone');
});

t.test('start-up removes the temp files a killed writer left', { skip }, async (t) => {
  const { sites, a } = await siteWithTunnel(t);
  await sites.stop(a);
  const dir = path.dirname(a.config);
  // What kill -9 between open and rename leaves: a partial temp file named after the writer's pid.
  const leftovers = ['l2tpd.json.tmp-4194304', 'l2tpd.json.tmp-4194305'];
  for (const name of leftovers) writeFileSync(path.join(dir, name), '{"tunnels": [{"tunnel_id": 1, "peer_tu');
  await sites.start(a);
  t.same(readdirSync(dir).filter((n) => n.includes('.tmp-')), [], 'no temp file left');
  t.ok(existsSync(a.config), 'the config file stays');
  t.equal(sites.json<unknown[]>(a, ['show', 'tunnel']).length, 1, 'and was loaded');
  t.ok(await waitUntil(() => a.log.some((l) => l.includes('removed a config temp file')), 5000), 'logged');
});
