/**
 * The session's words, each defined once (vocabulary.ts says what a definition holds and what is
 * derived from it). Table order is the config file's field order and the order words are
 * validated in, so a word's checks may look at the words above it.
 *
 * To add a session word: its entry below (type, default, help, and what it compiles into), a
 * `show` line if it has one, and its row in the README (a unit test compares them).
 */
import { ConfigError } from './errors.js';
import type { SessionView } from './api.js';
import {
  HEX, ID, ON_OFF, compileWords, ifname, integer, oneOf, wordsFor, type ConfigOf, type Draft, type WordTable,
} from './vocabulary.js';
import { MAX_SESSION_MTU } from '../dataplane/layout.js';
import { IFNAME_MAX } from '../netlink/ifname.js';
import type { CompiledSession } from '../dataplane/forwarder.js';
import { MAX_OFFSET, buildTxTemplate, makeRxContext, type WireEncap } from '../protocol/index.js';

/** What a session's words compile into, before the header template and receive context are built. */
export interface SessionPlan {
  peerSessionId: number;
  cookie: Uint8Array;
  peerCookie: Uint8Array;
  l2spec: 'none' | 'default';
  seqSend: boolean;
  seqRecv: boolean;
  seqMirror: boolean;
  offset: number;
  peerOffset: number;
  reorderTimeoutMs: number;
}

const word = wordsFor<SessionPlan>();

export const REORDER_TIMEOUT_MAX = 60000;
export const MTU_MIN = 68;
export const VLAN_MIN = 1;
export const VLAN_MAX = 4094;
export const PEER_TIMEOUT_MAX = 86400;

const cookieBytes = (hex: string): Uint8Array => Uint8Array.from(Buffer.from(hex, 'hex'));
const NAME_MEANS = 'interface name (1..15 bytes; "l2tpeth%d" allowed for session names)';

/** The interfaces a session's words name, as the daemon creates or uses them. */
export interface SessionInterfaceNames {
  /** The name the tap is asked for: `name`, or the pattern the kernel numbers (`l2tpeth%d`). */
  tap: string;
  /** The session interface, when `name` fixes it (not a `%d` pattern the kernel numbers). */
  own?: string;
  /** The bridge it joins: `bridge`, or the per-VLAN bridge `brvlanVLAN` with `vlan`. */
  bridge?: string;
  /** The VLAN interface `TRUNK.VLAN` with `vlan VLAN dev TRUNK`, and its trunk. */
  vlanIf?: string;
  trunk?: string;
}

const vlanInterface = (dev: string, vlan: number): string => `${dev}.${vlan}`;
/** A session without `name` gets the kernel's next `l2tpeth0`, `l2tpeth1`, ... as `ip l2tp` does. */
const TAP_NAME_PATTERN = 'l2tpeth%d';

/** The names a session's words imply; the one place the daemon's naming rules are written. */
export function interfaceNames(s: { name?: string; bridge?: string; vlan?: number; dev?: string }): SessionInterfaceNames {
  const out: SessionInterfaceNames = { tap: s.name ?? TAP_NAME_PATTERN };
  if (s.name !== undefined && !s.name.includes('%')) out.own = s.name;
  if (s.bridge !== undefined) out.bridge = s.bridge;
  else if (s.vlan !== undefined) out.bridge = `brvlan${s.vlan}`;
  if (s.vlan !== undefined && s.dev !== undefined) {
    out.vlanIf = vlanInterface(s.dev, s.vlan);
    out.trunk = s.dev;
  }
  return out;
}

