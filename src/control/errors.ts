/**
 * Errors of the control plane. Both carry enough structure for the API to answer with a
 * JSON body and for the CLI to print a message that names the field, the value and what is
 * allowed (docs/architecture.md "Bad input").
 */

/**
 * A text that is safe to print on a terminal: control characters other than the line break
 * (C0, DEL and C1; JSON.stringify leaves DEL and C1 as they are) become \uXXXX escapes.
 */
export function escapeControl(text: string): string {
  return text.replace(/(?!\n)\p{Cc}/gu, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** Render a value the way a user typed it: bare words stay bare, anything odd is quoted. */
export function showValue(value: unknown): string {
  if (typeof value === 'string') return /^[\w.:%/-]+$/.test(value) ? value : escapeControl(JSON.stringify(value));
  if (typeof value === 'number' || typeof value === 'boolean' || value === null) return String(value);
  if (value === undefined) return '';
  try {
    const s = escapeControl(JSON.stringify(value));
    return s.length > 60 ? `${s.slice(0, 57)}...` : s;
  } catch {
    // Too deep to stringify (a stack overflow) or cyclic: say what it is, not what is in it.
    return Array.isArray(value) ? '[...]' : '{...}';
  }
}

/**
 * A value is not acceptable. `field` is the config path (`tunnel_id`, `sessions[2].session_id`),
 * `value` what was given (undefined when missing), `allowed` a short description of what is.
 * Message: `tunnel_id 0: expected an integer 1..4294967295`, or for a missing field
 * `tunnel_id: missing; expected an integer 1..4294967295`.
 */
export class ConfigError extends Error {
  readonly field: string;
  readonly value: unknown;
  readonly allowed: string;

  constructor(field: string, value: unknown, allowed: string, message?: string) {
    super(message ?? ConfigError.format(field, value, allowed));
    this.name = 'ConfigError';
    this.field = field;
    this.value = value;
    this.allowed = allowed;
  }

  static format(field: string, value: unknown, allowed: string): string {
    if (value === undefined) return `${field}: missing; expected ${allowed}`;
    return `${field} ${showValue(value)}: expected ${allowed}`;
  }

  /** The same error with the field path prefixed (`sessions[2].` + `session_id`). */
  withPrefix(prefix: string): ConfigError {
    if (!prefix) return this;
    const field = `${prefix}${this.field}`;
    const message = this.message.startsWith(this.field)
      ? `${prefix}${this.message}`
      : `${prefix.replace(/\.$/, '')}: ${this.message}`;
    return new ConfigError(field, this.value, this.allowed, message);
  }

  /** The same error with a context (a file name) in front of the message. */
  withContext(context: string): ConfigError {
    return new ConfigError(this.field, this.value, this.allowed, `${context}: ${this.message}`);
  }

  toJSON(): { error: string; field: string; value: unknown; allowed: string } {
    return { error: this.message, field: this.field, value: this.value, allowed: this.allowed };
  }
}

/**
 * The request is valid on its own but conflicts with the current state: a duplicate (409),
 * something that does not exist (404), a tunnel that still has sessions (409). The daemon may
 * use another status for a refusal that is neither (e.g. 500 when it lacks a capability).
 */
export class ConflictError extends Error {
  readonly status: number;
  readonly field?: string;
  readonly value?: unknown;

  constructor(message: string, status = 409, field?: string, value?: unknown) {
    super(message);
    this.name = 'ConflictError';
    this.status = status;
    if (field !== undefined) this.field = field;
    if (value !== undefined) this.value = value;
  }

  toJSON(): { error: string; field?: string; value?: unknown } {
    const out: { error: string; field?: string; value?: unknown } = { error: this.message };
    if (this.field !== undefined) out.field = this.field;
    if (this.value !== undefined) out.value = this.value;
    return out;
  }
}
