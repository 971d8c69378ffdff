/**
 * The host-userspace guest kind: Debian's kernel, a busybox initramfs that mounts chosen host
 * directories read-only over virtio-9p (each with a tmpfs overlay, so the guest may write
 * without touching the host) into a fresh root, and the command agent running chrooted there.
 * The guest runs this host's own programs — node, iproute2, tcpdump, iperf3 — and a built
 * checkout at the same paths. It has no NIC: namespaces inside the guest carry all traffic.
 *
 * Only the directories asked for are shared (default /usr and /etc, plus `hostPaths`), not the
 * host's whole root: the guest sees the programs and the checkout it needs and nothing else.
 * On a merged-/usr host, /bin, /sbin, /lib and /lib64 are the host's symlinks into /usr.
 */
import fs from 'node:fs';
import path from 'node:path';
import { agentScript } from './channel.js';
import { busyboxGuestUnavailable, busyboxInitramfs, type BusyboxGuestOptions } from './busybox.js';
import { cacheDir } from './cache.js';
import { Guest } from './guest.js';
import type { Initramfs } from './initramfs.js';
import { findGuestKernel } from './kernel.js';
import { AGENT_PORT, type Share } from './qemu.js';

/** Directories every host-userspace guest gets: the programs and their configuration. */
export const BASE_HOST_PATHS = ['/usr', '/etc'];

/** What the guest kernel needs to mount the shares. */
const MOUNT_MODULES = ['9p', '9pnet_virtio', 'overlay'];

/** Top-level names a merged-/usr host has as symlinks into /usr. */
const ROOT_LINKS = ['bin', 'sbin', 'lib', 'lib64', 'libx32', 'lib32'];

/** Where the guest's root is assembled inside the initramfs. */
const NEWROOT = '/newroot';

/** Where copyIn's files sit in the initramfs until they are copied into the new root. */
const COPY_IN = '/copy-in';

/** 9p message size: large reads cut the round trips of a cold start (node, its modules). */
const MSIZE = 512 * 1024;

export interface HostRootOptions extends Omit<BusyboxGuestOptions, 'agentCommand' | 'shares'> {
  /** Host directories shared read-only at the same path, besides BASE_HOST_PATHS. */
  hostPaths?: string[];
  /**
   * Host files or directories copied into the guest's memory at the same path. Over 9p every
   * open, failed lookup and directory read is a round trip to QEMU (3-4 s for `find` over 240
   * files under TCG here), so a tree a program stats and opens file by file — node's module
   * resolution — loads several times faster from RAM. Best outside the shares (a copy inside
   * one lands in its overlay, whose lookups still reach 9p). Symlinks are kept as symlinks;
   * see checkoutRuntime() for a built checkout.
   */
  copyIn?: string[];
  /**
   * Shell run inside the new root (chrooted, with the host's programs) after it is mounted and
   * before the agent starts. `rc` still runs in the initramfs, before the mounts.
   */
  rootRc?: string;
}

/** What a host-userspace guest needs from this host, or false when all of it is there. */
export function hostRootGuestUnavailable(hostPaths: string[] = []): string | false {
  const basic = busyboxGuestUnavailable();
  if (basic) return basic;
  const kernel = findGuestKernel();
  if (typeof kernel === 'string') return kernel;
  try { kernel.loadOrder(MOUNT_MODULES); } catch (e) { return (e as Error).message; }
  const missing = [...BASE_HOST_PATHS, ...hostPaths].filter((p) => !fs.existsSync(p));
  if (missing.length) return `not on this host: ${missing.join(', ')}`;
  return false;
}

/** The shares for a list of host directories: one 9p device each, tags h0, h1, … */
export function hostShares(hostPaths: string[]): Share[] {
  const paths = [...new Set([...BASE_HOST_PATHS, ...hostPaths].map((p) => path.resolve(p)))];
  // A directory inside another shared one is already there.
  const outer = paths.filter((p) => !paths.some((q) => q !== p && (q === '/' || p.startsWith(`${q}/`))));
  return outer.map((p, i) => ({ tag: `h${i}`, path: p, readonly: true }));
}

/**
 * The initramfs shell that assembles the root: each share read-only under /run/ro/TAG, a tmpfs
 * overlay over it at its own path, the kernel filesystems, and the agent copied in.
 */
