/** Default session MTU overhead against the kernel's table (docs/protocol.md "MTU"). */
import t from 'tap';
import { sessionOverhead } from '../../src/daemon/mtu.js';
import { ENCAPSULATIONS } from '../../src/dataplane/encap.js';
import { compileSession } from '../../src/control/session-words.js';
import { normalizeSession } from '../../src/control/validate.js';

const base = { tunnel_id: 1, session_id: 1, peer_session_id: 1 };
t.test('1500-byte underlay gives the kernel l2tp_eth defaults', async (t) => {
  // The header length is that of the template the session compiles to: what the data plane writes.
  const mtu = (name: 'udp' | 'ip', family: 4 | 6, s: object) => {
    const encap = ENCAPSULATIONS[name];
    return 1500 - sessionOverhead(encap, family, compileSession(normalizeSession({ ...base, ...s }), encap.wire).tx.length);
  };
  t.equal(mtu('udp', 4, {}), 1446, 'UDP/IPv4, default sublayer, no cookie');
  t.equal(mtu('udp', 4, { l2spec_type: 'none' }), 1450, 'UDP/IPv4, no sublayer');
  t.equal(mtu('udp', 4, { cookie: '0102030405060708' }), 1438, 'UDP/IPv4, 8-byte cookie');
  t.equal(mtu('ip', 4, {}), 1458, 'IP/IPv4, default sublayer');
  t.equal(mtu('ip', 4, { l2spec_type: 'none' }), 1462, 'IP/IPv4, no sublayer');
  t.equal(mtu('ip', 4, { cookie: '0102030405060708' }), 1450, 'IP/IPv4, 8-byte cookie');
  t.equal(mtu('udp', 6, {}), 1426, 'UDP/IPv6');
  t.equal(mtu('ip', 6, {}), 1438, 'IP/IPv6');
  t.equal(mtu('udp', 4, { offset: 16 }), 1430, 'offset padding counts: it is on the wire');
});
