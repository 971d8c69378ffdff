/**
 * Mismatch diagnostics (src/daemon/diagnose.ts) from hand-filled data-plane rows: each finding
 * names the value the peer sent and the word to change; old entries age out; sublayer and
 * sequencing findings need three agreeing samples. The rows are filled the way
 * dataplane/diagnostics.ts fills them (that side is exercised in control-channel.test.ts and the
 * integration tests).
 */
import t from 'tap';
import {
  DIAG_MAX_AGE_MS, SampleHistory, classifySample, ethernetScore, formatSource, sessionDiagnostics, tunnelDiagnostics,
  type SessionFacts, type TunnelFacts,
} from '../../src/daemon/diagnose.js';
import {
  COOKIE_WORDS, FOREIGN_WIDTH, ForeignField as F, HELLO_ROW_WIDTH, HelloField as H, SAMPLE_WORDS, SESSION_DIAG_WIDTH, SessionDiag as SD,
  TUNNEL_DIAG_WIDTH, TunnelDiag as TD, UNKNOWN_WIDTH, UnknownField as U,
} from '../../src/dataplane/status.js';
import { ControlReason, HelloReason, MessageType } from '../../src/protocol/index.js';

const NOW = 1_700_000_000_000;
const hex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s.replace(/\s+/g, ''), 'hex'));
const ARP = hex('ffffffffffff 020000000001 0806 0001 0800 06 04 0001 020000000001 0a000001 000000000000 0a000002');
const IPV4 = hex('020000000002 020000000001 0800 45000054 00004000 4001 0000 c6336401 c6336402');
const v4 = (a: string, port: number): number[] => {
  const p = a.split('.').map(Number);
  return [(4 << 16) | port, ((p[0] << 24) | (p[1] << 16) | (p[2] << 8) | p[3]) >>> 0, 0, 0, 0];
};

const T: TunnelFacts = { tunnel_id: 3000, peer_tunnel_id: 4000, encap: 'udp', remote: '192.0.2.2', udp_dport: 6000 };
const S1: SessionFacts = { tunnel_id: 3000, session_id: 1000, peer_session_id: 2000 };

t.test('sources and Ethernet frames', async (t) => {
  t.equal(formatSource(v4('192.0.2.9', 6001)), '192.0.2.9:6001');
  t.equal(formatSource(v4('192.0.2.9', 0)), '192.0.2.9', 'raw IP: no port');
  t.equal(formatSource([(6 << 16) | 1701, 0x20010db8, 0, 0, 2]), '[2001:db8::2]:1701');
  t.equal(formatSource([(6 << 16), 0x20010db8, 0x10000, 0, 0x10002]), '2001:db8:1::1:2');
  t.equal(ethernetScore(ARP, 0, ARP.length), 2, 'ARP');
  t.equal(ethernetScore(IPV4, 0, IPV4.length), 2, 'IPv4');
  const vlan = hex('020000000002 020000000001 8100 0064 86dd 60000000 00000000');
  t.equal(ethernetScore(vlan, 0, vlan.length), 2, '802.1Q-tagged IPv6');
  const stp = hex('0180c2000000 020000000001 0026 4242 03 0000000000000000');
  t.equal(ethernetScore(stp, 0, stp.length), 1, 'an 802.3 frame with LLC (STP)');
  t.equal(ethernetScore(ARP, 4, ARP.length), 0, 'ARP read 4 bytes late is not Ethernet');
  t.equal(ethernetScore(Uint8Array.of(0, 0, 0, 0, ...ARP), 0, ARP.length + 4), 0, 'nor 4 bytes early');
  t.equal(ethernetScore(hex('ffffffffffff 030000000001 0806 0001 0800 0604'), 0, 18), 0, 'a multicast source MAC is not');
  t.equal(ethernetScore(ARP, 0, 10), 0, 'too short');
});