export function hostRootScript(shares: Share[], rootRc = ''): string {
  const links = ROOT_LINKS.flatMap((name) => {
    try { return [[name, fs.readlinkSync(`/${name}`)] as const]; } catch { return []; }
  });
  const lines = [
    `mkdir -p ${NEWROOT}`,
    `mount -t tmpfs -o mode=755 tmpfs ${NEWROOT}`,
    ...shares.flatMap((s) => [
      `mkdir -p /run/ro/${s.tag} /run/rw/${s.tag}/upper /run/rw/${s.tag}/work ${NEWROOT}${s.path}`,
      `mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=${MSIZE} ${s.tag} /run/ro/${s.tag} || echo "hostroot: 9p mount of ${s.path} failed"`,
      `mount -t overlay -o lowerdir=/run/ro/${s.tag},upperdir=/run/rw/${s.tag}/upper,workdir=/run/rw/${s.tag}/work overlay ${NEWROOT}${s.path} || echo "hostroot: overlay on ${s.path} failed"`,
    ]),
    ...links.map(([name, target]) => `[ -e ${NEWROOT}/${name} ] || ln -s ${target} ${NEWROOT}/${name}`),
    `mkdir -p ${['proc', 'sys', 'dev', 'tmp', 'run', 'root', 'var/tmp', 'var/lib'].map((d) => `${NEWROOT}/${d}`).join(' ')}`,
    `ln -s ../run ${NEWROOT}/var/run`,
    `mount -t proc proc ${NEWROOT}/proc`,
    `mount -t sysfs sysfs ${NEWROOT}/sys`,
    `mount -t debugfs debugfs ${NEWROOT}/sys/kernel/debug`,
    `mount -t devtmpfs devtmpfs ${NEWROOT}/dev`,
    `mkdir -p ${NEWROOT}/dev/pts ${NEWROOT}/dev/shm`,
    `mount -t devpts devpts ${NEWROOT}/dev/pts`,
    `mount -t tmpfs tmpfs ${NEWROOT}/dev/shm`,
    `mount -t tmpfs -o mode=1777 tmpfs ${NEWROOT}/tmp`,
    `mount -t tmpfs -o mode=755 tmpfs ${NEWROOT}/run`,
    // Directly below the new root: `cp -a` of the tree copied in through the initramfs.
    `[ -d ${COPY_IN} ] && cp -a ${COPY_IN}/. ${NEWROOT}/`,
    `cp /bin/busybox ${NEWROOT}/run/busybox`,
    `cat >${NEWROOT}/run/guest-agent <<'L2TPD_GUEST_AGENT'`, agentScript(AGENT_PORT, { scriptShell: '/bin/sh' }).trimEnd(), 'L2TPD_GUEST_AGENT',
  ];
  if (rootRc) {
    lines.push(`cat >${NEWROOT}/run/guest-rc <<'L2TPD_GUEST_RC'`, rootRc, 'L2TPD_GUEST_RC',
      `chroot ${NEWROOT} /bin/sh /run/guest-rc || echo "hostroot: rootRc exited $?"`);
  }
  return `${lines.join('\n')}\n`;
}

/**
 * The agent's command line: chrooted, with a clean environment. The agent itself runs under
 * busybox (its plumbing — base64, wc, cat, setsid — are applets, no exec from 9p per command);
 * the scripts it runs get the host's /bin/sh, so `ip` is iproute2's.
 */
const AGENT_COMMAND = `chroot ${NEWROOT} /run/busybox env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 /run/busybox sh /run/guest-agent`;

/** Build (or reuse) the image and boot it. Default memory 1 GiB: the page cache holds the shares. */
export async function bootHostRootGuest(o: HostRootOptions): Promise<Guest> {
  const shares = hostShares(o.hostPaths ?? []);
  const spec = {
    ...o,
    modules: [...MOUNT_MODULES, ...(o.modules ?? [])],
    rc: `${o.rc ?? ''}\n${hostRootScript(shares, o.rootRc)}`,
    agentCommand: AGENT_COMMAND,
  };
  const img = busyboxInitramfs(spec);
  for (const p of o.copyIn ?? []) copyTree(img, p);
  const initrd = img.write(cacheDir());
  return Guest.boot({
    ...o, shares, memoryMb: o.memoryMb ?? 1024,
    kernel: o.kernel.bootImage(cacheDir()), initrd, append: ['quiet', 'rdinit=/sbin/init', ...(o.append ?? [])],
  });
}

/** A host file or tree into the image under COPY_IN, symlinks as symlinks. */
function copyTree(img: Initramfs, source: string): void {
  const st = fs.lstatSync(source);
  const dest = `${COPY_IN}${path.resolve(source)}`;
  if (st.isSymbolicLink()) img.symlink(dest, fs.readlinkSync(source));
  else if (st.isDirectory()) {
    img.dir(dest, st.mode & 0o7777);
    for (const name of fs.readdirSync(source)) copyTree(img, path.join(source, name));
  } else if (st.isFile()) img.file(source, dest);
}

/** Parts of a package a program never loads: types, source maps, docs. */
const NOT_LOADED = /\.(d\.ts|d\.mts|d\.cts|map|md|markdown|ts)$/i;

/**
 * What `node dist/…` of a built checkout loads: dist/, package.json, the addon's build output
 * and the production dependencies (package.json `dependencies`, followed through node_modules
 * the way node resolves them), without types, maps and docs. For HostRootOptions.copyIn.
 */
export function checkoutRuntime(root: string): string[] {
  const out = new Set<string>([path.join(root, 'dist'), path.join(root, 'package.json')]);
  const addon = path.join(root, 'native-bindings', 'build', 'Release');
  if (fs.existsSync(addon)) for (const f of fs.readdirSync(addon)) if (f.endsWith('.node')) out.add(path.join(addon, f));
  const visit = (pkgDir: string) => {
    const deps = Object.keys((JSON.parse(fs.readFileSync(path.join(pkgDir, 'package.json'), 'utf8')) as { dependencies?: Record<string, string> }).dependencies ?? {});
    for (const dep of deps) {
      // node's lookup: the package's own node_modules, then each parent's.
      for (let dir = pkgDir; ; dir = path.dirname(dir)) {
        const candidate = path.join(dir, 'node_modules', dep);
        if (fs.existsSync(path.join(candidate, 'package.json'))) {
          if (!out.has(candidate)) { out.add(candidate); visit(candidate); }
          break;
        }
        if (dir === root || dir === path.dirname(dir)) break;
      }
    }
  };
  visit(root);
  return [...out].flatMap((p) => listFiles(p));
}

function listFiles(p: string): string[] {
  const st = fs.lstatSync(p);
  if (!st.isDirectory()) return NOT_LOADED.test(p) ? [] : [p];
  return fs.readdirSync(p).flatMap((name) => (name === 'node_modules' ? [] : listFiles(path.join(p, name))));
}
