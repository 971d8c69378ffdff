import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type tap from 'tap';

/**
 * A short temp dir, removed at teardown. UNIX socket paths are limited to 107
 * bytes, and tap's fixture dirs (t.testdir) embed the checkout path and the test
 * name, so a socket under them fails on a deep checkout such as CI's.
 */
export function shortDir(t: tap.Test, files: Record<string, string> = {}): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'l2t-'));
  for (const [name, text] of Object.entries(files)) fs.writeFileSync(path.join(dir, name), text);
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}
