// Streaming framer: Buffer chunks in, whole frames out as views into the chunk, assembled once at exact size when split.
import { SqlState } from './codes.js';
import { ProxyError } from './errors.js';

const EMPTY = Buffer.alloc(0);
/** Split frames up to this size are assembled in one buffer of exact size; larger ones grow only as bytes arrive. */
const PREALLOCATE_LIMIT = 1 << 20;

/** A length no frame can have (a fatal 08P01): nothing after it can be read. */
export class FrameLengthError extends ProxyError {
  constructor(message: string) {
    super(SqlState.PROTOCOL_VIOLATION, message, 'FATAL');
  }
}

/**
 * After next() returns true the current frame is buffer[start, end) including its header; `code` is its type byte
 * (0 for untyped startup-phase frames). The view is valid until the next push(): callers that keep it must not
 * expect the bytes to change, since Node hands every 'data' event a fresh Buffer and split frames get their own.
 */
export class Framer {
  code = 0;
  buffer: Buffer = EMPTY;
  start = 0;
  end = 0;

  private chunk: Buffer = EMPTY;
  private pos = 0;
  private readonly header = Buffer.alloc(5);
  private headerFilled = 0;
  private assembling: Buffer | null = null;
  private filled = 0;
  /** A large split frame: its chunks so far (a header alone must never make us allocate what it claims). */
  private pieces: Buffer[] | null = null;
  private piecesTotal = 0;

  constructor(
    private maxLength: number,
    /** Startup-phase frames carry no type byte. */
    private typed: boolean,
  ) {}

  /** Switches between untyped (startup) and typed framing; only valid on a frame boundary. */
  setTyped(typed: boolean, maxLength: number): void {
    this.typed = typed;
    this.maxLength = maxLength;
  }

  push(chunk: Buffer): void {
    this.chunk = chunk;
    this.pos = 0;
  }

  /** Bytes received but not yet returned as part of a frame. */
  get buffered(): number {
    return (
      this.chunk.length -
      this.pos +
      this.headerFilled +
      (this.assembling === null && this.pieces === null ? 0 : this.filled)
    );
  }

  /** The type byte of the frame after the current one when it has arrived, else -1 (also while one is assembled). */
  peekCode(): number {
    if (!this.typed || this.pieces !== null || this.assembling !== null || this.headerFilled > 0) return -1;
    return this.pos < this.chunk.length ? this.chunk[this.pos]! : -1;
  }

  next(): boolean {
    if (this.pieces !== null) return this.continuePieces();
    if (this.assembling !== null) return this.continueAssembly();
    const headerSize = this.typed ? 5 : 4;
    if (this.headerFilled > 0) {
      const take = Math.min(headerSize - this.headerFilled, this.chunk.length - this.pos);
      this.chunk.copy(this.header, this.headerFilled, this.pos, this.pos + take);
      this.headerFilled += take;
      this.pos += take;
      if (this.headerFilled < headerSize) return false;
      const total = this.frameLength(this.header, 0);
      this.headerFilled = 0;
      this.startAssembly(Buffer.from(this.header.subarray(0, headerSize)), total);
      return this.next();
    }
    const available = this.chunk.length - this.pos;
    if (available === 0) return false;
    if (available < headerSize) {
      this.chunk.copy(this.header, 0, this.pos);
      this.headerFilled = available;
      this.pos = this.chunk.length;
      return false;
    }
    const total = this.frameLength(this.chunk, this.pos);
    if (available >= total) {
      this.setCurrent(this.chunk, this.pos, this.pos + total);
      this.pos += total;
      return true;
    }
    this.startAssembly(this.chunk.subarray(this.pos), total);
    this.pos = this.chunk.length;
    return false;
  }

  private startAssembly(first: Buffer, total: number): void {
    if (total > PREALLOCATE_LIMIT) {
      this.pieces = [Buffer.from(first)];
      this.piecesTotal = total;
      this.filled = first.length;
    } else {
      this.assembling = Buffer.allocUnsafe(total);
      first.copy(this.assembling, 0);
      this.filled = first.length;
    }
  }

  private continuePieces(): boolean {
    const take = Math.min(this.piecesTotal - this.filled, this.chunk.length - this.pos);
    if (take > 0) this.pieces!.push(this.chunk.subarray(this.pos, this.pos + take));
    this.filled += take;
    this.pos += take;
    if (this.filled < this.piecesTotal) return false;
    const whole = Buffer.concat(this.pieces!, this.piecesTotal);
    this.pieces = null;
    this.filled = 0;
    this.setCurrent(whole, 0, whole.length);
    return true;
  }

  private continueAssembly(): boolean {
    const target = this.assembling!;
    const take = Math.min(target.length - this.filled, this.chunk.length - this.pos);
    this.chunk.copy(target, this.filled, this.pos, this.pos + take);
    this.filled += take;
    this.pos += take;
    if (this.filled < target.length) return false;
    this.assembling = null;
    this.filled = 0;
    this.setCurrent(target, 0, target.length);
    return true;
  }

  /** Whole frame size in bytes (type byte included); throws on lengths that cannot be valid. */
  private frameLength(buf: Buffer, at: number): number {
    const len = this.typed ? buf.readUInt32BE(at + 1) : buf.readUInt32BE(at);
    const min = this.typed ? 4 : 8;
    if (len < min) throw new FrameLengthError(`invalid message length ${len}`);
    if (len > this.maxLength)
      throw new FrameLengthError(`message length ${len} exceeds the limit of ${this.maxLength} bytes`);
    return this.typed ? len + 1 : len;
  }

  private setCurrent(buffer: Buffer, start: number, end: number): void {
    this.buffer = buffer;
    this.start = start;
    this.end = end;
    this.code = this.typed ? buffer[start]! : 0;
  }
}
