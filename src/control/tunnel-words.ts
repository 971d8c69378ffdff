/**
 * The tunnel's words, each defined once (vocabulary.ts says what a definition holds and what is
 * derived from it). Table order is the config file's field order and the order words are
 * validated in, so a word's checks may look at the words above it.
 *
 * To add a tunnel word: its entry below (type, default, help, and what it compiles into), a
 * `show` line if it has one, and its row in the README (a unit test compares them).
 */
import { ConfigError } from './errors.js';
import type { TunnelView } from './api.js';
import {
  ADDR, compileWords, familyOf, ID, integer, ON_OFF, oneOf, parseUint, PORT, wordsFor,
  type ConfigOf, type Draft, type ValueType, type WordTable,
} from './vocabulary.js';
import { ENCAPSULATIONS, UDP_ENCAP, type EncapName, type Encapsulation } from '../dataplane/encap.js';
import { socketOption } from '../native/sockopt.js';
import type { IntSocketOption } from '../native/types.js';
import { DEFAULT_HELLO_RETRIES } from '../protocol/index.js';

/** What a tunnel's words compile into: its socket and its peer. */
export interface TunnelPlan {
  encap: Encapsulation;
  family: 4 | 6;
  local: string;
  remote: string;
  /** udp_sport; 0 for a raw socket. */
  localPort: number;
  /** udp_dport; 0 for a raw socket (raw IPv6 refuses any other value in sin6_port). */
  remotePort: number;
  /** Set on the socket before it is bound. */
  options: IntSocketOption[];
  /** The Control Connection ID of the control messages sent to the peer (Hello). */
  peerTunnelId: number;
  /** hello_interval in ms; 0: no Hello keepalive. */
  helloIntervalMs: number;
  /** Retransmissions of an unanswered Hello before the peer is dead. */
  helloRetries: number;
}

export const HELLO_INTERVAL_MAX = 3600;
export const HELLO_RETRIES_MAX = 32;

const word = wordsFor<TunnelPlan>();

/**
 * A word that exists only with encap udp and, given `family`, only over that IP version; given
 * elsewhere it is refused, saying where it applies (and, for a family, what to use instead).
 */
function udpWord(name: string, family?: 4 | 6, instead?: { allowed: string; hint: string }) {
  return {
    test: (o: Draft): boolean => o.encap === 'udp' && (family === undefined || familyOf(o.local as string) === family),
    refuse: (o: Draft, value: unknown): ConfigError => {
      if (o.encap !== 'udp') {
        return new ConfigError(name, value, `nothing with encap ${String(o.encap)}`,
          `${name} ${String(value)}: only applies to encap udp (this tunnel is encap ${String(o.encap)})`);
      }
      return new ConfigError(name, value, instead!.allowed,
        `${name} ${String(value)}: only applies to UDP over IPv${family}; ${instead!.hint}`);
    },
  };
}
const OVER_IPV4 = { allowed: 'nothing over IPv6 (use udp6_csum_tx/udp6_csum_rx)', hint: 'use udp6_csum_tx and udp6_csum_rx for IPv6' };
const OVER_IPV6 = { allowed: 'nothing over IPv4 (use udp_csum)', hint: 'use udp_csum for IPv4' };

const TOS_ALLOWED = 'an integer 0..255, decimal or 0x hex, with the two ECN bits clear (a multiple of 4)';
/**
 * The outer TOS byte / IPv6 traffic class: decimal or 0x hex (TOS values are usually written in
 * hex: 0xb8 is DSCP EF). The low two bits are ECN, which belongs to congestion control: a fixed
 * ECT or CE mark on every datagram would tell routers to mark instead of drop for a flow that
 * never reacts, so they are refused.
 */
const TOS: ValueType<number> = {
  placeholder: 'TOS', means: '0..255, decimal or 0x hex (DSCP x 4: 0xb8 is EF)', allowed: TOS_ALLOWED,
  parse: (field, value) => {
    const hex = typeof value === 'string' ? /^0x([0-9a-f]{1,2})$/i.exec(value) : null;
    const n = hex ? parseInt(hex[1], 16) : parseUint(field, value, 0, 255, TOS_ALLOWED);
    if ((n & 3) !== 0) {
      throw new ConfigError(field, value, TOS_ALLOWED,
        `${field} ${String(value)}: sets the ECN bits (${n & 3}); expected ${TOS_ALLOWED}`);
    }
    return n;
  },
};

