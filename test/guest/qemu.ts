/**
 * The QEMU command line for a guest, as data in and argv out (no side effects), so every guest
 * kind describes its machine the same way.
 */

export const QEMU = 'qemu-system-x86_64';

/** Name of the virtio-serial port the command agent talks on (the guest finds it by this name). */
export const AGENT_PORT = 'l2tpd.agent';

export type Accel = 'kvm' | 'tcg';

/**
 * A NIC backed by a tap QEMU creates (in the network namespace QEMU runs in). `offload: false`
 * turns off checksum and segmentation offload both ways, so every packet on the tap is complete
 * as a wire would carry it (captures show real checksums); default on.
 */
export interface Nic { tap: string; mac?: string; offload?: boolean }
/** A host directory handed to the guest over virtio-9p (mount -t 9p -o trans=virtio TAG DIR). */
export interface Share { tag: string; path: string; readonly?: boolean }
/** A disk image as a virtio-blk device (/dev/vda, /dev/vdb, ...). `snapshot` discards writes. */
export interface Drive { file: string; format?: 'raw' | 'qcow2'; readonly?: boolean; snapshot?: boolean }

export interface Machine {
  kernel: string;
  initrd?: string;
  /** Kernel command line words, after the console and panic words every guest gets. */
  append?: string[];
  memoryMb?: number;
  cpus?: number;
  accel: Accel;
  /** UNIX socket the host listens on; QEMU connects it to the agent's virtio-serial port. */
  agentSocket?: string;
  /** More virtio-serial ports, each to a UNIX socket the host listens on (the guest finds them by name). */
  ports?: { name: string; socket: string }[];
  nics?: Nic[];
  shares?: Share[];
  drives?: Drive[];
  /** More QEMU arguments, appended as given. */
  extra?: string[];
}

/** MAC for the n-th NIC of a guest: locally administered, stable. */
export function guestMac(n: number): string {
  return `52:54:00:12:34:${(0x56 + n).toString(16).padStart(2, '0')}`;
}

export function qemuArgv(m: Machine): string[] {
  const argv = [
    '-nodefaults', '-no-user-config', '-display', 'none', '-no-reboot',
    '-machine', 'pc', '-m', String(m.memoryMb ?? 512), '-smp', String(m.cpus ?? 1),
    ...(m.accel === 'kvm' ? ['-accel', 'kvm', '-cpu', 'host'] : ['-accel', 'tcg']),
    // The kernel console (ttyS0) on QEMU's stdout.
    '-chardev', 'stdio,id=console,signal=off', '-serial', 'chardev:console',
    '-kernel', m.kernel,
    ...(m.initrd ? ['-initrd', m.initrd] : []),
    // panic=-1 with -no-reboot: a guest that panics ends QEMU at once instead of hanging a test.
    '-append', ['console=ttyS0', 'panic=-1', ...(m.append ?? [])].join(' '),
  ];
  if (m.agentSocket || m.ports?.length) argv.push('-device', 'virtio-serial-pci,id=vser0');
  if (m.agentSocket) {
    argv.push('-chardev', `socket,id=agent,path=${m.agentSocket}`,
      '-device', `virtserialport,bus=vser0.0,chardev=agent,name=${AGENT_PORT}`);
  }
  (m.ports ?? []).forEach((p, i) => {
    argv.push('-chardev', `socket,id=port${i},path=${p.socket}`,
      '-device', `virtserialport,bus=vser0.0,chardev=port${i},name=${p.name}`);
  });
  (m.nics ?? []).forEach((nic, i) => {
    argv.push('-netdev', `tap,id=nic${i},ifname=${nic.tap},script=no,downscript=no`,
      '-device', `virtio-net-pci,netdev=nic${i},mac=${nic.mac ?? guestMac(i)}${nic.offload === false ? ',csum=off,guest_csum=off' : ''}`);
  });
  (m.shares ?? []).forEach((s, i) => {
    argv.push('-fsdev', `local,id=fs${i},path=${s.path},security_model=none${s.readonly ? ',readonly=on' : ''}`,
      '-device', `virtio-9p-pci,fsdev=fs${i},mount_tag=${s.tag}`);
  });
  (m.drives ?? []).forEach((d, i) => {
    argv.push('-drive', [`file=${d.file}`, `format=${d.format ?? 'raw'}`, 'if=virtio', `index=${i}`,
      ...(d.readonly ? ['readonly=on'] : []), ...(d.snapshot ? ['snapshot=on'] : [])].join(','));
  });
  argv.push(...(m.extra ?? []));
  return argv;
}