t.test('samples: where the frame is', async (t) => {
  const dflt: SessionFacts = { ...S1, l2spec_type: 'default' };
  const none: SessionFacts = { ...S1, l2spec_type: 'none' };
  const withL2ss = Uint8Array.of(0, 0, 0, 0, ...ARP);
  t.equal(classifySample(dflt, withL2ss, withL2ss.length), 'ok', 'default sublayer, peer sends one');
  t.equal(classifySample(none, ARP, ARP.length), 'ok', 'none, peer sends none');
  t.equal(classifySample(dflt, ARP, ARP.length), 'earlier4', 'default expected, the peer sends no sublayer');
  t.equal(classifySample(none, withL2ss, withL2ss.length), 'later4', 'none expected, the peer sends one');
  const cookie = { ...dflt, peer_cookie: 'deadbeef' };
  t.equal(classifySample(cookie, Uint8Array.of(0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 0, ...IPV4), 8 + IPV4.length), 'ok', 'after a cookie');
  t.equal(classifySample(dflt, new Uint8Array(40).fill(0x5a), 40), 'unclear', 'garbage');
});

/** A session diagnostics row with `sample` (bytes after the session ID) as its current sample at `ms`. */
function withSample(row: Float64Array, sample: Uint8Array, ms: number): void {
  row[SD.SampleMs] = ms;
  row[SD.SampleLength] = sample.length;
  for (let w = 0; w < SAMPLE_WORDS; w++) {
    const b = [0, 1, 2, 3].map((k) => sample[4 * w + k] ?? 0);
    row[SD.SampleWords + w] = ((b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3]) >>> 0;
  }
}

t.test('sublayer and sequencing need three agreeing samples', async (t) => {
  const s: SessionFacts = { ...S1, l2spec_type: 'default', seq: 'none', seq_mirror: 'off' };
  const row = new Float64Array(SESSION_DIAG_WIDTH);
  const h = new SampleHistory();
  const report = (): string[] => sessionDiagnostics(s, row, 0, h, NOW + 10_000).map((d) => `${d.kind} ${d.word} ${d.seen}`);
  for (let k = 1; k <= 2; k++) { withSample(row, ARP, NOW + k * 1000); h.observe(s, row, 0); }
  t.same(report(), [], 'two samples: nothing yet');
  h.observe(s, row, 0);
  t.same(report(), [], 'the same sample again does not count');
  withSample(row, ARP, NOW + 3000);
  h.observe(s, row, 0);
  t.same(report(), ['sublayer l2spec_type frames 4 bytes earlier'], 'three: the peer sends no sublayer; change l2spec_type');
  t.match(sessionDiagnostics(s, row, 0, h, NOW + 10_000)[0].message, /set l2spec_type none here/);
  withSample(row, Uint8Array.of(0, 0, 0, 0, ...ARP), NOW + 4000);
  h.observe(s, row, 0);
  t.same(report(), [], 'one good sample clears it');
  for (let k = 5; k <= 7; k++) { withSample(row, Uint8Array.of(0x40, 0, 0, k, ...ARP), NOW + k * 1000); h.observe(s, row, 0); }
  t.same(report(), ['peer_numbers_frames seq sequence numbers (last 7)'], 'numbered frames while this session sends none (seq_mirror off)');
  t.match(sessionDiagnostics(s, row, 0, h, NOW + 10_000)[0].message, /\(seq none, seq_mirror off\).*set seq both \(or seq_mirror on\) here/);
  t.same(sessionDiagnostics({ ...s, seq: 'both' }, row, 0, h, NOW + 10_000), [], 'not with seq both');
  t.same(sessionDiagnostics(s, row, 0, h, NOW + 10_000, true), [], 'not while the data plane numbers its frames');
  t.same(sessionDiagnostics(s, row, 0, h, NOW + 7000 + DIAG_MAX_AGE_MS + 1), [], 'aged out');
  // seq_mirror on (the default): the peer's numbered frames turn numbering on here, as on Linux.
  const mirrored: SessionFacts = { ...s, seq_mirror: undefined };
  t.same(sessionDiagnostics(mirrored, row, 0, h, NOW + 10_000), [], 'seq_mirror on: it numbers its frames too');
  t.same(sessionDiagnostics(mirrored, row, 0, h, NOW + 10_000, true), [], 'seq_mirror on, tx_seq on: nothing to report');
  const off = sessionDiagnostics(mirrored, row, 0, h, NOW + 10_000, false);
  t.same(off.map((d) => d.kind), ['peer_numbers_frames'], 'seq_mirror on but tx_seq off: reported');
  t.match(off[0].message, /\(seq none\).*set seq both here/);
});