export const TUNNEL_WORDS = [
  word({
    word: 'tunnel_id', aliases: ['tid'], type: ID, always: true, required: true, defaultText: 'required',
    help: 'A local handle for the tunnel. Static L2TPv3 data packets carry no tunnel ID, so it never reaches the wire.',
  }),
  word({
    word: 'peer_tunnel_id', aliases: ['ptid'], type: ID, always: true, required: true, defaultText: 'required',
    help: 'The peer\'s `tunnel_id`, printed by `show` ("Peer tunnel"); a handle only, like `tunnel_id`.',
    compile: (v, p) => { p.peerTunnelId = v; },
  }),
  word({
    word: 'encap', type: oneOf(Object.keys(ENCAPSULATIONS) as EncapName[]), always: true, default: 'udp', defaultText: '`udp`',
    help: '`udp`: one socket per tunnel, bound to `local:udp_sport`; `ip`: one raw protocol-115 socket per local '
      + 'address, shared by the tunnels on it.',
    compile: (v, p) => { p.encap = ENCAPSULATIONS[v]; },
  }),
  word({
    word: 'local', type: ADDR, always: true, required: true, defaultText: 'required',
    help: 'This end\'s address: one configured on this host, of the same family as `remote`.',
    compile: (v, p) => { p.local = v; p.family = familyOf(v); },
  }),
  word({
    word: 'remote', type: ADDR, always: true, required: true, defaultText: 'required',
    help: 'The peer\'s address. Packets from any other source are dropped and counted (`foreign_source`).',
    check: (v, o, raw) => {
      const family = familyOf(o.local as string);
      if (familyOf(v) !== family) {
        throw new ConfigError('remote', raw, `an IPv${family} address (same family as local ${String(o.local)})`);
      }
      if (v === o.local) {
        throw new ConfigError('remote', raw, `the peer's address, not local ${String(o.local)}`,
          `remote ${String(raw)}: same as local; expected the peer's address`);
      }
    },
    compile: (v, p) => { p.remote = v; },
  }),
  word({
    word: 'udp_sport', type: PORT, always: false, required: { when: () => true, note: 'required with encap udp' },
    appliesWhen: udpWord('udp_sport'), defaultText: 'required for udp',
    help: 'The UDP port of the tunnel\'s socket on `local`.',
    compile: (v, p) => { p.localPort = v; },
  }),
  word({
    word: 'udp_dport', type: PORT, always: false, required: { when: () => true, note: 'required with encap udp' },
    appliesWhen: udpWord('udp_dport'), defaultText: 'required for udp',
    help: 'The peer\'s UDP port: datagrams from anywhere but `remote:udp_dport` are dropped and counted (`foreign_source`).',
    compile: (v, p) => { p.remotePort = v; },
  }),
  word({
    word: 'udp_csum', type: ON_OFF, always: false, default: 'off', defaultText: '`off`', appliesWhen: udpWord('udp_csum', 4, OVER_IPV4),
    help: 'IPv4 only: `off` sends a zero UDP checksum (`SO_NO_CHECK`), like the kernel\'s default; received zero '
      + 'checksums are always accepted on IPv4.',
    compile: (v, p) => { if (v === 'off') p.options.push(socketOption('SO_NO_CHECK', 1)); },
  }),
  word({
    word: 'udp6_csum_tx', type: ON_OFF, always: false, default: 'on', defaultText: '`on`', appliesWhen: udpWord('udp6_csum_tx', 6, OVER_IPV6),
    help: 'IPv6 only: `off` sends a zero checksum (`UDP_NO_CHECK6_TX`).',
    compile: (v, p) => { if (v === 'off') p.options.push(socketOption('UDP_NO_CHECK6_TX', 1)); },
  }),
  word({
    word: 'udp6_csum_rx', type: ON_OFF, always: false, default: 'on', defaultText: '`on`', appliesWhen: udpWord('udp6_csum_rx', 6, OVER_IPV6),
    help: 'IPv6 only: `off` accepts a zero checksum from the peer (`UDP_NO_CHECK6_RX`); otherwise the kernel drops '
      + 'such datagrams before l2tpd sees them.',
    compile: (v, p) => { if (v === 'off') p.options.push(socketOption('UDP_NO_CHECK6_RX', 1)); },
  }),
  word({
    word: 'ttl', type: integer('TTL', 1, 255), always: false, defaultText: 'the kernel\'s (64)',
    help: 'The outer header\'s TTL (IPv6: hop limit), set on the tunnel\'s socket (`IP_TTL`, `IPV6_UNICAST_HOPS`). '
      + 'Default: `net.ipv4.ip_default_ttl` / `net.ipv6.conf.*.hop_limit`. No `inherit`: the payload is an Ethernet '
      + 'frame, not a packet whose TTL the tunnel could copy. With encap ip, the tunnels on one `local` share a socket '
      + 'and must agree.',
    compile: (v, p) => { p.options.push(socketOption(p.family === 6 ? 'IPV6_UNICAST_HOPS' : 'IP_TTL', v)); },
  }),
  word({
    word: 'tos', type: TOS, always: false, defaultText: '0',
    help: 'The outer header\'s TOS byte (IPv6: traffic class), e.g. `0xb8` (DSCP EF), set on the tunnel\'s socket '
      + '(`IP_TOS`, `IPV6_TCLASS`); the ECN bits must be 0. No `inherit` (Cisco\'s `ip tos reflect`): copying each '
      + 'frame\'s inner DSCP would mean parsing every frame and a control message per datagram in the batched send '
      + 'path. With encap ip, the tunnels on one `local` share a socket and must agree.',
    compile: (v, p) => { p.options.push(socketOption(p.family === 6 ? 'IPV6_TCLASS' : 'IP_TOS', v)); },
  }),
  word({
    word: 'hello_interval', type: integer('SECONDS', 0, HELLO_INTERVAL_MAX, 'seconds; 0 = off'), always: false, defaultText: '0 (off)',
    usage: 'hello_interval SECONDS [hello_retries N]',
    help: 'Seconds from an answered Hello to the next: the RFC 3931 keepalive on the static tunnel; l2tpd also answers '
      + 'the peer\'s Hellos (see Liveness). Not for Linux peers, which never answer: use `peer_timeout` on their sessions.',
    compile: (v, p) => { p.helloIntervalMs = v * 1000; },
  }),
  word({
    word: 'hello_retries', type: integer('N', 1, HELLO_RETRIES_MAX), always: false, default: DEFAULT_HELLO_RETRIES,
    defaultText: String(DEFAULT_HELLO_RETRIES), usage: null,
    appliesWhen: {
      test: (o) => (o.hello_interval as number | undefined ?? 0) > 0,
      refuse: (_o, value) => new ConfigError('hello_retries', value, 'nothing without hello_interval',
        `hello_retries ${String(value)}: only applies with hello_interval 1..${HELLO_INTERVAL_MAX}`),
    },
    help: 'With `hello_interval`: retransmissions of an unanswered Hello before the peer is dead (see Liveness for the time).',
    compile: (v, p) => { p.helloRetries = v; },
  }),
] as const;

