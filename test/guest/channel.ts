/**
 * The command channel: a shell agent in the guest reads commands from a virtio-serial port and
 * answers each with its exit status, stdout and stderr; the host end is a UNIX socket QEMU
 * connects to. Commands run concurrently; replies are framed by length, so output of any size
 * or content (binary pcaps, partial lines) arrives whole.
 *
 * Host → guest, one line each:   R <id> <base64 script> <base64 stdin | ->      run a script
 *                                K <id>                                         kill its process group
 * Guest → host:                  \n@@AGENT READY\n                              agent (re)started
 *                                \n@@AGENT REPLY <id> <status> <outlen> <errlen>\n<stdout><stderr>
 */
import net from 'node:net';

export interface RunResult { status: number; stdout: string; stderr: string; raw: { stdout: Buffer; stderr: Buffer } }

export interface RunOptions {
  /** Bytes for the script's stdin. */
  input?: string | Buffer;
  /** The script's process group is killed after this long and the call rejects (default 60 s). */
  timeoutMs?: number;
}

/**
 * The agent, a POSIX sh script for busybox or a full Debian userspace (needs sh, base64, setsid,
 * mkfifo, wc, cat). Argument: the port device; default: the virtio port named NAME. It is not
 * PID 1: run it from init (busybox inittab `respawn`, or a systemd unit with Restart=always).
 * Each script runs in its own session (setsid) with the output in files; one writer process sends
 * the replies, one at a time, in the order the scripts finish. A background process a script
 * leaves behind must redirect its output, or it is cut off when the script's reply is sent.
 * `scriptShell` runs the scripts (default `sh`); an agent run by busybox's shell, whose applets
 * come first, can hand the scripts to another userspace's shell (`/bin/sh` of a host root).
 */
export function agentScript(portName: string, opts: { scriptShell?: string } = {}): string {
  const shell = opts.scriptShell ?? 'sh';
  return `#!/bin/sh
port=$1
if [ -z "$port" ]; then
  for n in /sys/class/virtio-ports/*/name; do
    [ "$(cat "$n" 2>/dev/null)" = ${portName} ] && port=/dev/$(basename "$(dirname "$n")")
  done
fi
[ -c "$port" ] || { echo "guest agent: no virtio port ${portName}" >&2; sleep 1; exit 1; }
dir=/run/guest-agent
rm -rf "$dir"; mkdir -p "$dir"; mkfifo "$dir/done"
exec 4<>"$port" 3<>"$dir/done"
# Blocks until the host end is connected: a port read before that would return end-of-file.
printf '\\n@@AGENT READY\\n' >&4
(
  while read -r id st <&3; do
    printf '\\n@@AGENT REPLY %s %s %s %s\\n' "$id" "$st" "$(wc -c <"$dir/$id.out")" "$(wc -c <"$dir/$id.err")" >&4
    cat "$dir/$id.out" "$dir/$id.err" >&4
    rm -f "$dir/$id.sh" "$dir/$id.in" "$dir/$id.out" "$dir/$id.err" "$dir/$id.pid"
  done
) &
writer=$!
job() {
  setsid ${shell} "$dir/$1.sh" <"$dir/$1.in" >"$dir/$1.out" 2>"$dir/$1.err" 3>&- &
  echo $! >"$dir/$1.pid"
  wait $!
  echo "$1 $?" >&3
}
while read -r op id script input <&4; do
  case $op in
    R) printf '%s' "$script" | base64 -d >"$dir/$id.sh"
       if [ "$input" = - ]; then : >"$dir/$id.in"; else printf '%s' "$input" | base64 -d >"$dir/$id.in"; fi
       job "$id" 4>&- & ;;
    K) [ -s "$dir/$id.pid" ] && kill -KILL -- "-$(cat "$dir/$id.pid")" 2>/dev/null ;;
  esac
done
kill "$writer"
`;
}