export const SESSION_WORDS = [
  word({
    word: 'tunnel_id', aliases: ['tid'], type: ID, always: true, required: true, defaultText: 'required',
    help: 'The tunnel the session belongs to.',
  }),
  word({
    word: 'session_id', aliases: ['sid'], type: ID, always: true, required: true, defaultText: 'required',
    help: 'The ID this end receives with. UDP: looked up within the tunnel\'s socket; IP: unique among this host\'s IP '
      + 'sessions.',
  }),
  word({
    word: 'peer_session_id', aliases: ['psid'], type: ID, always: true, required: true, defaultText: 'required',
    help: 'The peer\'s `session_id`, written into every packet this end sends.',
    compile: (v, p) => { p.peerSessionId = v; },
  }),
  word({
    word: 'name', type: ifname('NAME', NAME_MEANS, true), always: false, defaultText: `\`${TAP_NAME_PATTERN}\``, lead: true,
    help: 'The session interface (a tap), created and brought up by l2tpd. Without a name the kernel numbers it '
      + '(`l2tpeth0`, …), as `ip l2tp` does; a restarted daemon finds it again.',
  }),
  word({
    word: 'cookie', type: HEX, always: false, defaultText: 'none',
    help: 'The cookie this end sends: 8 or 16 hex digits, on the wire in the order written.',
    compile: (v, p) => { p.cookie = cookieBytes(v); },
  }),
  word({
    word: 'peer_cookie', type: HEX, always: false, defaultText: 'none',
    help: 'The cookie expected from the peer (its `cookie`); a packet with another cookie is dropped and counted '
      + '(`rx_cookie_discards`).',
    compile: (v, p) => { p.peerCookie = cookieBytes(v); },
  }),
  word({
    word: 'l2spec_type', type: oneOf(['none', 'default']), always: true, default: 'default', defaultText: '`default`',
    help: '`default`: the 4-byte RFC 3931 sublayer (as Linux); `none`: no sublayer (as Cisco, VPP).',
    compile: (v, p) => { p.l2spec = v; },
  }),
  word({
    word: 'seq', type: oneOf(['none', 'send', 'recv', 'both']), always: true, default: 'none', defaultText: '`none`',
    help: '`send`/`both`: S bit set, numbers from 0 per session, wrapping at 2^24; `recv`/`both`: frames without a number '
      + 'are dropped (`rx_seq_discards`). As on Linux, this is how sending *starts*: the peer\'s S bit switches it (see '
      + '`seq_mirror` and Sequencing). Needs `l2spec_type default` (the numbers live in the sublayer); `ip l2tp` '
      + 'accepts the combination with `none`, where it can only drop every frame, so l2tpd refuses it.',
    // Sequence numbers live in the default sublayer: without it `send` has no effect on the wire
    // and `recv`/`both` would drop every frame (Linux accepts both and behaves exactly so).
    check: (v, o) => {
      if (v !== 'none' && o.l2spec_type === 'none') {
        throw new ConfigError('seq', v, 'none when l2spec_type is none (sequence numbers need l2spec_type default)');
      }
    },
    compile: (v, p) => { p.seqSend = v === 'send' || v === 'both'; p.seqRecv = v === 'recv' || v === 'both'; },
  }),
  word({
    word: 'seq_mirror', type: ON_OFF, always: false, defaultText: '`on`',
    help: '`on`: as a Linux static session, the peer\'s S bit switches sending numbers on (a numbered frame) and off (an '
      + 'unnumbered one, unless `seq` has `recv`); `seq` is how sending starts. `off`: send exactly as `seq` says '
      + '(Cisco\'s `sequencing transmit`). `show session` prints what is sent now (`tx sequencing`).',
    compile: (v, p) => { p.seqMirror = v === 'on'; },
  }),
  word({
    word: 'offset', type: integer('N', 0, MAX_OFFSET), always: true, default: 0, defaultText: '0',
    help: 'Padding bytes written (as zeros) after the sublayer. Linux ignores it since 4.16; QEMU\'s `offset=N` needs it.',
    compile: (v, p) => { p.offset = v; },
  }),
  word({
    word: 'peer_offset', type: integer('N', 0, MAX_OFFSET), always: true, default: 0, defaultText: '0',
    help: 'Padding bytes skipped after the sublayer on receive (the peer\'s `offset`).',
    compile: (v, p) => { p.peerOffset = v; },
  }),
  word({
    word: 'reorder_timeout', type: integer('MS', 0, REORDER_TIMEOUT_MAX, 'milliseconds'), always: true, default: 0, defaultText: '0',
    help: 'Milliseconds to hold out-of-order frames (at most 32) for reordering; 0 drops them as Linux does (see Sequencing).',
    compile: (v, p) => { p.reorderTimeoutMs = v; },
  }),
  word({
    word: 'mtu', type: integer('MTU', MTU_MIN, MAX_SESSION_MTU), always: false, defaultText: 'kernel formula',
    help: 'The session interface\'s MTU. Default: underlay path MTU − IP − UDP − L2TPv3 header − 14 (1446 for UDP/IPv4 '
      + 'with the default sublayer and no cookie; 1458 for IP/IPv4).',
  }),
  word({
    word: 'bridge', type: ifname('NAME', NAME_MEANS), always: false, defaultText: 'none',
    help: 'Enslave the session interface to this bridge (created if missing).',
  }),
  word({
    word: 'vlan', type: integer('VLAN', VLAN_MIN, VLAN_MAX), always: false, defaultText: 'none', usage: 'vlan VLAN dev TRUNK',
    required: {
      when: (_o, input) => input.dev !== undefined,
      missing: (_o, input) => new ConfigError('vlan', undefined, `an integer ${VLAN_MIN}..${VLAN_MAX} (dev needs vlan)`,
        `vlan: missing; dev ${String(input.dev)} needs vlan ID (${VLAN_MIN}..${VLAN_MAX})`),
    },
    help: 'With `dev TRUNK`: also create the VLAN interface `TRUNK.VLAN` and a per-VLAN bridge (`brvlanVLAN` unless '
      + '`bridge` names one) holding it and the session interface. Hosts on the VLAN need an MTU no larger than '
      + 'the session\'s, or the bridge drops their larger frames (see "Session interfaces, bridges and VLANs").',
  }),
  word({
    word: 'dev', type: ifname('TRUNK', 'the interface carrying the VLANs'), always: false, defaultText: 'none', usage: null,
    required: {
      when: (o) => o.vlan !== undefined,
      missing: (o) => new ConfigError('dev', undefined, 'the trunk interface name (vlan needs dev)',
        `dev: missing; vlan ${String(o.vlan)} needs dev TRUNK (the interface carrying the VLAN)`),
    },
    check: (v, o, raw) => {
      const sub = vlanInterface(v, o.vlan as number);
      if (Buffer.byteLength(sub) > IFNAME_MAX) {
        throw new ConfigError('dev', raw, `a trunk name short enough for "${sub}" to fit ${IFNAME_MAX} bytes`,
          `dev ${v}: the VLAN interface name "${sub}" would exceed ${IFNAME_MAX} bytes`);
      }
    },
    help: 'The trunk interface carrying the VLAN (`vlan VLAN dev TRUNK`).',
  }),
  word({
    word: 'peer_timeout', type: integer('SECONDS', 0, PEER_TIMEOUT_MAX, 'seconds; 0 = off'), always: false, defaultText: '0 (off)',
    help: 'Seconds without a valid frame from the peer before the session is down (its interface loses carrier); up '
      + 'again with the next one. For peers that send no Hello (Linux, QEMU); see Liveness.',
  }),
] as const;

