/**
 * The kernel's rule for an interface name (net/core/dev.c dev_valid_name): 1..IFNAMSIZ-1 bytes,
 * not "." or "..", no '/', ':' or byte that isspace() accepts (ASCII whitespace and 0xa0, which
 * the kernel's Latin-1 ctype counts as space, so it also refuses UTF-8 sequences containing that
 * byte). On top of the kernel's rule, control characters are refused: netlink cuts a name at NUL
 * and an escape sequence in a name reaches every terminal that lists it. Pure, no imports, so
 * the CLI's validation and the netlink layer share it.
 */

/** IFNAMSIZ - 1 */
export const IFNAME_MAX = 15;

/** What is allowed, for messages. */
export const IFNAME_ALLOWED = `1..${IFNAME_MAX} bytes without "/", ":", whitespace or control characters, not "." or ".."`;

/** ifnameProblem's answer for a name with a control character. */
export const IFNAME_CONTROL = 'contains a control character';

const encoder = new TextEncoder();

/** Why `name` is not a valid interface name, or undefined when it is. */
export function ifnameProblem(name: string): string | undefined {
  const bytes = encoder.encode(name);
  if (bytes.length === 0) return 'empty';
  if (bytes.length > IFNAME_MAX) return `${bytes.length} bytes (at most ${IFNAME_MAX})`;
  if (name === '.' || name === '..') return `"${name}" is reserved`;
  if (/\p{Cc}/u.test(name)) return IFNAME_CONTROL;
  for (const b of bytes) {
    if (b === 0x2f) return 'contains "/"';
    if (b === 0x3a) return 'contains ":"';
    if (b === 0x20 || (b >= 0x09 && b <= 0x0d) || b === 0xa0) return 'contains whitespace';
  }
  if (/\s/u.test(name)) return 'contains whitespace';
  return undefined;
}
