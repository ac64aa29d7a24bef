// Where audit lines go: an append-only file or stdout, written asynchronously in batches, never dropped silently.
import fs from 'node:fs';
import { ConfigError } from '../config/load.js';

/** How long a failed destination waits before it is tried again. */
const RETRY_MS = 1000;
/**
 * Lines are written in batches at most this far apart: one write per statement would cost a system call and an
 * event-loop wakeup each, more than everything else the proxy does for the statement. A crash (not SIGTERM, which
 * flushes) can lose this much of the trail.
 */
const BATCH_MS = 50;
/** Lines are encoded straight into chunks of this size; a full chunk is written without waiting for BATCH_MS. */
const CHUNK_BYTES = 256 * 1024;
/** Bytes held while the destination fails; past this new lines are dropped (and counted) rather than exhaust memory. */
const MAX_PENDING_BYTES = 64 * 1024 * 1024;

export interface SinkState {
  /** The last write failed and has not succeeded since. */
  failing: boolean;
  /** The error of the last failed write. */
  lastError: string | null;
  /** Lines given up on because the destination stayed down while MAX_PENDING_BYTES piled up. */
  dropped: number;
}

/**
 * A pino-compatible destination (`write(line)`). Lines are encoded into byte chunks at once, so the strings die young
 * (queuing the strings themselves and joining them later cost several times more, in garbage collection); one
 * fs.write at a time sends the filled part, so neither a slow disk nor the trail's volume blocks the event loop.
 * A failed write keeps its bytes and retries; `failing` tells the audit policy to block or carry on.
 */
export class AuditSink {
  readonly state: SinkState = { failing: false, lastError: null, dropped: 0 };
  /** True when so much is queued that the trail is falling behind: with onFailure block, statements wait. */
  get backlogged(): boolean {
    return this.pendingBytes > MAX_PENDING_BYTES / 2;
  }

  /** Filled chunks waiting to be written, oldest first, then the one being filled (`current`, `used` bytes). */
  private full: Buffer[] = [];
  private current = Buffer.allocUnsafe(CHUNK_BYTES);
  private used = 0;
  private pendingBytes = 0;
  private writing = false;
  /** The next drain: a batch or a retry. */
  private timer: NodeJS.Timeout | null = null;
  private readonly fd: number;
  private readonly ownsFd: boolean;
  private onFailureChange: ((failing: boolean) => void) | null = null;

  /** Opens the file for appending (creating it) at once, so an unwritable path fails at startup, not later. */
  constructor(file: string | undefined) {
    if (file === undefined) {
      this.fd = 1;
      this.ownsFd = false;
    } else {
      try {
        this.fd = fs.openSync(file, 'a', 0o640);
      } catch (err) {
        throw new ConfigError(`cannot open "${file}" for appending: ${(err as Error).message}`, 'audit.file');
      }
      this.ownsFd = true;
    }
  }

  onFailing(listener: (failing: boolean) => void): void {
    this.onFailureChange = listener;
  }

  write(line: string): void {
    // UTF-8 takes at most 3 bytes per UTF-16 unit.
    const worst = line.length * 3;
    if (this.pendingBytes + worst > MAX_PENDING_BYTES) {
      this.state.dropped++;
      return;
    }
    if (this.used + worst > this.current.length) {
      if (this.used > 0) this.full.push(this.current.subarray(0, this.used));
      this.current = Buffer.allocUnsafe(Math.max(CHUNK_BYTES, worst));
      this.used = 0;
    }
    const written = this.current.write(line, this.used);
    this.used += written;
    this.pendingBytes += written;
    if (this.writing || this.state.failing) return;
    if (this.full.length > 0) this.drainSoon(0);
    else this.drainSoon(BATCH_MS);
  }

  private drainSoon(delayMs: number): void {
    if (this.timer !== null) {
      if (delayMs > 0) return;
      clearTimeout(this.timer);
    }
    this.timer = setTimeout(() => {
      this.timer = null;
      this.drain();
    }, delayMs);
    this.timer.unref();
  }

  /** Everything queued, oldest first, the chunk being filled included (which starts over). */
  private takePending(): Buffer[] {
    if (this.used > 0) {
      this.full.push(this.current.subarray(0, this.used));
      this.current = Buffer.allocUnsafe(CHUNK_BYTES);
      this.used = 0;
    }
    const chunks = this.full;
    this.full = [];
    return chunks;
  }

  private drain(): void {
    if (this.pendingBytes === 0 || this.writing) return;
    const chunks = this.takePending();
    this.writing = true;
    this.writeAll(chunks, (err, rest) => {
      this.writing = false;
      this.pendingBytes -= byteLength(chunks) - byteLength(rest);
      if (err !== null) {
        // Unwritten bytes go back in front of whatever was queued meanwhile.
        this.full.unshift(...rest);
        this.setFailing(true, err.message);
        this.drainSoon(RETRY_MS);
        return;
      }
      this.setFailing(false, null);
      if (this.pendingBytes > 0) this.drainSoon(this.full.length > 0 ? 0 : BATCH_MS);
    });
  }

  /** writev until every chunk is out; a partial write continues where it stopped, EAGAIN (a full pipe) waits a moment. */
  private writeAll(chunks: Buffer[], done: (err: Error | null, rest: Buffer[]) => void): void {
    fs.writev(this.fd, chunks, (err, written) => {
      if (err !== null) {
        if (err.code === 'EAGAIN') setTimeout(() => this.writeAll(chunks, done), 10);
        else done(err, chunks);
        return;
      }
      const rest = skipBytes(chunks, written);
      if (rest.length > 0) this.writeAll(rest, done);
      else done(null, rest);
    });
  }

  private setFailing(failing: boolean, error: string | null): void {
    if (error !== null) this.state.lastError = error;
    if (this.state.failing === failing) return;
    this.state.failing = failing;
    this.onFailureChange?.(failing);
  }

  /**
   * Writes what is still queued synchronously (shutdown: the process is about to exit) and fsyncs the file. A write
   * already in flight finishes first so lines stay in order. Returns false if lines could not be written.
   */
  async flush(timeoutMs = 5000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (this.writing && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    if (this.writing) return false;
    let rest = this.takePending();
    try {
      while (rest.length > 0) rest = skipBytes(rest, fs.writevSync(this.fd, rest));
      if (this.ownsFd) fs.fsyncSync(this.fd);
      this.pendingBytes = 0;
      return true;
    } catch (err) {
      this.full.unshift(...rest);
      this.pendingBytes = byteLength(rest);
      this.setFailing(true, (err as Error).message);
      return false;
    }
  }

  close(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    if (this.ownsFd) fs.closeSync(this.fd);
  }
}

function byteLength(chunks: Buffer[]): number {
  let total = 0;
  for (const chunk of chunks) total += chunk.length;
  return total;
}

/** The chunks with their first `count` bytes removed. */
function skipBytes(chunks: Buffer[], count: number): Buffer[] {
  let i = 0;
  while (i < chunks.length && count >= chunks[i]!.length) count -= chunks[i++]!.length;
  const rest = chunks.slice(i);
  if (count > 0 && rest.length > 0) rest[0] = rest[0]!.subarray(count);
  return rest;
}
