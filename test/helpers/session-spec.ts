/**
 * A SessionSpec as the engine builds one: the session's words normalised and compiled by the
 * word table (control/session-words.ts), plus the slots and tap the engine assigns.
 */
import type { SessionSpec } from '../../src/dataplane/forwarder.js';
import { compileSession } from '../../src/control/session-words.js';
import { normalizeSession } from '../../src/control/validate.js';
import type { WireEncap } from '../../src/protocol/index.js';

export interface SpecPlace {
  slot: number;
  tunnelSlot: number;
  tapFd: number;
  tapOffload?: boolean;
  mtu?: number;
}

/** `words`: session_id and peer_session_id at least (tunnel_id defaults to 1); `wire`: the tunnel's encapsulation. */
export function sessionSpec(words: Record<string, unknown>, wire: WireEncap, place: SpecPlace): SessionSpec {
  const s = normalizeSession({ tunnel_id: 1, ...words });
  return {
    ...compileSession(s, wire), slot: place.slot, tunnelSlot: place.tunnelSlot, sessionId: s.session_id,
    tapFd: place.tapFd, tapOffload: place.tapOffload ?? false, mtu: place.mtu ?? 1500,
  };
}
