/**
 * The guest harness's pure parts (test/guest/), without booting anything: the QEMU command line,
 * the initramfs archive (listed by the system's cpio when it is installed), module load order
 * from a modules.dep, and the command channel's framing over a real UNIX socket.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import t from 'tap';
import type tap from 'tap';
import { CommandChannel } from '../guest/channel.js';
import { Initramfs } from '../guest/initramfs.js';
import { extractVmlinux, GuestKernel, hasPvhEntry } from '../guest/kernel.js';
import { qemuArgv } from '../guest/qemu.js';
import { hasCommand } from '../helpers/netns.js';
import { shortDir } from '../helpers/tmp.js';

const after = (argv: string[], flag: string) => argv.filter((_, i) => argv[i - 1] === flag);

t.test('qemuArgv', async (t) => {
  const tcg = qemuArgv({ kernel: '/boot/k', initrd: '/tmp/i.cpio', accel: 'tcg', append: ['quiet'] });
  t.same(after(tcg, '-accel'), ['tcg']);
  t.notOk(tcg.includes('-cpu'), 'TCG keeps the default CPU model');
  t.same(after(tcg, '-append'), ['console=ttyS0 panic=-1 quiet']);
  t.same(after(tcg, '-initrd'), ['/tmp/i.cpio']);
  t.ok(tcg.includes('-no-reboot'), 'a panicking guest ends QEMU');
  t.notOk(tcg.some((a) => a.includes('virtserialport')), 'no agent port unless asked');

  const kvm = qemuArgv({
    kernel: '/boot/k', accel: 'kvm', memoryMb: 1024, cpus: 2, agentSocket: '/tmp/x/agent.sock',
    nics: [{ tap: 'kt0' }, { tap: 'kt1', mac: '02:00:00:00:00:09' }],
    shares: [{ tag: 'hostroot', path: '/', readonly: true }],
    drives: [{ file: '/tmp/root.img', snapshot: true }], extra: ['-S'],
  });
  t.same(after(kvm, '-accel'), ['kvm']);
  t.same(after(kvm, '-cpu'), ['host']);
  t.same(after(kvm, '-m'), ['1024']);
  t.same(after(kvm, '-smp'), ['2']);
  t.same(after(kvm, '-netdev'), ['tap,id=nic0,ifname=kt0,script=no,downscript=no', 'tap,id=nic1,ifname=kt1,script=no,downscript=no']);
  t.same(after(kvm, '-device').filter((d) => d.startsWith('virtio-net')),
    ['virtio-net-pci,netdev=nic0,mac=52:54:00:12:34:56', 'virtio-net-pci,netdev=nic1,mac=02:00:00:00:00:09']);
  t.ok(kvm.includes('socket,id=agent,path=/tmp/x/agent.sock'));
  t.ok(kvm.includes('virtserialport,bus=vser0.0,chardev=agent,name=l2tpd.agent'));
  t.ok(kvm.includes('local,id=fs0,path=/,security_model=none,readonly=on'));
  t.ok(kvm.includes('virtio-9p-pci,fsdev=fs0,mount_tag=hostroot'));
  t.same(after(kvm, '-drive'), ['file=/tmp/root.img,format=raw,if=virtio,index=0,snapshot=on']);
  t.equal(kvm[kvm.length - 1], '-S', 'extra arguments last');
});

t.test('Initramfs: newc archive, parents first, key follows the inputs', async (t) => {
  const dir = shortDir(t, { 'tool.sh': '#!/bin/sh\necho tool\n' });
  fs.chmodSync(path.join(dir, 'tool.sh'), 0o755);
  const img = new Initramfs()
    .file(path.join(dir, 'tool.sh'), '/usr/local/bin/tool')
    .text('/etc/motd', 'hello\n')
    .symlink('/bin/sh', 'busybox');
  const key = img.key();
  t.equal(new Initramfs().file(path.join(dir, 'tool.sh'), '/usr/local/bin/tool').text('/etc/motd', 'hello\n').symlink('/bin/sh', 'busybox').key(),
    key, 'same inputs, same key');
  t.not(new Initramfs().file(path.join(dir, 'tool.sh'), '/usr/local/bin/tool').text('/etc/motd', 'hello!\n').symlink('/bin/sh', 'busybox').key(),
    key, 'changed text, new key');
  t.throws(() => img.text('/etc/motd/x', 'y'), /already a text/, 'a file is not a directory');

  const archive = img.build();
  t.equal(archive.length % 4, 0, 'padded to 4 bytes');
  t.equal(archive.subarray(0, 6).toString(), '070701', 'newc magic');
  const file = img.write(dir);
  t.equal(path.basename(file), `initramfs-${key}.cpio`);
  t.same(fs.readFileSync(file), archive, 'written as built');
  const mtime = fs.statSync(file).mtimeMs;
  t.equal(img.write(dir), file, 'reused while unchanged');
  t.ok(fs.statSync(file).mtimeMs >= mtime, 'reuse refreshes the age the cache prunes by');
  t.same(fs.readdirSync(dir).filter((f) => f.endsWith('.tmp')), [], 'no temporary file left');
});

t.test('Initramfs: the archive as the system cpio reads it', { skip: !hasCommand('cpio') && 'cpio is not installed' }, async (t) => {
  const dir = shortDir(t, { 'tool.sh': '#!/bin/sh\necho tool\n' });
  fs.chmodSync(path.join(dir, 'tool.sh'), 0o755);
  const archive = new Initramfs().file(path.join(dir, 'tool.sh'), '/usr/local/bin/tool').symlink('/bin/sh', 'busybox').build();
  const listed = spawnSync('cpio', ['-t', '-v', '--quiet'], { input: archive, encoding: 'utf8' });
  t.equal(listed.status, 0, `cpio -t reads it: ${listed.stderr}`);
  const names = listed.stdout.split('\n').filter(Boolean).map((l) => l.split(/\s+/).slice(8).join(' '));
  t.ok(names.indexOf('usr/local') < names.indexOf('usr/local/bin') && names.indexOf('usr/local/bin') < names.indexOf('usr/local/bin/tool'), 'parents before children');
  t.ok(names.includes('bin/sh -> busybox'), 'symlink');
  const lines = listed.stdout.split('\n');
  t.match(lines.find((l) => l.endsWith(' usr/local/bin/tool')), /^-rwxr-xr-x/, 'file mode kept');
  t.match(lines.find((l) => l.endsWith(' dev/console')), /^crw-------.*\s5,\s+1\s/, 'a console for init: character device 5,1');
  const extracted = spawnSync('cpio', ['-i', '--quiet', '--to-stdout', 'usr/local/bin/tool'], { input: archive });
  t.equal(extracted.stdout.toString(), '#!/bin/sh\necho tool\n', 'file content');
});

t.test('GuestKernel.loadOrder: dependencies first, built-ins left out', async (t) => {
  const dir = shortDir(t, {
    'modules.dep': [
      'kernel/net/l2tp/l2tp_eth.ko: kernel/net/l2tp/l2tp_netlink.ko kernel/net/l2tp/l2tp_core.ko kernel/net/ipv4/udp_tunnel.ko',
      'kernel/net/l2tp/l2tp_netlink.ko: kernel/net/l2tp/l2tp_core.ko kernel/net/ipv4/udp_tunnel.ko',
      'kernel/net/l2tp/l2tp_core.ko: kernel/net/ipv4/udp_tunnel.ko',
      'kernel/net/ipv4/udp_tunnel.ko:',
      'kernel/drivers/net/virtio-net.ko.xz:',
      '',
    ].join('\n'),
    'modules.builtin': 'kernel/net/ipv6/ipv6.ko\n',
  });
  const k = new GuestKernel('9.9.9-test', '/boot/vmlinuz-9.9.9-test', dir);
  t.same(k.loadOrder(['l2tp_eth', 'ipv6', 'l2tp_core']), [
    'kernel/net/ipv4/udp_tunnel.ko', 'kernel/net/l2tp/l2tp_core.ko', 'kernel/net/l2tp/l2tp_netlink.ko', 'kernel/net/l2tp/l2tp_eth.ko',
  ]);
  t.same(k.loadOrder(['virtio_net']), ['kernel/drivers/net/virtio-net.ko.xz'], "'-' and '_' name the same module; compressed found");
  t.ok(k.isBuiltin('ipv6'));
  t.throws(() => k.loadOrder(['nosuch']), /kernel 9\.9\.9-test has no module nosuch/);
});

/** A CommandChannel on one end of a real UNIX socket, the test playing the agent on the other. */
async function channelPair(t: tap.Test): Promise<{ ch: CommandChannel; agent: net.Socket; lines: () => Promise<string> }> {
  const dir = shortDir(t);
  const server = net.createServer();
  const sockPath = path.join(dir, 's');
  await new Promise<void>((r) => server.listen(sockPath, r));
  const accepted = new Promise<net.Socket>((r) => server.once('connection', r));
  const ch = new CommandChannel(net.connect(sockPath));
  const agent = await accepted;
  server.close();
  t.teardown(() => { ch.close(); agent.destroy(); });
  let got = '';
  agent.on('data', (d: Buffer) => { got += d.toString(); });
  /** The next line the channel sent (bounded wait). */
  const lines = async () => {
    for (let i = 0; i < 200 && !got.includes('\n'); i++) await new Promise((r) => setTimeout(r, 10));
    const end = got.indexOf('\n');
    if (end < 0) throw new Error('the channel sent no line');
    const line = got.slice(0, end);
    got = got.slice(end + 1);
    return line;
  };
  return { ch, agent, lines };
}

