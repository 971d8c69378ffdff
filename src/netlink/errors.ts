/**
 * Typed errors for rtnetlink requests. The `netlink` package rejects with bare
 * `Error('Request rejected: EEXIST')` (no code/errno) or a send-side ErrnoException;
 * everything leaving this module is a NetlinkError naming the operation and interface.
 */
import { constants as osConstants } from 'node:os';
import { getSystemErrorName } from 'node:util';

export type NetlinkErrorCode =
  | 'EEXIST' | 'ENODEV' | 'EOPNOTSUPP' | 'EINVAL' | 'EPERM' | 'EBUSY' | 'ERANGE'
  | 'ENOENT' | 'ENOBUFS' | 'ENAMETOOLONG' | 'ENOTSUP' | 'ETIMEDOUT' | 'ECLOSED' | 'EUNKNOWN'
  | (string & {});

/** Default hints appended to the message for a few well-known codes. */
const DEFAULT_HINTS: Record<string, string> = {
  ENODEV: 'no such interface',
  EEXIST: 'interface already exists',
  EPERM: 'needs CAP_NET_ADMIN',
};

export class NetlinkError extends Error {
  override readonly name = 'NetlinkError';
  /** errno name, e.g. 'EEXIST'. */
  readonly code: NetlinkErrorCode;
  /** positive errno number (0 when unknown). */
  readonly errno: number;
  /** the operation, e.g. 'create vlan eth1.5 on eth1'. */
  readonly op: string;
  /** the explanation shown in parentheses, if any */
  readonly hint: string | undefined;

  constructor(op: string, code: NetlinkErrorCode, errno: number, hint?: string, cause?: unknown) {
    const h = hint ?? DEFAULT_HINTS[code];
    super(`${op}: ${code}${h ? ` (${h})` : ''}`, cause === undefined ? undefined : { cause });
    this.code = code;
    this.errno = errno;
    this.op = op;
    this.hint = h;
  }
}

/** errno number → name ('EEXIST'); falls back to 'E<n>' if Node does not know it. */
export function errnoName(errno: number): string {
  const n = Math.abs(errno);
  if (n === 95) return 'EOPNOTSUPP'; // Linux: ENOTSUP == EOPNOTSUPP; prefer the netlink spelling
  try { return getSystemErrorName(-n); } catch { return `E${n}`; }
}

/** errno name → positive number (0 when unknown). */
function errnoNumber(code: string): number {
  if (code === 'EOPNOTSUPP') return 95;
  const v = (osConstants.errno as Record<string, number | undefined>)[code];
  return typeof v === 'number' ? v : 0;
}

/**
 * Convert whatever the package (or the native layer) threw into a NetlinkError.
 * `hints` maps an errno name to an operation-specific explanation.
 */
export function toNetlinkError(err: unknown, op: string, hints: Record<string, string> = {}): NetlinkError {
  if (err instanceof NetlinkError) return err;
  let code = 'EUNKNOWN';
  let errno = 0;
  if (typeof err === 'object' && err !== null) {
    const e = err as { code?: unknown; errno?: unknown; message?: unknown };
    if (typeof e.code === 'string') code = e.code;
    if (typeof e.errno === 'number') errno = Math.abs(e.errno);
    if (code === 'EUNKNOWN' && typeof e.message === 'string') code = codeFromText(e.message) ?? code;
  } else if (typeof err === 'string') {
    code = codeFromText(err) ?? code;
  }
  if (/^-?\d+$/.test(code)) { errno = Math.abs(Number(code)); code = errnoName(errno); }
  if (code === 'ENOTSUP') code = 'EOPNOTSUPP';
  if (!errno) errno = errnoNumber(code);
  if (code === 'EUNKNOWN' && typeof err === 'object' && err !== null && typeof (err as Error).message === 'string') {
    return new NetlinkError(op, code, errno, (err as Error).message, err);
  }
  return new NetlinkError(op, code, errno, hints[code], err);
}

function codeFromText(s: string): string | undefined {
  const m = /Request rejected: (-?\w+)/.exec(s) ?? /\b(E[A-Z0-9]{2,})\b/.exec(s);
  if (m) return m[1];
  if (/Timeout has been reached/.test(s)) return 'ETIMEDOUT';
  return undefined;
}
