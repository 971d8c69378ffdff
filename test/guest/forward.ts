/**
 * UNIX sockets of the guest reached from the host: a host-side listener per guest socket,
 * every connection carried over one virtio-serial port (GuestOptions.ports) to a relay in the
 * guest that connects to the guest's socket. Host programs — l2tpctl, curl — then talk to a
 * daemon in the guest at host speed; under TCG one node start in the guest costs seconds.
 *
 * Needs node in the guest (a host-userspace guest, hostroot.ts). Frames, both ways:
 *   <type u8> <connection id u32be> <payload length u32be> <payload>
 * READY (guest → host, id 0) once the relay runs; OPEN (host → guest, payload: the guest path);
 * DATA; END (that side finished writing); CLOSE (gone); FAIL (guest → host: connect failed,
 * payload the errno code).
 *
 *   const guest = await bootHostRootGuest({ ..., ports: ['l2tpd.fwd'] });
 *   const fwd = await SocketForward.start(guest, 'l2tpd.fwd');
 *   await fwd.listen('/tmp/x/a.sock', '/run/a/l2tpd.sock');   // host path → guest path
 */
import fs from 'node:fs';
import net from 'node:net';
import type { Guest } from './guest.js';

const READY = 0, OPEN = 1, DATA = 2, END = 3, CLOSE = 4, FAIL = 5;
const HEADER = 9;

/** The guest side, a dependency-free node program: `node relay.js PORT_NAME`. */
export const RELAY_JS = `'use strict';
const fs = require('fs');
const net = require('net');
const name = process.argv[2];
let dev;
for (const d of fs.readdirSync('/sys/class/virtio-ports')) {
  if (fs.readFileSync('/sys/class/virtio-ports/' + d + '/name', 'utf8').trim() === name) dev = '/dev/' + d;
}
if (!dev) { console.error('relay: no virtio port ' + name); process.exit(1); }
const fd = fs.openSync(dev, 'r+');
const out = fs.createWriteStream(null, { fd, autoClose: false });
const input = fs.createReadStream(null, { fd, autoClose: false, highWaterMark: 65536 });
const conns = new Map();
function send(type, id, payload) {
  const body = payload || Buffer.alloc(0);
  const h = Buffer.alloc(${HEADER});
  h[0] = type; h.writeUInt32BE(id, 1); h.writeUInt32BE(body.length, 5);
  out.write(Buffer.concat([h, body]));
}
function handle(type, id, payload) {
  const c = conns.get(id);
  if (type === ${OPEN}) {
    const s = net.connect(payload.toString());
    conns.set(id, s);
    s.on('data', (d) => send(${DATA}, id, d));
    s.on('end', () => send(${END}, id));
    s.on('error', (e) => { if (conns.has(id)) { conns.delete(id); send(${FAIL}, id, Buffer.from(e.code || e.message)); } });
    s.on('close', () => { if (conns.delete(id)) send(${CLOSE}, id); });
  } else if (type === ${DATA}) { if (c) c.write(payload); }
  else if (type === ${END}) { if (c) c.end(); }
  else if (type === ${CLOSE}) { conns.delete(id); if (c) c.destroy(); }
}
let buf = Buffer.alloc(0);
input.on('data', (chunk) => {
  buf = Buffer.concat([buf, chunk]);
  while (buf.length >= ${HEADER}) {
    const len = buf.readUInt32BE(5);
    if (buf.length < ${HEADER} + len) break;
    handle(buf[0], buf.readUInt32BE(1), buf.subarray(${HEADER}, ${HEADER} + len));
    buf = buf.subarray(${HEADER} + len);
  }
});
input.on('end', () => process.exit(0));
send(${READY}, 0);
`;

export class SocketForward {
  private buf = Buffer.alloc(0);
  private nextId = 1;
  private readonly conns = new Map<number, net.Socket>();
  private readonly servers: net.Server[] = [];
  private ready!: () => void;
  private readonly whenReady = new Promise<void>((r) => { this.ready = r; });

  private constructor(private readonly port: net.Socket) {
    port.on('data', (d: Buffer) => { this.buf = Buffer.concat([this.buf, d]); this.parse(); });
    port.on('close', () => { for (const c of this.conns.values()) c.destroy(); this.conns.clear(); });
    port.on('error', () => undefined);
  }

  /** The host end over a connected port; `ready` resolves at the relay's READY frame. */
  static over(port: net.Socket): { fwd: SocketForward; ready: Promise<void> } {
    const fwd = new SocketForward(port);
    return { fwd, ready: fwd.whenReady };
  }

  /** Start the relay in the guest (node, from its own userspace) and wait until it answers. */
  static async start(guest: Guest, portName: string, timeoutMs = 120000): Promise<SocketForward> {
    const fwd = new SocketForward(await guest.port(portName));
    const dir = `/run/socket-relay-${portName}`;
    await guest.ok(`mkdir -p ${dir} && cat >${dir}/relay.js && { node ${dir}/relay.js ${portName} >${dir}/log 2>&1 & }`, { input: RELAY_JS });
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([fwd.whenReady, new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        void guest.run(`cat ${dir}/log`).then((r) => reject(new Error(`socket relay did not start within ${timeoutMs} ms: ${r.stdout}`)), reject);
      }, timeoutMs);
    })]).finally(() => clearTimeout(timer));
    return fwd;
  }

  /**
   * Listen on `hostPath`; each connection is carried to `guestPath` in the guest. A connection
   * the guest cannot open (no daemon there yet) is reset.
   */
  async listen(hostPath: string, guestPath: string): Promise<void> {
    fs.rmSync(hostPath, { force: true });
    const srv = net.createServer((c) => {
      const id = this.nextId++;
      this.conns.set(id, c);
      this.send(OPEN, id, Buffer.from(guestPath));
      c.on('data', (d: Buffer) => this.send(DATA, id, d));
      c.on('end', () => this.send(END, id));
      c.on('error', () => undefined);
      c.on('close', () => { if (this.conns.delete(id)) this.send(CLOSE, id); });
    });
    await new Promise<void>((resolve, reject) => srv.once('error', reject).listen(hostPath, resolve));
    this.servers.push(srv);
  }

  close(): void {
    for (const s of this.servers) s.close();
    for (const c of this.conns.values()) c.destroy();
    this.conns.clear();
  }

  private send(type: number, id: number, payload: Buffer = Buffer.alloc(0)): void {
    const h = Buffer.alloc(HEADER);
    h[0] = type; h.writeUInt32BE(id, 1); h.writeUInt32BE(payload.length, 5);
    this.port.write(Buffer.concat([h, payload]));
  }

  private parse(): void {
    while (this.buf.length >= HEADER) {
      const len = this.buf.readUInt32BE(5);
      if (this.buf.length < HEADER + len) return;
      const type = this.buf[0];
      const id = this.buf.readUInt32BE(1);
      const payload = this.buf.subarray(HEADER, HEADER + len);
      this.buf = this.buf.subarray(HEADER + len);
      const c = this.conns.get(id);
      if (type === READY) this.ready();
      else if (type === DATA) c?.write(payload);
      else if (type === END) c?.end();
      else if (type === CLOSE || type === FAIL) { this.conns.delete(id); c?.destroy(); }
    }
  }
}
