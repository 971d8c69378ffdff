/**
 * Where guest images and the acceleration verdict are kept between runs: $L2TPD_GUEST_CACHE, or
 * /tmp/l2tpd-guest-<uid>. Every entry is named by a digest of its inputs, so a changed package
 * makes a new entry instead of reusing a stale one. The directory must be ours and private
 * (it holds files the guest boots from); otherwise a fresh private directory is used for this
 * process and removed at exit.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** Entries unused for this long are removed when the cache is opened. */
const MAX_AGE_MS = 7 * 24 * 3600 * 1000;

let chosen: string | undefined;

export function cacheDir(): string {
  if (chosen) return chosen;
  const uid = process.getuid?.() ?? 0;
  const dir = process.env.L2TPD_GUEST_CACHE || path.join(os.tmpdir(), `l2tpd-guest-${uid}`);
  try {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    const st = fs.lstatSync(dir);
    if (!st.isDirectory() || st.uid !== uid || (st.mode & 0o022) !== 0) throw new Error('not private');
    prune(dir);
    chosen = dir;
  } catch {
    const own = fs.mkdtempSync(path.join(os.tmpdir(), 'l2tpd-guest-'));
    process.on('exit', () => fs.rmSync(own, { recursive: true, force: true }));
    chosen = own;
  }
  return chosen;
}

function prune(dir: string): void {
  const now = Date.now();
  for (const f of fs.readdirSync(dir)) {
    const p = path.join(dir, f);
    try {
      const st = fs.statSync(p);
      // Half-written files of runs that died, and entries nobody used for a week.
      if ((f.endsWith('.tmp') && now - st.mtimeMs > 3600 * 1000) || now - st.mtimeMs > MAX_AGE_MS) fs.rmSync(p, { force: true });
    } catch { /* removed meanwhile */ }
  }
}
