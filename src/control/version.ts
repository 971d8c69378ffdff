/** The version of l2tpd, shared by l2tpd and l2tpctl. */
import * as fs from 'node:fs';
import * as path from 'node:path';

/** `version` of package.json (two levels up, from src/control or dist/control); 'unknown' if unreadable. */
export function packageVersion(): string {
  try {
    const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', 'package.json'), 'utf8')) as { version?: string };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}