t.test('cookie and unsequenced drops', async (t) => {
  const row = new Float64Array(SESSION_DIAG_WIDTH);
  const s: SessionFacts = { ...S1, l2spec_type: 'default', peer_cookie: 'cafef00d', seq: 'recv' };
  const words = (b: Uint8Array): void => {
    for (let w = 0; w < COOKIE_WORDS; w++) {
      const x = [0, 1, 2, 3].map((k) => b[4 * w + k] ?? 0);
      row[SD.CookieWords + w] = ((x[0] << 24) | (x[1] << 16) | (x[2] << 8) | x[3]) >>> 0;
    }
  };
  words(Uint8Array.of(0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 0, ...ARP));
  row[SD.CookieCount] = 12;
  row[SD.CookieLastMs] = NOW;
  let d = sessionDiagnostics(s, row, 0, undefined, NOW + 1000);
  t.same([d[0].kind, d[0].word, d[0].seen, d[0].count], ['cookie', 'peer_cookie', 'deadbeef', 12], 'the cookie seen');
  t.match(d[0].message, /set peer_cookie deadbeef here, or cookie cafef00d on the peer/);
  words(Uint8Array.of(0, 0, 0, 0, ...ARP));
  d = sessionDiagnostics(s, row, 0, undefined, NOW + 1000);
  t.match(d[0].message, /without a cookie/, 'the sublayer and a frame where the cookie should be: no cookie');
  row[SD.UnsequencedCount] = 40;
  row[SD.UnsequencedLastMs] = NOW;
  d = sessionDiagnostics(s, row, 0, undefined, NOW + 1000);
  t.same([d[1].kind, d[1].word], ['peer_does_not_number_frames', 'seq']);
  t.match(d[1].message, /40 frames without a sequence number dropped.*set seq none here/);
});

