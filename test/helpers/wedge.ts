/**
 * wedge-thread (wedge-thread.c beside this file): stops one named thread of a process with ptrace
 * and holds it, for the watchdog tests. Built here with the host's gcc, static, so a guest of
 * another userspace runs the same binary.
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { hasCommand } from './netns.js';

export const WEDGE_SOURCE = path.join(__dirname, 'wedge-thread.c');

/** Why it cannot be built here, or false. */
export function wedgeUnavailable(): string | false {
  return hasCommand('gcc') ? false : 'gcc is not installed (it builds test/helpers/wedge-thread.c)';
}

/** Compile into `dir` and return the binary's path; throws with gcc's output on failure. */
export function buildWedge(dir: string): string {
  const out = path.join(dir, 'wedge-thread');
  const r = spawnSync('gcc', ['-O2', '-Wall', '-static', '-o', out, WEDGE_SOURCE], { encoding: 'utf8', timeout: 60000 });
  if (r.status !== 0) throw new Error(`gcc ${WEDGE_SOURCE}: ${r.stderr}${r.error ?? ''}`);
  return out;
}
