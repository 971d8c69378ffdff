/**
 * The systemd guest kind: Debian (debootstrap --variant=minbase from the mirror this host's apt
 * uses) in an ext4 image, booted with systemd as PID 1. A busybox initramfs loads virtio_blk and
 * ext4, mounts /dev/vda and switch_roots to /lib/systemd/systemd; the command agent runs as a
 * unit with Restart=always.
 *
 *   const rootfs = await debianRootfs({ include: ['systemd', 'udev', ...] });   // cached tarball
 *   const image = new DebianImage(rootfs, kernel)
 *     .modules(['tun', 'bridge']).program('/usr/bin/node')
 *     .step('my-install', digest, (root) => { ... })  // any host-side step, keyed by its inputs
 *     .build();                                         // cached ext4 image
 *   const disk = privateCopy(image, dir);               // written to; the cached image stays clean
 *   const guest = await bootDebianGuest({ name: 'sd', kernel, disk });
 *
 * Both the rootfs and the image are kept in cacheDir() under a digest of their inputs: the first
 * debootstrap takes ~40 s on an idle machine (minutes on a loaded one); after that an image is
 * an extraction, the caller's steps and mkfs.ext4 -d.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { hasCommand } from '../helpers/netns.js';
import { cacheDir } from './cache.js';
import { agentScript } from './channel.js';
import { Guest, type GuestOptions } from './guest.js';
import { Initramfs, sharedLibraries } from './initramfs.js';
import { findGuestKernel, type GuestKernel } from './kernel.js';
import { AGENT_PORT, QEMU } from './qemu.js';

const BUSYBOX = '/bin/busybox';
/**
 * Loaded by the initramfs: the disk, its filesystem (ext4 asks the crypto API for crc32c, which
 * modules.dep does not list), and the agent's virtio-serial port.
 */
const INITRAMFS_MODULES = ['virtio_pci', 'virtio_blk', 'crc32c_generic', 'ext4', 'virtio_console'];
const AGENT_UNIT = 'l2tpd-guest-agent.service';

/** What the systemd guest kind needs from this host, or false when all of it is there. */
export function debianGuestUnavailable(): string | false {
  if (process.getuid?.() !== 0) return 'needs root (debootstrap, image ownership)';
  if (!hasCommand(QEMU)) return `${QEMU} is not installed (Debian package qemu-system-x86)`;
  const kernel = findGuestKernel();
  if (typeof kernel === 'string') return kernel;
  if (spawnSync(BUSYBOX, ['true']).status !== 0) return `${BUSYBOX} is missing (Debian package busybox-static)`;
  for (const [cmd, pkg] of [['debootstrap', 'debootstrap'], ['mkfs.ext4', 'e2fsprogs'], ['depmod', 'kmod']]) {
    if (!hasCommand(cmd) && !fs.existsSync(`/usr/sbin/${cmd}`) && !fs.existsSync(`/sbin/${cmd}`)) return `${cmd} is not installed (Debian package ${pkg})`;
  }
  if (!hostDebianMirror()) return 'no Debian mirror in this host\'s apt sources (set L2TPD_GUEST_MIRROR)';
  return false;
}

/**
 * The Debian mirror this host's apt is configured with (see mirrorFromSources), or
 * $L2TPD_GUEST_MIRROR.
 */
export function hostDebianMirror(): string | undefined {
  if (process.env.L2TPD_GUEST_MIRROR) return process.env.L2TPD_GUEST_MIRROR;
  const files = ['/etc/apt/sources.list'];
  const dir = '/etc/apt/sources.list.d';
  if (fs.existsSync(dir)) files.push(...fs.readdirSync(dir).filter((f) => /\.(list|sources)$/.test(f)).sort().map((f) => path.join(dir, f)));
  return mirrorFromSources(files.flatMap((file) => {
    try { return [{ path: file, text: fs.readFileSync(file, 'utf8') }]; } catch { return []; }
  }));
}

/**
 * The first `deb` source (one-line .list or deb822 .sources) that carries `main` for a suite of
 * its own (not -security, -updates or -backports), security archives left out.
 */
