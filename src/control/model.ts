/**
 * The configuration model: what a user declares. The types are derived from the word tables
 * (tunnel-words.ts, session-words.ts), whose words are those of `ip l2tp` (README "l2tpctl"),
 * used verbatim in the config file, the API bodies and the CLI. A normalised object has every
 * word that has a default.
 */
import type { TunnelConfig } from './tunnel-words.js';
import type { SessionConfig } from './session-words.js';

export type { TunnelConfig } from './tunnel-words.js';
export type { SessionConfig } from './session-words.js';

export interface Config {
  tunnels: TunnelConfig[];
  sessions: SessionConfig[];
}