t.test('CommandChannel framing', async (t) => {
  const { ch, agent, lines } = await channelPair(t);
  let ready = false;
  const whenReady = ch.whenReady().then(() => { ready = true; });
  agent.write('boot noise\n');
  await new Promise((r) => setTimeout(r, 20));
  t.notOk(ready, 'not ready before the agent says so');
  agent.write('\n@@AGENT READY\n');
  await whenReady;

  const p1 = ch.run('echo hi', { input: 'in' });
  const p2 = ch.run('printf x');
  const [op1, id1, script1, input1] = (await lines()).split(' ');
  const [, id2, , input2] = (await lines()).split(' ');
  t.equal(op1, 'R');
  t.equal(Buffer.from(script1, 'base64').toString(), 'echo hi');
  t.equal(Buffer.from(input1, 'base64').toString(), 'in');
  t.equal(input2, '-', 'no stdin');
  // Replies in completion order, split at awkward places, binary bodies that look like headers.
  const body2 = Buffer.concat([Buffer.from('\n@@AGENT REPLY 99 0 1 0\n'), Buffer.from([0, 255])]);
  const reply2 = Buffer.concat([Buffer.from(`\n@@AGENT REPLY ${id2} 3 ${body2.length} 4\n`), body2, Buffer.from('err\n')]);
  const reply1 = Buffer.from(`\n@@AGENT REPLY ${id1} 0 3 0\nhi\n`);
  const all = Buffer.concat([reply2, reply1]);
  const cuts = [0, 5, 17, 30, all.length];
  for (let i = 1; i < cuts.length; i++) {
    agent.write(all.subarray(cuts[i - 1], cuts[i]));
    await new Promise((r) => setTimeout(r, 5));
  }
  const r2 = await p2;
  t.equal(r2.status, 3);
  t.same(r2.raw.stdout, body2, 'stdout byte for byte, a header inside a body is data');
  t.equal(r2.stderr, 'err\n');
  const r1 = await p1;
  t.same([r1.status, r1.stdout, r1.stderr], [0, 'hi\n', '']);
  t.equal(ch.noise, 'boot noise\n', 'bytes outside replies are kept aside');

  // A timeout kills the script's process group in the guest and rejects.
  const slow = ch.run('sleep 100', { timeoutMs: 50 });
  const [, idSlow] = (await lines()).split(' ');
  await t.rejects(slow, /timed out after 50 ms: sleep 100/);
  t.equal(await lines(), `K ${idSlow}`, 'kill request sent');
  agent.write(`\n@@AGENT REPLY ${idSlow} 137 0 0\n`); // late reply: ignored

  // An agent that restarts has lost what was running.
  const lost = ch.run('sleep 1');
  await lines();
  agent.write('\n@@AGENT READY\n');
  await t.rejects(lost, /restarted while commands were running/);

  const gone = ch.run('true');
  agent.destroy();
  await t.rejects(gone, /closed/);
  await t.rejects(ch.run('true'), /closed/, 'a closed channel refuses new commands');
});