export function mirrorFromSources(files: Array<{ path: string; text: string }>): string | undefined {
  const candidates: Array<{ uri: string; suites: string[]; components: string[] }> = [];
  for (const { path: file, text } of files) {
    if (file.endsWith('.sources')) {
      for (const stanza of text.split(/\n\s*\n/)) {
        const field = (k: string) => new RegExp(`^${k}:\\s*(.*)$`, 'mi').exec(stanza)?.[1].trim().split(/\s+/) ?? [];
        if (!field('Types').includes('deb') || /^Enabled:\s*no/mi.test(stanza)) continue;
        for (const uri of field('URIs')) candidates.push({ uri, suites: field('Suites'), components: field('Components') });
      }
    } else {
      for (const line of text.split('\n')) {
        const m = /^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)\s+(.*)$/.exec(line);
        if (m) candidates.push({ uri: m[1], suites: [m[2]], components: m[3].trim().split(/\s+/) });
      }
    }
  }
  const hit = candidates.find((c) => c.components.includes('main') && !/security/.test(c.uri)
    && c.suites.some((s) => !/-(security|updates|backports)$/.test(s)));
  return hit?.uri;
}

export interface RootfsSpec {
  suite?: string;
  /** debootstrap --include (the minbase variant brings apt, dpkg, coreutils, util-linux, ...). */
  include: string[];
}

function digest(...parts: string[]): string {
  return createHash('sha256').update(parts.join('\0')).digest('hex').slice(0, 24);
}

function run(cmd: string, args: string[], what: string, timeoutMs = 600000): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: timeoutMs, maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`${what}: ${cmd} ${args.join(' ')} exited ${r.status ?? r.signal}: ${r.error ?? ''}${r.stderr}${r.stdout.slice(-4000)}`);
  return r.stdout;
}

/** run(), without blocking: the test does other work while debootstrap downloads and unpacks. */
function runAsync(cmd: string, args: string[], what: string, timeoutMs = 900000): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], timeout: timeoutMs });
    let out = ''; let err = '';
    child.stdout.on('data', (d: Buffer) => { out = (out + d.toString()).slice(-4000); });
    child.stderr.on('data', (d: Buffer) => { err = (err + d.toString()).slice(-4000); });
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (code === 0) resolve(out);
      else reject(new Error(`${what}: ${cmd} ${args.join(' ')} exited ${code ?? signal}: ${err}${out}`));
    });
  });
}

/**
 * Where a root tree is assembled before it is archived: tmpfs when the host has it. dpkg syncs
 * every file it unpacks and mkfs.ext4 -d reads the whole tree back; on tmpfs neither waits for a
 * disk. The tree is removed as soon as it is archived.
 */
function scratchDir(prefix: string): string {
  const shm = '/dev/shm';
  let base = cacheDir();
  try {
    fs.accessSync(shm, fs.constants.W_OK);
    if (fs.statfsSync(shm).bavail * fs.statfsSync(shm).bsize > 2 * 1024 ** 3) base = shm;
  } catch { /* no usable tmpfs: the cache's disk */ }
  return fs.mkdtempSync(path.join(base, `l2tpd-${prefix}-`));
}

function touch(file: string): void {
  const now = new Date();
  fs.utimesSync(file, now, now);
}

/** The cache entry debianRootfs() builds: named by suite, mirror, packages and debootstrap version. */
export function debianRootfsPath(spec: RootfsSpec): string {
  const suite = spec.suite ?? 'bookworm';
  const mirror = hostDebianMirror();
  if (!mirror) throw new Error('no Debian mirror configured (L2TPD_GUEST_MIRROR)');
  const include = [...spec.include].sort();
  const version = spawnSync('dpkg-query', ['-W', '-f', '${Version}', 'debootstrap'], { encoding: 'utf8' }).stdout ?? '';
  return path.join(cacheDir(), `debian-rootfs-${suite}-${digest(suite, mirror, include.join(','), version, process.arch)}.tar`);
}

/**
 * A debootstrapped root filesystem as a tarball in cacheDir() (debianRootfsPath()). Built once,
 * on tmpfs, and archived through a temporary name, so concurrent or interrupted runs never see
 * half of one.
 */