export type SessionConfig = ConfigOf<typeof SESSION_WORDS>;

/** The session interface must have its own name, not that of the bridge or trunk it is wired to. */
function checkNames(o: Draft): void {
  if (o.name === undefined) return;
  for (const f of ['bridge', 'dev'] as const) {
    if (o[f] === o.name) {
      throw new ConfigError('name', o.name, `a name different from ${f}`,
        `name ${String(o.name)}: same as ${f}; the session interface needs its own name`);
    }
  }
}

/**
 * What a running session sends now (`tx_seq`, l2spec_type default only) and, when it differs
 * from `seq`, why; a session not running shows `seq_mirror off` if it is set.
 */
function txSequencingLine(s: SessionView): string | undefined {
  if (s.tx_seq === undefined) return s.seq_mirror === 'off' ? '  seq_mirror: off' : undefined;
  const configured = s.seq === 'send' || s.seq === 'both' ? 'on' : 'off';
  const why = s.seq_mirror === 'off' ? " (seq_mirror off: the peer's S bit is not followed)"
    : s.tx_seq === configured ? ''
      : s.tx_seq === 'on' ? " (the peer's numbered frames turned it on)" : " (the peer's unnumbered frames turned it off)";
  return `  tx sequencing: ${s.tx_seq}${why}`;
}