export type TunnelConfig = ConfigOf<typeof TUNNEL_WORDS>;

function checksumLine(t: TunnelView): string | undefined {
  if (t.udp_sport === undefined) return undefined;
  if (familyOf(t.local) === 6) {
    const tx = t.udp6_csum_tx === 'on';
    const rx = t.udp6_csum_rx === 'on';
    return `  UDP checksum: ${tx && rx ? 'enabled' : tx ? 'tx' : rx ? 'rx' : 'disabled'}`;
  }
  return `  UDP checksum: ${t.udp_csum === 'on' ? 'enabled' : 'disabled'}`;
}

function outerHeaderLine(t: TunnelView): string | undefined {
  const parts = [];
  if (t.ttl !== undefined) parts.push(`ttl ${t.ttl}`);
  if (t.tos !== undefined) parts.push(`tos 0x${t.tos.toString(16).padStart(2, '0')}`);
  return parts.length === 0 ? undefined : `  outer header: ${parts.join(', ')}`;
}

export const TUNNEL: WordTable<typeof TUNNEL_WORDS, TunnelView> = {
  object: 'tunnel',
  words: TUNNEL_WORDS,
  // iproute2 6.1 print_tunnel, line by line; then l2tpd's own words.
  show: [
    { words: ['tunnel_id', 'encap'], line: (t) => `Tunnel ${t.tunnel_id}, encap ${t.encap.toUpperCase()}` },
    { words: ['local', 'remote'], line: (t) => `  From ${t.local} to ${t.remote}` },
    { words: ['peer_tunnel_id'], line: (t) => `  Peer tunnel ${t.peer_tunnel_id}` },
    {
      words: ['udp_sport', 'udp_dport'],
      line: (t) => (t.udp_sport === undefined ? undefined : `  UDP source / dest ports: ${t.udp_sport}/${t.udp_dport}`),
    },
    { words: ['udp_csum', 'udp6_csum_tx', 'udp6_csum_rx'], line: checksumLine },
    { words: ['ttl', 'tos'], line: outerHeaderLine },
    {
      words: ['hello_interval', 'hello_retries'],
      line: (t) => (t.hello_interval ? `  hello interval: ${t.hello_interval} s, retries ${t.hello_retries}` : undefined),
    },
  ],
};

/** What a validated tunnel compiles into (once, when it starts). */
export function compileTunnel(t: TunnelConfig): TunnelPlan {
  return compileWords(TUNNEL_WORDS, t,
    { encap: UDP_ENCAP, family: 4, local: '', remote: '', localPort: 0, remotePort: 0, options: [],
      peerTunnelId: 0, helloIntervalMs: 0, helloRetries: DEFAULT_HELLO_RETRIES });
}

/**
 * The first word that sets `a`'s socket differently from `b`'s, if any. Tunnels that share a
 * socket (encap ip on one local address) must agree on every such word: the socket has one value.
 */
export function socketWordConflict(a: TunnelConfig, b: TunnelConfig): string | undefined {
  const optionsOf = (t: TunnelConfig, w: (typeof TUNNEL_WORDS)[number]): string =>
    JSON.stringify(compileWords([w], t, { ...compileTunnel(t), options: [] }).options);
  return TUNNEL_WORDS.find((w) => optionsOf(a, w) !== optionsOf(b, w))?.word;
}