export async function debianRootfs(spec: RootfsSpec): Promise<string> {
  const file = debianRootfsPath(spec);
  if (fs.existsSync(file)) { touch(file); return file; }
  const suite = spec.suite ?? 'bookworm';
  const mirror = hostDebianMirror()!;
  const work = scratchDir('debootstrap');
  try {
    const root = path.join(work, 'root');
    await runAsync('debootstrap', ['--variant=minbase', `--include=${[...spec.include].sort().join(',')}`, suite, root, mirror], `debootstrap ${suite} from ${mirror}`);
    // Downloaded packages are not part of the image.
    fs.rmSync(path.join(root, 'var/cache/apt/archives'), { recursive: true, force: true });
    fs.mkdirSync(path.join(root, 'var/cache/apt/archives/partial'), { recursive: true });
    await runAsync('tar', ['--numeric-owner', '--xattrs', '-C', root, '-cf', `${file}.${process.pid}.tmp`, '.'], 'archive the rootfs');
    fs.renameSync(`${file}.${process.pid}.tmp`, file);
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
  return file;
}

type Step = { key: string; apply: (root: string) => void };

/**
 * An ext4 image composed from a rootfs tarball and host-side steps, in order. build() returns a
 * cached image when one with the same inputs exists.
 */
export class DebianImage {
  private readonly steps: Step[] = [];
  private hostname = 'l2tpd-guest';

  constructor(private readonly rootfs: string, private readonly kernel: GuestKernel) {}

  /** A host-side step on the extracted tree; `key` must change whenever its result would. */
  step(name: string, key: string, apply: (root: string) => void): this {
    this.steps.push({ key: `${name}:${key}`, apply });
    return this;
  }

  /** Kernel modules with their dependencies at /lib/modules/<release>, indexed by depmod. */
  modules(names: string[]): this {
    const order = this.kernel.loadOrder(names);
    const stamps = order.map((rel) => { const st = fs.statSync(path.join(this.kernel.modulesDir, rel)); return `${rel}:${st.size}:${st.mtimeMs}`; });
    return this.step('modules', digest(this.kernel.release, ...stamps), (root) => {
      const dest = path.join(root, 'lib/modules', this.kernel.release);
      for (const rel of [...order, 'modules.order', 'modules.builtin', 'modules.builtin.modinfo']) {
        const src = path.join(this.kernel.modulesDir, rel);
        if (!fs.existsSync(src)) continue;
        fs.mkdirSync(path.dirname(path.join(dest, rel)), { recursive: true });
        fs.copyFileSync(src, path.join(dest, rel));
      }
      run('depmod', ['-b', root, this.kernel.release], 'depmod');
    });
  }

  /** A host program at the same path, with the shared libraries the rootfs lacks. */
  program(source: string): this {
    const files = [source, ...sharedLibraries(source)];
    const stamps = files.map((f) => { const st = fs.statSync(f); return `${f}:${st.size}:${st.mtimeMs}`; });
    return this.step('program', digest(...stamps), (root) => {
      for (const f of files) {
        const dest = path.join(root, f);
        if (f !== source && fs.existsSync(dest)) continue;
        fs.mkdirSync(path.dirname(dest), { recursive: true });
        fs.copyFileSync(f, dest);
        fs.chmodSync(dest, fs.statSync(f).mode & 0o7777);
      }
    });
  }

  text(dest: string, data: string, mode = 0o644): this {
    return this.step('text', digest(dest, data, String(mode)), (root) => {
      fs.mkdirSync(path.dirname(path.join(root, dest)), { recursive: true });
      fs.writeFileSync(path.join(root, dest), data, { mode });
      fs.chmodSync(path.join(root, dest), mode);
    });
  }

  /** Units to mask (timers and services a test guest does not want). */
  mask(units: string[]): this {
    return this.step('mask', units.join(','), (root) => {
      for (const u of units) {
        const link = path.join(root, 'etc/systemd/system', u);
        fs.rmSync(link, { force: true });
        fs.symlinkSync('/dev/null', link);
      }
    });
  }

  private base(): Step[] {
    return [{
      key: `base:${digest(agentScript(AGENT_PORT), this.hostname)}`,
      apply: (root) => {
        fs.writeFileSync(path.join(root, 'etc/hostname'), `${this.hostname}\n`);
        fs.writeFileSync(path.join(root, 'etc/hosts'), `127.0.0.1 localhost\n127.0.1.1 ${this.hostname}\n`);
        fs.mkdirSync(path.join(root, 'usr/local/lib/guest-agent'), { recursive: true });
        fs.writeFileSync(path.join(root, 'usr/local/lib/guest-agent/agent'), agentScript(AGENT_PORT), { mode: 0o755 });
        fs.writeFileSync(path.join(root, 'etc/systemd/system', AGENT_UNIT), [
          '# The test harness\'s command agent (test/guest/channel.ts) on the virtio port l2tpd.agent.',
          '[Unit]', 'Description=Test command agent', '',
          '[Service]', 'ExecStart=/bin/sh /usr/local/lib/guest-agent/agent', 'Restart=always', 'RestartSec=200ms', '',
          '[Install]', 'WantedBy=multi-user.target', '',
        ].join('\n'));
        const wants = path.join(root, 'etc/systemd/system/multi-user.target.wants');
        fs.mkdirSync(wants, { recursive: true });
        fs.rmSync(path.join(wants, AGENT_UNIT), { force: true });
        fs.symlinkSync(`/etc/systemd/system/${AGENT_UNIT}`, path.join(wants, AGENT_UNIT));
      },
    }];
  }

  key(): string {
    // The rootfs's name is the digest of its inputs (its mtime changes with every use).
    return digest(path.basename(this.rootfs), String(fs.statSync(this.rootfs).size), ...[...this.base(), ...this.steps].map((s) => s.key));
  }

  /** The image (sparse, raw ext4) in cacheDir(); built when no image with these inputs exists. */
  build(): string {
    const file = path.join(cacheDir(), `debian-image-${this.key()}.img`);
    if (fs.existsSync(file)) { touch(file); return file; }
    const work = scratchDir('image');
    try {
      const root = path.join(work, 'root');
      fs.mkdirSync(root);
      run('tar', ['--numeric-owner', '--xattrs', '-C', root, '-xf', this.rootfs], 'extract the rootfs');
      for (const s of [...this.base(), ...this.steps]) s.apply(root);
      const used = Number(run('du', ['-sb', root], 'du').split(/\s/)[0]);
      // Room for the journal, the installed service's state and a test's files.
      const sizeMb = Math.ceil((used * 1.3) / (1 << 20)) + 512;
      run('mkfs.ext4', ['-q', '-F', '-L', 'root', '-d', root, `${file}.${process.pid}.tmp`, `${sizeMb}M`], 'mkfs.ext4 -d');
      fs.renameSync(`${file}.${process.pid}.tmp`, file);
    } finally {
      fs.rmSync(work, { recursive: true, force: true });
    }
    pruneImages(file);
    return file;
  }
}

/**
 * Images are large and every change of what goes in makes a new one: keep the one just built and
 * any used in the last hour (a concurrent run may be booting it); the week-long prune in
 * cacheDir() is too slow for these.
 */
function pruneImages(keep: string): void {
  const dir = path.dirname(keep);
  for (const f of fs.readdirSync(dir)) {
    const p = path.join(dir, f);
    if (!/^debian-image-.*\.img$/.test(f) || p === keep) continue;
    try { if (Date.now() - fs.statSync(p).mtimeMs > 3600 * 1000) fs.rmSync(p, { force: true }); } catch { /* removed meanwhile */ }
  }
}

/** A private, sparse copy of an image in `dir` (its writes survive a reboot; the cache stays clean). */
export function privateCopy(image: string, dir: string): string {
  const out = path.join(dir, 'disk.img');
  run('cp', ['--sparse=always', image, out], 'copy the image');
  return out;
}

/** The initramfs that mounts /dev/vda and hands over to systemd. */
export function debianInitramfs(kernel: GuestKernel): Initramfs {
  const img = new Initramfs().binary(BUSYBOX);
  for (const a of ['sh', 'mount', 'umount', 'insmod', 'sleep', 'mkdir', 'switch_root', 'poweroff', 'echo', 'cat']) img.symlink(`/bin/${a}`, 'busybox');
  img.modules(kernel, INITRAMFS_MODULES);
  img.text('/etc/modules.load', img.moduleOrder.map((m) => `${m}\n`).join(''));
  img.text('/init', `#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
while read -r m; do insmod "/lib/modules/${kernel.release}/$m" || echo "init: insmod $m failed"; done </etc/modules.load
i=0
while [ ! -b /dev/vda ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done
mkdir -p /newroot
mount -t ext4 -o rw /dev/vda /newroot || { echo "init: cannot mount /dev/vda"; poweroff -f; }
umount /dev /sys /proc
exec switch_root /newroot /lib/systemd/systemd
`, 0o755);
  return img;
}

export interface DebianGuestOptions extends Omit<GuestOptions, 'kernel' | 'initrd' | 'drives'> {
  kernel: GuestKernel;
  /** The raw image to boot (written to: pass a privateCopy()). */
  disk: string;
}

export async function bootDebianGuest(o: DebianGuestOptions): Promise<Guest> {
  const initrd = debianInitramfs(o.kernel).write(cacheDir());
  return Guest.boot({
    ...o,
    kernel: o.kernel.bootImage(cacheDir()),
    initrd,
    drives: [{ file: o.disk }],
    memoryMb: o.memoryMb ?? 1024,
    append: ['rdinit=/init', 'quiet', 'systemd.show_status=error', ...(o.append ?? [])],
    bootTimeoutMs: o.bootTimeoutMs ?? 180000,
  });
}
