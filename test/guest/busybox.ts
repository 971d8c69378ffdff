/**
 * The smallest guest kind: Debian's kernel with an initramfs of busybox plus chosen host programs
 * and modules. busybox init runs /etc/init.d/rcS (mounts, modules, the caller's rc) and keeps the
 * command agent running. Its shell prefers its own applets to $PATH, so call host programs by
 * their full path (`/usr/sbin/ip`, `/usr/bin/ping`).
 */
import { spawnSync } from 'node:child_process';
import { hasCommand } from '../helpers/netns.js';
import { cacheDir } from './cache.js';
import { agentScript } from './channel.js';
import { Guest, type GuestOptions } from './guest.js';
import { Initramfs } from './initramfs.js';
import { findGuestKernel, type GuestKernel } from './kernel.js';
import { AGENT_PORT, QEMU } from './qemu.js';

const BUSYBOX = '/bin/busybox';

/** Modules every busybox guest loads: PCI virtio, the NIC and the agent's serial port. */
const BASE_MODULES = ['virtio_pci', 'virtio_net', 'virtio_console'];

export interface BusyboxSpec {
  kernel: GuestKernel;
  /** Kernel modules to load at boot (their dependencies come along). */
  modules?: string[];
  /** Host programs copied to the same path, with their shared libraries. */
  programs?: string[];
  /** Shell run at the end of boot, before the agent starts. */
  rc?: string;
  hostname?: string;
  /**
   * The inittab command that runs (and respawns) the agent; default /sbin/guest-agent. A guest
   * that pivots into another root runs it there, e.g. `chroot /newroot /bin/sh /run/guest-agent`.
   */
  agentCommand?: string;
}

/** What a busybox guest needs from this host, or false when all of it is there. */
export function busyboxGuestUnavailable(programs: string[] = []): string | false {
  if (!hasCommand(QEMU)) return `${QEMU} is not installed (Debian package qemu-system-x86)`;
  const kernel = findGuestKernel();
  if (typeof kernel === 'string') return kernel;
  if (spawnSync(BUSYBOX, ['true']).status !== 0) return `${BUSYBOX} is missing (Debian package busybox-static)`;
  const missing = programs.filter((p) => spawnSync('test', ['-x', p]).status !== 0);
  if (missing.length) return `not installed: ${missing.join(', ')}`;
  return false;
}

/** The image for a spec; callers may add files before booting it. */
export function busyboxInitramfs(spec: BusyboxSpec): Initramfs {
  const img = new Initramfs().binary(BUSYBOX);
  for (const p of spec.programs ?? []) img.binary(p);
  const applets = spawnSync(BUSYBOX, ['--list'], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean);
  for (const a of applets) if (!img.has(`/bin/${a}`)) img.symlink(`/bin/${a}`, 'busybox');
  img.symlink('/sbin/init', '../bin/busybox');
  img.modules(spec.kernel, [...BASE_MODULES, ...(spec.modules ?? [])]);
  img.text('/etc/modules.load', img.moduleOrder.map((m) => `${m}\n`).join(''));
  img.text('/etc/passwd', 'root:x:0:0:root:/root:/bin/sh\n');
  img.text('/etc/group', 'root:x:0:\n');
  img.text('/etc/inittab', [
    '::sysinit:/etc/init.d/rcS',
    `::respawn:${spec.agentCommand ?? '/sbin/guest-agent'}`,
    '',
  ].join('\n'));
  img.text('/sbin/guest-agent', agentScript(AGENT_PORT), 0o755);
  img.text('/etc/init.d/rcS', `#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mount -t debugfs debugfs /sys/kernel/debug
while read -r m; do insmod "/lib/modules/${spec.kernel.release}/$m" || echo "rcS: insmod $m failed"; done </etc/modules.load
ip link set lo up
hostname ${spec.hostname ?? 'guest'}
${spec.rc ?? ''}
`, 0o755);
  return img;
}

export interface BusyboxGuestOptions extends BusyboxSpec, Omit<GuestOptions, 'kernel' | 'initrd'> {}

/** Build (or reuse) the image and boot it. */
export async function bootBusyboxGuest(o: BusyboxGuestOptions): Promise<Guest> {
  const initrd = busyboxInitramfs(o).write(cacheDir());
  return Guest.boot({ ...o, kernel: o.kernel.bootImage(cacheDir()), initrd, append: ['quiet', 'rdinit=/sbin/init', ...(o.append ?? [])] });
}