interface Pending {
  resolve: (r: RunResult) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

const HEADER = /\n@@AGENT (READY|REPLY (\d+) (-?\d+) (\d+) (\d+))\n/;

export class CommandChannel {
  private buf = Buffer.alloc(0);
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private readyWaiters: { resolve: () => void; reject: (e: Error) => void }[] = [];
  private ready = false;
  private closedError?: Error;
  /** Bytes on the port outside any reply (normally none); kept for diagnosis. */
  noise = '';

  constructor(private readonly sock: net.Socket) {
    sock.on('data', (d: Buffer) => { this.buf = Buffer.concat([this.buf, d]); this.parse(); });
    const closed = (e?: Error) => this.fail(new Error(`guest agent channel closed${e ? `: ${e.message}` : ''}`));
    sock.on('error', closed);
    sock.on('close', () => closed());
  }

  /** Resolves when the agent has announced itself (or at once if it has). */
  whenReady(): Promise<void> {
    if (this.ready) return Promise.resolve();
    if (this.closedError) return Promise.reject(this.closedError);
    return new Promise((resolve, reject) => this.readyWaiters.push({ resolve, reject }));
  }

  run(script: string, opts: RunOptions = {}): Promise<RunResult> {
    if (this.closedError) return Promise.reject(this.closedError);
    const id = this.nextId++;
    const input = opts.input === undefined || opts.input.length === 0 ? '-' : Buffer.from(opts.input).toString('base64');
    const timeoutMs = opts.timeoutMs ?? 60000;
    return new Promise<RunResult>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        this.sock.write(`K ${id}\n`);
        reject(new Error(`guest command timed out after ${timeoutMs} ms: ${script.slice(0, 200)}`));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
      this.sock.write(`R ${id} ${Buffer.from(script).toString('base64')} ${input}\n`);
    });
  }

  close(): void { this.sock.destroy(); }

  /** A reply whose header has been read and whose body is still arriving. */
  private body?: { id: number; status: number; outLen: number; errLen: number };

  private parse(): void {
    for (;;) {
      if (this.body) {
        const { id, status, outLen, errLen } = this.body;
        if (this.buf.length < outLen + errLen) return;
        const stdout = Buffer.from(this.buf.subarray(0, outLen));
        const stderr = Buffer.from(this.buf.subarray(outLen, outLen + errLen));
        this.buf = this.buf.subarray(outLen + errLen);
        this.body = undefined;
        const p = this.pending.get(id);
        if (!p) continue; // timed out meanwhile
        this.pending.delete(id);
        clearTimeout(p.timer);
        p.resolve({ status, stdout: stdout.toString('utf8'), stderr: stderr.toString('utf8'), raw: { stdout, stderr } });
        continue;
      }
      // Headers are ASCII; latin1 keeps byte offsets equal to string offsets.
      const text = this.buf.toString('latin1');
      const m = HEADER.exec(text);
      if (!m) {
        // Keep a tail that may be the start of a header split across reads.
        if (this.buf.length > 256) { this.noise += text.slice(0, -256); this.buf = this.buf.subarray(this.buf.length - 256); }
        return;
      }
      this.noise += text.slice(0, m.index);
      this.buf = this.buf.subarray(m.index + m[0].length);
      if (m[1] === 'READY') {
        // An agent that restarted has forgotten what it was running.
        if (this.ready) this.failPending(new Error('guest agent restarted while commands were running'));
        this.ready = true;
        for (const w of this.readyWaiters.splice(0)) w.resolve();
        continue;
      }
      this.body = { id: Number(m[2]), status: Number(m[3]), outLen: Number(m[4]), errLen: Number(m[5]) };
    }
  }

  private failPending(e: Error): void {
    for (const p of this.pending.values()) { clearTimeout(p.timer); p.reject(e); }
    this.pending.clear();
  }

  private fail(e: Error): void {
    if (this.closedError) return;
    this.closedError = e;
    this.failPending(e);
    for (const w of this.readyWaiters.splice(0)) w.reject(e);
  }
}
