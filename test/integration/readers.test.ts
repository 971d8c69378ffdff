/**
 * Readers of a daemon with many sessions: a `show session` of all of them is built in steps, so a
 * `status` asked for while it is being built is answered before it, not after.
 */
import t from 'tap';
import http from 'node:http';
import { mkdirSync, writeFileSync } from 'node:fs';
import { netnsUnavailable } from '../helpers/netns.js';
import { Sites, UNDERLAY } from '../helpers/sites.js';

const skip = netnsUnavailable();
// Enough that building their views takes several turns of the daemon's event loop (about 60 ms).
const SESSIONS = 3000;

/** GET `path` on the API socket; resolves with when its answer began (the response's headers). */
function get(socket: string, path: string, sent?: () => void): Promise<{ status: number; headersAt: number }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ socketPath: socket, path, agent: false }, (res) => {
      const headersAt = performance.now();
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headersAt }));
    });
    req.on('error', reject);
    req.on('finish', () => sent?.());
  });
}

t.test('show session of every session lets a status through while it is built', { skip }, async (t) => {
  const sites = new Sites();
  t.teardown(() => sites.close());
  const d = sites.a;
  mkdirSync(d.dir, { recursive: true });
  writeFileSync(d.config, `${JSON.stringify({
    tunnels: [{ tunnel_id: 1, peer_tunnel_id: 1, encap: 'udp', local: UNDERLAY.a4, remote: UNDERLAY.b4, udp_sport: 1701, udp_dport: 1701 }],
    sessions: Array.from({ length: SESSIONS }, (_, i) => ({ tunnel_id: 1, session_id: i + 1, peer_session_id: i + 1, name: `rd${i}` })),
  })}\n`);
  await sites.start(d);
  t.equal(sites.api(d, 'sessions').length, SESSIONS, `${SESSIONS} sessions running`);
  for (let round = 0; round < 3; round++) {
    let status: Promise<{ status: number; headersAt: number }> | undefined;
    const all = get(d.socket, '/v1/sessions?stats=1', () => { status = get(d.socket, '/v1/status'); });
    const listed = await all;
    const st = await status!;
    t.same([listed.status, st.status], [200, 200], `round ${round}: both answered`);
    t.ok(st.headersAt < listed.headersAt, `round ${round}: status asked for after the list was, and answered before it`,
      { statusAt: st.headersAt, listAt: listed.headersAt });
  }
});