export const SESSION: WordTable<typeof SESSION_WORDS, SessionView> = {
  object: 'session',
  words: SESSION_WORDS,
  check: checkNames,
  // iproute2 6.1 print_session, line by line; then l2tpd's own words.
  show: [
    { words: ['tunnel_id', 'session_id'], line: (s) => `Session ${s.session_id} in tunnel ${s.tunnel_id}` },
    { words: ['peer_session_id'], line: (s) => `  Peer session ${s.peer_session_id}, tunnel ${s.peer_tunnel_id ?? '?'}` },
    {
      words: ['name'],
      line: (s) => {
        const ifname = s.interface ?? s.name;
        return ifname === undefined ? undefined : `  interface name: ${ifname}`;
      },
    },
    { words: ['offset', 'peer_offset'], line: (s) => `  offset ${s.offset}, peer offset ${s.peer_offset}` },
    { words: ['cookie'], line: (s) => (s.cookie ? `  cookie ${s.cookie}` : undefined) },
    { words: ['peer_cookie'], line: (s) => (s.peer_cookie ? `  peer cookie ${s.peer_cookie}` : undefined) },
    { words: ['reorder_timeout'], line: (s) => `  reorder timeout: ${s.reorder_timeout}` },
    {
      words: ['seq'],
      line: (s) => (s.seq === 'none' ? undefined
        : `  sequence numbering:${s.seq === 'send' || s.seq === 'both' ? ' send' : ''}${s.seq === 'recv' || s.seq === 'both' ? ' recv' : ''}`),
    },
    { words: ['seq_mirror'], line: txSequencingLine },
    { words: ['l2spec_type'], line: (s) => `  l2spec_type: ${s.l2spec_type}` },
    { words: ['mtu'], line: (s) => (s.mtu === undefined ? undefined : `  mtu: ${s.mtu}`) },
    { words: ['bridge'], line: (s) => (s.bridge === undefined ? undefined : `  bridge: ${s.bridge}`) },
    { words: ['vlan', 'dev'], line: (s) => (s.vlan === undefined ? undefined : `  vlan: ${s.vlan}, dev ${s.dev}`) },
    { words: ['peer_timeout'], line: (s) => (s.peer_timeout ? `  peer timeout: ${s.peer_timeout} s` : undefined) },
  ],
};

/**
 * What a validated session compiles into, once, when it starts: the header written in front of
 * every frame it sends (also what its default MTU is computed from) and what its receive path
 * expects. `wire` is its tunnel's encapsulation.
 */
export function compileSession(s: SessionConfig, wire: WireEncap): CompiledSession {
  const p = compileWords(SESSION_WORDS, s, {
    peerSessionId: 0, cookie: new Uint8Array(0), peerCookie: new Uint8Array(0), l2spec: 'default',
    seqSend: false, seqRecv: false, seqMirror: true, offset: 0, peerOffset: 0, reorderTimeoutMs: 0,
  });
  return {
    tx: buildTxTemplate({ encap: wire, peerSessionId: p.peerSessionId, cookie: p.cookie, l2spec: p.l2spec, offset: p.offset }),
    rx: makeRxContext({ peerCookie: p.peerCookie, l2spec: p.l2spec, peerOffset: p.peerOffset }),
    // Without the sublayer there is nowhere to put a number (validation refuses the combination).
    seqSend: p.seqSend && p.l2spec === 'default',
    seqRecv: p.seqRecv,
    seqMirror: p.seqMirror && p.l2spec === 'default',
    reorderTimeoutMs: p.reorderTimeoutMs,
  };
}
