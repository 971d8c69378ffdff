/**
 * An initramfs (newc cpio, uncompressed: the guest kernel unpacks it faster than it could
 * decompress under TCG) composed from files installed on this host. Nothing is downloaded.
 *
 *   const img = new Initramfs();
 *   img.binary('/usr/sbin/ip');                  // the file, plus every library `ldd` names
 *   img.modules(kernel, ['l2tp_eth', 'l2tp_ip6']);  // with their modules.dep closure, in load order
 *   img.text('/init', script, 0o755);
 *   const path = img.write(cacheDir);            // reused while its inputs are unchanged
 */
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { GuestKernel } from './kernel.js';

type Entry =
  | { kind: 'dir'; mode: number }
  | { kind: 'file'; mode: number; source: string; size: number; mtimeMs: number }
  | { kind: 'text'; mode: number; data: Buffer }
  | { kind: 'symlink'; target: string }
  | { kind: 'chardev'; mode: number; major: number; minor: number };

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;

export class Initramfs {
  private readonly entries = new Map<string, Entry>();
  /** Module paths (relative to /lib/modules/<release>) in the order they must be loaded. */
  readonly moduleOrder: string[] = [];

  constructor() {
    for (const d of ['/bin', '/sbin', '/usr/bin', '/usr/sbin', '/etc', '/proc', '/sys', '/dev', '/tmp', '/run', '/root', '/var', '/mnt']) this.dir(d);
    // The kernel opens /dev/console for init before anything can mount devtmpfs.
    this.chardev('/dev/console', 5, 1);
    this.chardev('/dev/null', 1, 3);
  }

  dir(p: string, mode = 0o755): this {
    const parts = p.split('/').filter(Boolean);
    for (let i = 1; i <= parts.length; i++) {
      const d = `/${parts.slice(0, i).join('/')}`;
      const e = this.entries.get(d);
      if (e && e.kind !== 'dir') throw new Error(`initramfs: ${d} is already a ${e.kind}`);
      if (!e) this.entries.set(d, { kind: 'dir', mode: i === parts.length ? mode : 0o755 });
    }
    return this;
  }

  /** Copy a host file to `dest` (default: the same path). Symlinks are followed. */
  file(source: string, dest = source, mode?: number): this {
    const st = fs.statSync(source);
    this.dir(path.posix.dirname(dest));
    this.entries.set(dest, { kind: 'file', mode: mode ?? (st.mode & 0o7777), source, size: st.size, mtimeMs: st.mtimeMs });
    return this;
  }

  text(dest: string, data: string | Buffer, mode = 0o644): this {
    this.dir(path.posix.dirname(dest));
    this.entries.set(dest, { kind: 'text', mode, data: Buffer.from(data) });
    return this;
  }

  symlink(dest: string, target: string): this {
    this.dir(path.posix.dirname(dest));
    this.entries.set(dest, { kind: 'symlink', target });
    return this;
  }

  chardev(dest: string, major: number, minor: number, mode = 0o600): this {
    this.dir(path.posix.dirname(dest));
    this.entries.set(dest, { kind: 'chardev', mode, major, minor });
    return this;
  }

  has(dest: string): boolean { return this.entries.has(dest); }

  /**
   * A dynamically linked program and the shared libraries `ldd` resolves for it, at the paths
   * the dynamic loader will look for them. A static program is copied alone.
   */
  binary(source: string, dest = source): this {
    this.file(source, dest);
    for (const lib of sharedLibraries(source)) if (!this.entries.has(lib)) this.file(lib);
    return this;
  }

  /**
   * Kernel modules with everything they depend on (modules.dep), skipping what is built in;
   * moduleOrder lists them dependencies first. Compressed modules are stored decompressed, so
   * busybox `insmod` can load them.
   */
  modules(kernel: GuestKernel, names: string[]): this {
    for (const rel of kernel.loadOrder(names)) {
      if (this.moduleOrder.includes(rel)) continue;
      const src = path.join(kernel.modulesDir, rel);
      const plain = rel.replace(/\.(xz|zst|gz)$/, '');
      const dest = `/lib/modules/${kernel.release}/${plain}`;
      if (plain === rel) this.file(src, dest);
      else this.text(dest, decompress(src), 0o644);
      this.moduleOrder.push(plain);
    }
    return this;
  }

