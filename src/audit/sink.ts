// Where audit lines go: an append-only file or stdout, written asynchronously, never dropped silently.
import fs from 'node:fs';
import { ConfigError } from '../config/load.js';

/** How long a failed destination waits before it is tried again. */
const RETRY_MS = 1000;
/** Lines held while the destination fails; past this the oldest are dropped (and counted) rather than exhaust memory. */
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
 * A pino destination: `write` only queues, one fs.write at a time drains the queue, so a slow disk never blocks the
 * event loop. A failed write keeps its lines and retries; `failing` tells the audit policy to block or carry on.
 */
export class AuditSink {
  readonly state: SinkState = { failing: false, lastError: null, dropped: 0 };
  private pending: string[] = [];
  private pendingBytes = 0;
  private writing = false;
  private retryTimer: NodeJS.Timeout | null = null;
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
    this.pending.push(line);
    this.pendingBytes += line.length;
    // Lines of a write in flight must stay put until it completes; the bound is enforced between writes.
    while (!this.writing && this.pendingBytes > MAX_PENDING_BYTES && this.pending.length > 1) {
      this.pendingBytes -= this.pending.shift()!.length;
      this.state.dropped++;
    }
    if (!this.writing && this.retryTimer === null) this.drain();
  }

  private drain(): void {
    if (this.pending.length === 0) return;
    const data = Buffer.from(this.pending.join(''));
    const lines = this.pending.length;
    this.writing = true;
    this.writeAll(data, 0, (err) => {
      this.writing = false;
      if (err !== null) {
        this.setFailing(true, err.message);
        this.retryTimer = setTimeout(() => {
          this.retryTimer = null;
          this.drain();
        }, RETRY_MS);
        this.retryTimer.unref();
        return;
      }
      this.pending.splice(0, lines);
      this.pendingBytes = this.pending.reduce((sum, line) => sum + line.length, 0);
      this.setFailing(false, null);
      this.drain();
    });
  }

  /** Writes data from offset on; a partial write continues where it stopped, EAGAIN (a full pipe) waits a moment. */
  private writeAll(data: Buffer, offset: number, done: (err: Error | null) => void): void {
    fs.write(this.fd, data, offset, data.length - offset, null, (err, written) => {
      if (err !== null) {
        if (err.code === 'EAGAIN') setTimeout(() => this.writeAll(data, offset, done), 10);
        else done(err);
        return;
      }
      if (offset + written < data.length) this.writeAll(data, offset + written, done);
      else done(null);
    });
  }

  private setFailing(failing: boolean, error: string | null): void {
    if (error !== null) this.state.lastError = error;
    if (this.state.failing === failing) return;
    this.state.failing = failing;
    this.onFailureChange?.(failing);
  }

  /**
   * Writes what is still queued synchronously (shutdown: the process is about to exit). A write already in flight
   * finishes first so lines stay in order. Returns false if lines could not be written.
   */
  async flush(timeoutMs = 5000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (this.writing && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
    if (this.retryTimer !== null) {
      clearTimeout(this.retryTimer);
      this.retryTimer = null;
    }
    if (this.writing) return false;
    try {
      const data = Buffer.from(this.pending.join(''));
      let offset = 0;
      while (offset < data.length) offset += fs.writeSync(this.fd, data, offset);
      this.pending = [];
      this.pendingBytes = 0;
      if (this.ownsFd) fs.fsyncSync(this.fd);
      return true;
    } catch (err) {
      this.setFailing(true, (err as Error).message);
      return false;
    }
  }

  close(): void {
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    if (this.ownsFd) fs.closeSync(this.fd);
  }
}
