// A socket's write side as both ends of the proxy use it: writes batched per event-loop turn, backpressure to the peer.
import type net from 'node:net';

/** The reading side that feeds a Conn: paused while the Conn's socket cannot take more. */
export interface Pausable {
  pause(): void;
  resume(): void;
}

export class Conn {
  #corked = false;
  /** The peer paused until this socket drains, if any. */
  #paused: Pausable | null = null;

  constructor(public socket: net.Socket) {
    socket.on('drain', () => this.release());
  }

  /**
   * Writes `buf` in this turn's batch: the first write corks the socket and the batch goes out in one syscall after the
   * current turn's other writes. False when the socket's buffer is full.
   */
  write(buf: Buffer): boolean {
    if (!this.#corked) {
      this.#corked = true;
      this.socket.cork();
      process.nextTick(uncork, this);
    }
    return this.socket.write(buf);
  }

  /** Writes bytes read from `peer`; when the socket's buffer is full, `peer` is paused until it drains. */
  forward(buf: Buffer, peer: Pausable): boolean {
    if (this.write(buf)) return true;
    if (this.#paused === null) {
      this.#paused = peer;
      peer.pause();
    }
    return false;
  }

  /** The peer paused for this socket is resumed now (it feeds someone else from here on, or its link ended). */
  release(): void {
    const paused = this.#paused;
    this.#paused = null;
    paused?.resume();
  }

  /** The paused peer is no longer this socket's to resume (it went on to feed another socket). */
  forget(peer: Pausable): void {
    if (this.#paused === peer) this.#paused = null;
  }

  /** Whether a peer is paused for this socket. */
  get holding(): boolean {
    return this.#paused !== null;
  }

  /** Swaps the socket (the client's, after a TLS upgrade). */
  replace(socket: net.Socket): void {
    this.socket = socket;
    socket.on('drain', () => this.release());
  }

  /** @internal */
  uncork(): void {
    this.#corked = false;
    this.socket.uncork();
  }
}

function uncork(conn: Conn): void {
  conn.uncork();
}
