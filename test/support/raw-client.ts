// A raw-socket PostgreSQL client for hostile input: writes arbitrary bytes, reads back typed messages.
import net from 'node:net';
import { Framer } from '../../src/protocol/framer.js';
import { readErrorFields } from '../../src/protocol/messages.js';
import { Writer } from '../../src/protocol/writer.js';

export interface RawMessage {
  code: string;
  body: Buffer;
}

export class RawClient {
  readonly messages: RawMessage[] = [];
  closed = false;
  private readonly framer = new Framer(1 << 24, true);
  private waiters: Array<() => void> = [];
  /** Bytes before any typed message (the single-byte SSL/GSS answers). */
  private preamble = 0;

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      let data = chunk;
      while (this.preamble > 0 && data.length > 0) {
        this.messages.push({ code: String.fromCharCode(data[0]!), body: Buffer.alloc(0) });
        this.preamble--;
        data = data.subarray(1);
      }
      this.framer.push(data);
      while (this.framer.next()) {
        const { buffer, start, end } = this.framer;
        this.messages.push({
          code: String.fromCharCode(buffer[start]!),
          body: Buffer.from(buffer.subarray(start + 5, end)),
        });
      }
      this.wake();
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
  }

  static connect(port: number): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(port, '127.0.0.1', () => resolve(new RawClient(socket)));
      socket.once('error', reject);
    });
  }

  /** A client over a socket already past startup (see test/support/frames directRaw). */
  static wrap(socket: net.Socket): RawClient {
    const client = new RawClient(socket);
    socket.resume();
    return client;
  }

  /** The next bytes from the server are a one-byte answer (SSLRequest / GSSENCRequest). */
  expectSingleByte(): void {
    this.preamble++;
  }

  write(bytes: Buffer | Uint8Array): void {
    this.socket.write(bytes);
  }

  startup(params: Record<string, string>, version = 196608): void {
    const w = new Writer().begin().int32(version);
    for (const [k, v] of Object.entries(params)) w.cstring(k).cstring(v);
    this.write(w.int8(0).end().flush());
  }

  password(text: string): void {
    this.write(new Writer().begin(0x70).cstring(text).end().flush());
  }

  query(sql: string): void {
    this.write(new Writer().begin(0x51).cstring(sql).end().flush());
  }

  /** Waits until a message with this code arrives (returns it) or the socket closes (returns undefined). */
  async waitFor(code: string, timeoutMs = 5000): Promise<RawMessage | undefined> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.messages.find((m) => m.code === code);
      if (found !== undefined) return found;
      if (this.closed) return undefined;
      if (Date.now() > deadline)
        throw new Error(`timed out waiting for '${code}', got ${this.messages.map((m) => m.code).join('')}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 50);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** SQLSTATE of the first ErrorResponse, waiting for it. */
  async errorCode(timeoutMs?: number): Promise<string | undefined> {
    const err = await this.waitFor('E', timeoutMs);
    if (err === undefined) return undefined;
    const framed = Buffer.concat([Buffer.from([0x45, 0, 0, 0, 0]), err.body]);
    return readErrorFields(framed, 0, framed.length).code;
  }

  async waitClosed(timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed) {
      if (Date.now() > deadline) throw new Error('socket still open');
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  close(): void {
    this.socket.destroy();
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }
}
