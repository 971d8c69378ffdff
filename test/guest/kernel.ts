/**
 * The guest kernel: Debian's linux-image-amd64 as installed on this host (/boot/vmlinuz-<release>
 * and /lib/modules/<release>), and the order its modules load in (modules.dep).
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

export class GuestKernel {
  private dep?: Map<string, { path: string; deps: string[] }>;
  private builtin?: Set<string>;

  constructor(readonly release: string, readonly vmlinuz: string, readonly modulesDir: string) {}

  /**
   * What QEMU should boot: the uncompressed kernel inside vmlinuz when it can be extracted and
   * has a PVH entry point, otherwise vmlinuz itself. Under TCG the kernel's own decompressor is
   * the slowest part of a boot (18 s of 30 measured here for an xz-compressed 6.1); xz on the
   * host does it in about two seconds, once: the result is kept in `dir`, named by vmlinuz's
   * size and mtime.
   */
  bootImage(dir: string): string {
    const st = fs.statSync(this.vmlinuz);
    const key = createHash('sha256').update(`${this.vmlinuz}:${st.size}:${st.mtimeMs}`).digest('hex').slice(0, 16);
    const out = path.join(dir, `vmlinux-${this.release}-${key}`);
    if (fs.existsSync(out)) return out;
    const elf = extractVmlinux(fs.readFileSync(this.vmlinuz));
    if (!elf || !hasPvhEntry(elf)) return this.vmlinuz;
    fs.writeFileSync(`${out}.${process.pid}.tmp`, elf, { mode: 0o600 });
    fs.renameSync(`${out}.${process.pid}.tmp`, out);
    return out;
  }

  /** Module name as the kernel spells it: basename without .ko[.xz|.zst|.gz], '-' read as '_'. */
  static moduleName(file: string): string {
    return path.basename(file).replace(/\.ko(\.(xz|zst|gz))?$/, '').replace(/-/g, '_');
  }

  private load(): void {
    if (this.dep) return;
    this.dep = new Map();
    for (const line of fs.readFileSync(path.join(this.modulesDir, 'modules.dep'), 'utf8').split('\n')) {
      const m = /^([^:]+):\s*(.*)$/.exec(line);
      if (!m) continue;
      this.dep.set(GuestKernel.moduleName(m[1]), { path: m[1], deps: m[2].split(/\s+/).filter(Boolean) });
    }
    const builtinFile = path.join(this.modulesDir, 'modules.builtin');
    this.builtin = new Set(fs.existsSync(builtinFile)
      ? fs.readFileSync(builtinFile, 'utf8').split('\n').filter(Boolean).map((l) => GuestKernel.moduleName(l)) : []);
  }

  isBuiltin(name: string): boolean {
    this.load();
    return this.builtin!.has(name.replace(/-/g, '_'));
  }

  /**
   * Paths (relative to modulesDir) of the named modules and everything they need, each after
   * its dependencies. Built-in modules are left out; an unknown name throws.
   */
  loadOrder(names: string[]): string[] {
    this.load();
    const order: string[] = [];
    const visit = (name: string) => {
      const key = name.replace(/-/g, '_');
      if (this.builtin!.has(key)) return;
      const m = this.dep!.get(key);
      if (!m) throw new Error(`kernel ${this.release} has no module ${name} (neither in modules.dep nor built in)`);
      if (order.includes(m.path)) return;
      // modules.dep lists the whole closure, the deepest dependency last (modprobe loads it first).
      for (const d of [...m.deps].reverse()) visit(GuestKernel.moduleName(d));
      order.push(m.path);
    };
    for (const n of names) visit(n);
    return order;
  }
}

/**
 * The newest installed kernel that has its modules, or a reason why there is none.
 * L2TPD_GUEST_KERNEL=/boot/vmlinuz-<release> picks one.
 */
