// Growable writer for the few messages the proxy composes itself; pass-through traffic never goes through here.

export class Writer {
  private buf: Buffer;
  private offset = 0;
  private headerAt = -1;

  constructor(initialSize = 256) {
    this.buf = Buffer.allocUnsafe(initialSize);
  }

  /** Starts a typed message (code byte + length placeholder); `code` undefined starts an untyped startup-style one. */
  begin(code?: number): this {
    if (code !== undefined) {
      this.ensure(1);
      this.buf[this.offset++] = code;
    }
    this.headerAt = this.offset;
    this.ensure(4);
    this.offset += 4;
    return this;
  }

  int8(value: number): this {
    this.ensure(1);
    this.buf[this.offset++] = value;
    return this;
  }

  int16(value: number): this {
    this.ensure(2);
    this.buf.writeInt16BE(value, this.offset);
    this.offset += 2;
    return this;
  }

  int32(value: number): this {
    this.ensure(4);
    this.buf.writeInt32BE(value, this.offset);
    this.offset += 4;
    return this;
  }

  cstring(value: string): this {
    const len = Buffer.byteLength(value);
    this.ensure(len + 1);
    this.buf.write(value, this.offset, 'utf8');
    this.offset += len;
    this.buf[this.offset++] = 0;
    return this;
  }

  bytes(value: Uint8Array): this {
    this.ensure(value.length);
    this.buf.set(value, this.offset);
    this.offset += value.length;
    return this;
  }

  /** Closes the message started by begin() by filling in its length. */
  end(): this {
    this.buf.writeInt32BE(this.offset - this.headerAt, this.headerAt);
    this.headerAt = -1;
    return this;
  }

  /** Returns a copy of everything written and resets the writer for reuse. */
  flush(): Buffer {
    const out = Buffer.from(this.buf.subarray(0, this.offset));
    this.offset = 0;
    return out;
  }

  private ensure(extra: number): void {
    if (this.offset + extra <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.offset + extra) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.offset);
    this.buf = next;
  }
}
