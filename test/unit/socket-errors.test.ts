/**
 * What a refused socket set-up tells the user: the word at fault and what would work, not the
 * errno of the syscall that failed.
 */
import t from 'tap';
import { ConfigError, ConflictError } from '../../src/control/errors.js';
import { explainSocketError } from '../../src/daemon/engine.js';
import { normalizeTunnel } from '../../src/control/validate.js';

const errno = (code: string) => Object.assign(new Error(`bind ${code}`), { code });
const udp = normalizeTunnel({ tunnel_id: 1, peer_tunnel_id: 1, local: '192.0.2.1', remote: '192.0.2.2', udp_sport: 500, udp_dport: 1701 });
const ip = normalizeTunnel({ tunnel_id: 2, peer_tunnel_id: 2, encap: 'ip', local: '192.0.2.1', remote: '192.0.2.2' });

t.test('a port below the unprivileged range names udp_sport and CAP_NET_BIND_SERVICE', async (t) => {
  for (const code of ['EACCES', 'EPERM']) {
    const e = explainSocketError(errno(code), udp, 1024);
    t.ok(e instanceof ConfigError, `${code}: a ConfigError (400)`);
    t.match(e, {
      field: 'udp_sport', value: 500,
      message: 'udp_sport 500: binding a port below 1024 needs CAP_NET_BIND_SERVICE, which l2tpd does not have; use a port of 1024 or above, or grant it the capability',
    });
    t.notMatch((e as Error).message, /CAP_NET_RAW|CAP_NET_ADMIN/, 'not the capabilities it does not need');
  }
  t.match(explainSocketError(errno('EACCES'), udp, 400), { message: /cannot open a udp socket on 192\.0\.2\.1: EACCES \(refused by the kernel or a security policy\)/ },
    'a port above the unprivileged start: not a capability matter');
});

t.test('other refusals keep their words', async (t) => {
  t.match(explainSocketError(errno('EPERM'), ip, 1024), new ConflictError('cannot open a ip socket on 192.0.2.1: EPERM (raw IP sockets need CAP_NET_RAW)', 500));
  t.match(explainSocketError(errno('EADDRNOTAVAIL'), udp), { field: 'local', value: '192.0.2.1' });
  t.match(explainSocketError(errno('EADDRINUSE'), udp), { field: 'udp_sport', value: 500, message: /not already in use on 192\.0\.2\.1/ });
  const other = errno('EMFILE');
  t.equal(explainSocketError(other, udp), other, 'anything else passes through');
});