  /** A digest of everything the image would contain (sources by path, size and mtime). */
  key(): string {
    const h = createHash('sha256');
    for (const [p, e] of [...this.entries].sort(([a], [b]) => a.localeCompare(b))) {
      h.update(`${p}\0${e.kind}\0`);
      if (e.kind === 'file') h.update(`${e.source}\0${e.size}\0${e.mtimeMs}\0${e.mode}`);
      else if (e.kind === 'text') h.update(e.data).update(`\0${e.mode}`);
      else if (e.kind === 'symlink') h.update(e.target);
      else if (e.kind === 'chardev') h.update(`${e.major}:${e.minor}:${e.mode}`);
      else h.update(String(e.mode));
      h.update('\n');
    }
    return h.digest('hex').slice(0, 24);
  }

  /** The cpio archive. */
  build(): Buffer {
    const out: Buffer[] = [];
    let ino = 1;
    const push = (name: string, mode: number, data: Buffer, rdev: [number, number] = [0, 0], nlink = 1) => {
      const nameBuf = Buffer.from(`${name}\0`);
      const fields = [ino++, mode, 0, 0, nlink, 0, data.length, 0, 0, rdev[0], rdev[1], nameBuf.length, 0];
      const header = Buffer.from(`070701${fields.map((f) => f.toString(16).padStart(8, '0')).join('')}`, 'ascii');
      out.push(header, nameBuf, pad(header.length + nameBuf.length), data, pad(data.length));
    };
    // Parents sort before their children, so each directory exists when its entries arrive.
    for (const [p, e] of [...this.entries].sort(([a], [b]) => a.localeCompare(b))) {
      const name = p.slice(1);
      if (e.kind === 'dir') push(name, S_IFDIR | e.mode, Buffer.alloc(0), [0, 0], 2);
      else if (e.kind === 'file') push(name, S_IFREG | e.mode, fs.readFileSync(e.source));
      else if (e.kind === 'text') push(name, S_IFREG | e.mode, e.data);
      else if (e.kind === 'symlink') push(name, S_IFLNK | 0o777, Buffer.from(e.target));
      else push(name, S_IFCHR | e.mode, Buffer.alloc(0), [e.major, e.minor]);
    }
    push('TRAILER!!!', 0, Buffer.alloc(0));
    return Buffer.concat(out);
  }

  /**
   * Write the archive into `dir` as initramfs-KEY.cpio and return its path. An archive with the
   * same key is reused (same inputs, same bytes); writes go through a temporary file and a rename,
   * so a concurrent or interrupted run never sees half an archive.
   */
  write(dir: string): string {
    const file = path.join(dir, `initramfs-${this.key()}.cpio`);
    if (fs.existsSync(file)) {
      const now = new Date();
      fs.utimesSync(file, now, now);
      return file;
    }
    const tmp = `${file}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, this.build(), { mode: 0o600 });
    fs.renameSync(tmp, file);
    return file;
  }
}

function pad(n: number): Buffer { return Buffer.alloc((4 - (n % 4)) % 4); }

/** Absolute paths of the shared libraries (and the loader) `ldd` reports for a program. */
export function sharedLibraries(program: string): string[] {
  const r = spawnSync('ldd', [program], { encoding: 'utf8' });
  // A static program: ldd exits 1 with "not a dynamic executable".
  if (r.status !== 0) return [];
  const libs: string[] = [];
  for (const line of r.stdout.split('\n')) {
    const m = /=>\s*(\/\S+)/.exec(line) ?? /^\s*(\/\S+)\s+\(/.exec(line);
    if (m) libs.push(m[1]);
    else if (/=>\s*not found/.test(line)) throw new Error(`${program}: ${line.trim()}`);
  }
  return libs;
}

function decompress(file: string): Buffer {
  const tool = file.endsWith('.xz') ? 'xz' : file.endsWith('.zst') ? 'zstd' : 'gzip';
  const r = spawnSync(tool, ['-dc', file], { maxBuffer: 256 << 20 });
  if (r.status !== 0) throw new Error(`${tool} -dc ${file}: ${r.error ?? r.stderr}`);
  return r.stdout;
}
