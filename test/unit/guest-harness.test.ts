/**
 * The guest harness's pure parts (test/guest/), without booting anything: the QEMU command line,
 * the initramfs archive (listed by the system's cpio when it is installed), module load order
 * from a modules.dep, the command channel's framing over a real UNIX socket, and the Debian
 * mirror found in apt sources.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import t from 'tap';
import type tap from 'tap';
import { agentScript, CommandChannel } from '../guest/channel.js';
import { RELAY_JS, SocketForward } from '../guest/forward.js';
import { BASE_HOST_PATHS, checkoutRuntime, hostRootScript, hostShares } from '../guest/hostroot.js';
import { ROOT } from '../helpers/paths.js';
import { mirrorFromSources } from '../guest/debian.js';
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
    nics: [{ tap: 'kt0' }, { tap: 'kt1', mac: '02:00:00:00:00:09', offload: false }],
    shares: [{ tag: 'hostroot', path: '/', readonly: true }],
    drives: [{ file: '/tmp/root.img', snapshot: true }], extra: ['-S'],
  });
  t.same(after(kvm, '-accel'), ['kvm']);
  t.same(after(kvm, '-cpu'), ['host']);
  t.same(after(kvm, '-m'), ['1024']);
  t.same(after(kvm, '-smp'), ['2']);
  t.same(after(kvm, '-netdev'), ['tap,id=nic0,ifname=kt0,script=no,downscript=no', 'tap,id=nic1,ifname=kt1,script=no,downscript=no']);
  t.same(after(kvm, '-device').filter((d) => d.startsWith('virtio-net')),
    ['virtio-net-pci,netdev=nic0,mac=52:54:00:12:34:56', 'virtio-net-pci,netdev=nic1,mac=02:00:00:00:00:09,csum=off,guest_csum=off']);
  t.ok(kvm.includes('socket,id=agent,path=/tmp/x/agent.sock'));
  t.ok(kvm.includes('virtserialport,bus=vser0.0,chardev=agent,name=l2tpd.agent'));
  t.ok(kvm.includes('local,id=fs0,path=/,security_model=none,readonly=on'));
  t.ok(kvm.includes('virtio-9p-pci,fsdev=fs0,mount_tag=hostroot'));
  t.same(after(kvm, '-drive'), ['file=/tmp/root.img,format=raw,if=virtio,index=0,snapshot=on']);
  t.equal(kvm[kvm.length - 1], '-S', 'extra arguments last');
});

t.test('qemuArgv: more virtio-serial ports, with or without the agent', async (t) => {
  const both = qemuArgv({ kernel: '/k', accel: 'tcg', agentSocket: '/d/agent.sock', ports: [{ name: 'l2tpd.fwd', socket: '/d/p0.sock' }] });
  t.equal(both.filter((a) => a === 'virtio-serial-pci,id=vser0').length, 1, 'one virtio-serial bus');
  t.ok(both.includes('socket,id=port0,path=/d/p0.sock'));
  t.ok(both.includes('virtserialport,bus=vser0.0,chardev=port0,name=l2tpd.fwd'));
  t.ok(both.includes('virtserialport,bus=vser0.0,chardev=agent,name=l2tpd.agent'), 'the agent port as before');
  const alone = qemuArgv({ kernel: '/k', accel: 'tcg', ports: [{ name: 'x', socket: '/d/x.sock' }] });
  t.ok(alone.includes('virtio-serial-pci,id=vser0'), 'the bus without an agent');
  t.notOk(alone.some((a) => a.includes('chardev=agent')));
});

t.test('host-userspace guest: shares, the root it assembles, the runtime it copies in', async (t) => {
  t.same(BASE_HOST_PATHS, ['/usr', '/etc']);
  t.same(hostShares(['/work/x', '/usr/lib', '/work/x/dist', '/work/x/']), [
    { tag: 'h0', path: '/usr', readonly: true }, { tag: 'h1', path: '/etc', readonly: true }, { tag: 'h2', path: '/work/x', readonly: true },
  ], 'one share per outermost directory, read-only, tags in order');
  t.same(hostShares(['/']).map((s) => s.path), ['/'], 'the whole root covers everything');
  const script = hostRootScript(hostShares(['/work/x']), 'echo rc-in-root');
  t.match(script, /mount -t 9p -o trans=virtio,version=9p2000\.L,ro,cache=loose,msize=\d+ h2 \/run\/ro\/h2/);
  t.match(script, /mount -t overlay -o lowerdir=\/run\/ro\/h2,upperdir=\/run\/rw\/h2\/upper,workdir=\/run\/rw\/h2\/work overlay \/newroot\/work\/x/);
  t.match(script, /cp -a \/copy-in\/\. \/newroot\//, 'copied-in files land in the new root');
  t.ok(script.includes(agentScript('l2tpd.agent', { scriptShell: '/bin/sh' }).trimEnd()), 'the agent, handing scripts to the host\'s /bin/sh');
  t.match(script, /chroot \/newroot \/bin\/sh \/run\/guest-rc/, 'rootRc runs inside the new root');
  t.match(agentScript('p', { scriptShell: '/bin/sh' }), /setsid \/bin\/sh "\$dir\/\$1\.sh"/);
  t.match(agentScript('p'), /setsid sh "\$dir\/\$1\.sh"/, 'default shell unchanged');

  const files = checkoutRuntime(ROOT).map((f) => path.relative(ROOT, f));
  for (const want of ['dist/daemon/main.js', 'dist/cli/main.js', 'package.json', 'node_modules/pino/package.json', 'node_modules/commander/package.json']) {
    t.ok(files.includes(want), `runtime has ${want}`);
  }
  t.ok(files.some((f) => f.startsWith('native-bindings/build/Release/') && f.endsWith('.node')), 'the addon');
  t.ok(files.some((f) => f.startsWith('node_modules/netlink/prebuilds/linux-x64/')), 'a dependency\'s prebuilt addon');
  t.ok(files.some((f) => f.startsWith('node_modules/sonic-boom/')), 'dependencies of dependencies');
  t.notOk(files.some((f) => f.startsWith('node_modules/tap/') || f.startsWith('node_modules/typescript/')), 'no dev dependencies');
  t.notOk(files.some((f) => /\.(map|d\.ts)$/.test(f)), 'no maps or type declarations');
});

t.test('SocketForward: connections framed over one port', async (t) => {
  const dir = shortDir(t);
  // The test plays the guest's relay on the other end of the "port".
  const portPath = path.join(dir, 'port.sock');
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(portPath, r));
  const relaySide = new Promise<net.Socket>((r) => srv.once('connection', r));
  const hostPort = net.connect(portPath);
  const relay = await relaySide;
  t.teardown(() => { hostPort.destroy(); relay.destroy(); srv.close(); });
  const frame = (type: number, id: number, payload = Buffer.alloc(0)) => {
    const h = Buffer.alloc(9); h[0] = type; h.writeUInt32BE(id, 1); h.writeUInt32BE(payload.length, 5);
    return Buffer.concat([h, payload]);
  };
  let got = Buffer.alloc(0);
  relay.on('data', (d: Buffer) => { got = Buffer.concat([got, d]); });
  const frames = async (n: number) => {
    for (let i = 0; i < 200; i++) {
      const out: Array<{ type: number; id: number; payload: string }> = [];
      let b = got;
      while (b.length >= 9 && b.length >= 9 + b.readUInt32BE(5)) {
        const len = b.readUInt32BE(5);
        out.push({ type: b[0], id: b.readUInt32BE(1), payload: b.subarray(9, 9 + len).toString() });
        b = b.subarray(9 + len);
      }
      if (out.length >= n) { got = b; return out; }
      await new Promise((r) => setTimeout(r, 10));
    }
    throw new Error('frames did not arrive');
  };

  const { fwd, ready } = SocketForward.over(hostPort);
  t.teardown(() => fwd.close());
  relay.write(frame(0, 0));
  await ready;
  const hostPath = path.join(dir, 'fwd.sock');
  await fwd.listen(hostPath, '/run/guest/api.sock');
  const client = net.connect(hostPath);
  let reply = '';
  client.on('data', (d: Buffer) => { reply += d.toString(); });
  const closed = new Promise<void>((r) => client.on('close', () => r()));
  client.write('GET /v1/status');
  const [open, data] = await frames(2);
  t.same(open, { type: 1, id: open.id, payload: '/run/guest/api.sock' }, 'OPEN with the guest path');
  t.same(data, { type: 2, id: open.id, payload: 'GET /v1/status' }, 'DATA on that connection');
  // The answer arrives split across writes, then the guest side finishes.
  const body = frame(2, open.id, Buffer.from('HTTP/1.1 200 OK\r\n\r\n{}'));
  relay.write(body.subarray(0, 5));
  relay.write(Buffer.concat([body.subarray(5), frame(3, open.id)]));
  client.end();
  await closed;
  t.equal(reply, 'HTTP/1.1 200 OK\r\n\r\n{}', 'DATA delivered whole to the host client');
  const [end, close] = await frames(2);
  t.same([end.type, close.type], [3, 4], 'host client END, then CLOSE');

  // A guest path nobody listens on: FAIL resets the host client.
  const refused = net.connect(hostPath);
  const refusedClosed = new Promise<void>((r) => refused.on('close', () => r()));
  refused.on('error', () => undefined);
  const [open2] = await frames(1);
  relay.write(frame(5, open2.id, Buffer.from('ENOENT')));
  await refusedClosed;
  t.pass('FAIL closes the host connection');
  t.match(RELAY_JS, /require\('net'\)/, 'the relay needs nothing but node');
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

t.test('mirrorFromSources: the Debian mirror in apt sources, one-line or deb822', async (t) => {
  const deb822 = [
    'Types: deb',
    '# http://snapshot.debian.org/archive/debian/20250520T000000Z',
    'URIs: http://deb.debian.org/debian',
    'Suites: bookworm bookworm-updates',
    'Components: main',
    '',
    'Types: deb',
    'URIs: http://deb.debian.org/debian-security',
    'Suites: bookworm-security',
    'Components: main',
  ].join('\n');
  t.equal(mirrorFromSources([{ path: '/etc/apt/sources.list.d/debian.sources', text: deb822 }]), 'http://deb.debian.org/debian');
  t.equal(mirrorFromSources([{ path: '/etc/apt/sources.list', text: [
    '# deb http://old.example/debian bookworm main',
    'deb http://security.debian.org/debian-security bookworm-security main',
    'deb-src http://src.example/debian bookworm main',
    'deb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian bookworm main contrib',
  ].join('\n') }]), 'http://mirror.example/debian', 'comments, deb-src and security skipped; options read past');
  t.equal(mirrorFromSources([{ path: '/etc/apt/sources.list.d/x.sources', text: 'Types: deb\nEnabled: no\nURIs: http://off.example/\nSuites: bookworm\nComponents: main\n' },
    { path: '/etc/apt/sources.list.d/y.list', text: 'deb http://contrib-only.example/debian bookworm contrib\n' }]), undefined,
  'a disabled stanza and a source without main give nothing');
});