export function findGuestKernel(): GuestKernel | string {
  const wanted = process.env.L2TPD_GUEST_KERNEL;
  const candidates = wanted ? [wanted]
    : (fs.existsSync('/boot') ? fs.readdirSync('/boot') : []).filter((f) => /^vmlinuz-/.test(f))
      .map((f) => path.join('/boot', f)).sort(compareReleases).reverse();
  for (const vmlinuz of candidates) {
    const release = path.basename(vmlinuz).replace(/^vmlinuz-/, '');
    const modulesDir = path.join('/lib/modules', release);
    try {
      fs.accessSync(vmlinuz, fs.constants.R_OK);
      fs.accessSync(path.join(modulesDir, 'modules.dep'), fs.constants.R_OK);
    } catch { continue; }
    return new GuestKernel(release, vmlinuz, modulesDir);
  }
  return wanted
    ? `L2TPD_GUEST_KERNEL=${wanted}: not readable, or /lib/modules/<release>/modules.dep missing`
    : 'no readable /boot/vmlinuz-* with /lib/modules/<release>/modules.dep (Debian package linux-image-amd64)';
}

function compareReleases(a: string, b: string): number {
  return a.localeCompare(b, 'en', { numeric: true });
}

/** Compressed payloads a bzImage may carry, with the tool that inflates each. */
const PAYLOADS: { magic: Buffer; tool: string[] }[] = [
  { magic: Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]), tool: ['xz', '-dc', '--single-stream'] },
  { magic: Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), tool: ['zstd', '-dcq'] },
  { magic: Buffer.from([0x1f, 0x8b, 0x08]), tool: ['gzip', '-dc'] },
];
const ELF_MAGIC = Buffer.from([0x7f, 0x45, 0x4c, 0x46]);

/** The ELF kernel inside a bzImage (as the kernel's scripts/extract-vmlinux finds it), or undefined. */
export function extractVmlinux(bzImage: Buffer): Buffer | undefined {
  for (const { magic, tool } of PAYLOADS) {
    for (let at = bzImage.indexOf(magic); at >= 0; at = bzImage.indexOf(magic, at + 1)) {
      // Trailing bytes after the stream make the tools complain; what they inflated is kept.
      const r = spawnSync(tool[0], tool.slice(1), { input: bzImage.subarray(at), maxBuffer: 1 << 30 });
      if (r.error) break;
      if (r.stdout?.length > 4 && r.stdout.subarray(0, 4).equals(ELF_MAGIC)) return r.stdout;
    }
  }
  return undefined;
}

/** Does an ELF64 kernel carry XEN_ELFNOTE_PHYS32_ENTRY (18), the entry QEMU's PVH boot needs? */
export function hasPvhEntry(elf: Buffer): boolean {
  if (elf.length < 64 || !elf.subarray(0, 4).equals(ELF_MAGIC) || elf[4] !== 2) return false;
  const phoff = Number(elf.readBigUInt64LE(0x20));
  const phentsize = elf.readUInt16LE(0x36);
  const phnum = elf.readUInt16LE(0x38);
  for (let i = 0; i < phnum; i++) {
    const ph = phoff + i * phentsize;
    if (ph + 0x28 > elf.length || elf.readUInt32LE(ph) !== 4 /* PT_NOTE */) continue;
    const start = Number(elf.readBigUInt64LE(ph + 0x08));
    const end = Math.min(elf.length, start + Number(elf.readBigUInt64LE(ph + 0x20)));
    for (let n = start; n + 12 <= end;) {
      const namesz = elf.readUInt32LE(n);
      const descsz = elf.readUInt32LE(n + 4);
      const type = elf.readUInt32LE(n + 8);
      const name = elf.subarray(n + 12, n + 12 + namesz).toString('latin1');
      if (name === 'Xen\0' && type === 18) return true;
      n += 12 + align4(namesz) + align4(descsz);
    }
  }
  return false;
}

function align4(n: number): number { return (n + 3) & ~3; }