/** A minimal ELF64 whose only program header is a PT_NOTE holding one note. */
function elfWithNote(name: string, type: number): Buffer {
  const nameBuf = Buffer.alloc(Math.ceil((name.length + 1) / 4) * 4);
  nameBuf.write(name, 'latin1');
  const note = Buffer.concat([Buffer.from(new Uint32Array([name.length + 1, 4, type]).buffer), nameBuf, Buffer.alloc(4)]);
  const elf = Buffer.alloc(64 + 56 + note.length);
  Buffer.from([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1]).copy(elf);
  elf.writeBigUInt64LE(64n, 0x20); // e_phoff
  elf.writeUInt16LE(56, 0x36); // e_phentsize
  elf.writeUInt16LE(1, 0x38); // e_phnum
  elf.writeUInt32LE(4, 64); // PT_NOTE
  elf.writeBigUInt64LE(120n, 64 + 0x08); // p_offset
  elf.writeBigUInt64LE(BigInt(note.length), 64 + 0x20); // p_filesz
  note.copy(elf, 120);
  return elf;
}

t.test('hasPvhEntry: the entry QEMU needs to boot an ELF kernel', async (t) => {
  t.ok(hasPvhEntry(elfWithNote('Xen', 18)), 'XEN_ELFNOTE_PHYS32_ENTRY found');
  t.notOk(hasPvhEntry(elfWithNote('Xen', 17)), 'another Xen note is not it');
  t.notOk(hasPvhEntry(elfWithNote('GNU', 18)), 'nor a type 18 note of another owner');
  t.notOk(hasPvhEntry(Buffer.from('not an elf at all, but long enough to have a header of sixty-four bytes')), 'not ELF');
});

t.test('extractVmlinux', { skip: !hasCommand('xz') && 'xz is not installed' }, async (t) => {
  const payload = elfWithNote('Xen', 18);
  const xz = spawnSync('xz', ['-c', '--check=crc32'], { input: payload }).stdout;
  // A setup header in front, a stray magic that is not a stream, and trailing bytes after it.
  const bz = Buffer.concat([Buffer.alloc(512, 0x90), Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 1, 2]), xz, Buffer.alloc(64, 0xee)]);
  t.same(extractVmlinux(bz), payload, 'found past a false start, trailing bytes ignored');
  t.equal(extractVmlinux(Buffer.alloc(1024, 0x41)), undefined, 'nothing to extract');
});