t.test('tunnel rows: unknown sessions, foreign sources, control messages', async (t) => {
  const row = new Float64Array(TUNNEL_DIAG_WIDTH);
  const unknown = (k: number, sid: number, src: number[], count: number, ms: number): void => {
    const e = TD.Unknown + k * UNKNOWN_WIDTH;
    row[e + U.SessionId] = sid | 0;
    row[e + U.Count] = count;
    row[e + U.LastMs] = ms;
    src.forEach((w, i) => { row[e + U.Source + i] = w; });
  };
  unknown(0, 2000, v4('192.0.2.2', 6000), 5, NOW);
  unknown(1, 0x90000001, v4('192.0.2.2', 6000), 7, NOW);
  unknown(2, 77, v4('192.0.2.2', 6000), 1, NOW - DIAG_MAX_AGE_MS - 1);
  const f = TD.Foreign;
  v4('192.0.2.2', 6001).forEach((w, i) => { row[f + F.Source + i] = w; });
  row[f + F.Count] = 3; row[f + F.LastMs] = NOW; row[f + F.Id] = 2000; row[f + F.Control] = 0;
  const f2 = TD.Foreign + FOREIGN_WIDTH;
  v4('192.0.2.99', 6000).forEach((w, i) => { row[f2 + F.Source + i] = w; });
  row[f2 + F.Count] = 1; row[f2 + F.LastMs] = NOW; row[f2 + F.Id] = 3000; row[f2 + F.Control] = 1;
  row[TD.WrongIdCcid] = 3001; row[TD.WrongIdCount] = 2; row[TD.WrongIdLastMs] = NOW;
  row[TD.HelloIgnoredCount] = 4; row[TD.HelloIgnoredLastMs] = NOW;
  row[TD.OtherType] = MessageType.Sccrq; row[TD.OtherCount] = 1; row[TD.OtherLastMs] = NOW;
  row[TD.MalformedReason] = ControlReason.BadAvp; row[TD.MalformedCount] = 9; row[TD.MalformedLastMs] = NOW;
  row[TD.DigestLastMs] = NOW;
  const d = tunnelDiagnostics(T, [S1, { ...S1, session_id: 1001, peer_session_id: 2001 }], row, 0, NOW + 1000);
  t.same(d.map((x) => [x.kind, x.word, x.seen]), [
    ['unknown_session', 'peer_session_id', '2000'],
    ['unknown_session', 'peer_session_id', String(0x90000001)],
    ['foreign_source', 'udp_dport', '192.0.2.2:6001'],
    ['foreign_source', 'remote', '192.0.2.99:6000'],
    ['connection_id', 'peer_tunnel_id', '3001'],
    ['hello_not_enabled', 'hello_interval', 'HELLO'],
    ['control_message', 'peer configuration', 'SCCRQ'],
    ['malformed_control', 'remote', 'bad_avp'],
    ['control_authentication', 'peer configuration', 'Message Digest AVP'],
  ], 'every recent finding, IDs ≥ 2^31 read back unsigned, the aged entry left out');
  t.match(d[0].message, /peer_session_id of session 1000 here: session_id and peer_session_id look swapped/, 'swapped IDs');
  t.match(d[1].message, /no session of tunnel 3000 has \(they receive on 1000, 1001\)/);
  t.match(d[2].message, /sends from port 6001 \(NAT\?\); set udp_dport 6001/);
  t.match(d[3].message, /control messages for connection ID 3000/);
  t.match(d[4].message, /set peer_tunnel_id 3000 on the peer \(or tunnel_id 3001 here\)/);
  t.match(d[6].message, /dynamic \(managed\)/);
  t.same(tunnelDiagnostics({ ...T, hello_interval: 1 }, [S1], row, 0, NOW).map((x) => x.kind).includes('hello_not_enabled'), false,
    'no hello_not_enabled once hello_interval is set');
  const one = tunnelDiagnostics(T, [{ ...S1, peer_session_id: 5 }], row, 0, NOW)[0];
  t.match(one.message, /did you mean peer_session_id 1000 on the peer \(or session_id 2000 here\)\?/, 'one session: the likely fix');
  t.same(tunnelDiagnostics(T, [S1], new Float64Array(TUNNEL_DIAG_WIDTH), 0, NOW), [], 'an empty row says nothing');
});

t.test('no answer to Hello, ever', async (t) => {
  const hello = new Float64Array(HELLO_ROW_WIDTH);
  hello[H.State] = 0; hello[H.Reason] = HelloReason.NoAnswer; hello[H.HellosSent] = 1; hello[H.SinceMs] = NOW;
  const d = tunnelDiagnostics({ ...T, hello_interval: 1 }, [S1], new Float64Array(TUNNEL_DIAG_WIDTH), 0, NOW, { row: hello, base: 0 });
  t.same(d.map((x) => [x.kind, x.word]), [['no_hello_answer', 'hello_interval']]);
  t.match(d[0].message, /Linux never does/);
  hello[H.LastHeardMs] = NOW - 5000;
  t.same(tunnelDiagnostics({ ...T, hello_interval: 1 }, [S1], new Float64Array(TUNNEL_DIAG_WIDTH), 0, NOW, { row: hello, base: 0 }), [],
    'not once the peer has spoken: then it is an outage, not a mismatch');
});
