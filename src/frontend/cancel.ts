// Proxy-issued BackendKeyData: maps the key a client holds to its session, so a cancel reaches only its own backend.
import { randomInt } from 'node:crypto';

export interface Cancellable {
  cancelCurrent(): void;
}

/**
 * With several worker processes a cancel request, a connection of its own, may land on any of them: each worker
 * issues only pids ≡ its index (mod count), so the worker a key belongs to is known from the pid alone.
 */
export interface CancelPartition {
  index: number;
  count: number;
  /** Hands a cancel for another worker's key to that worker. */
  forward(pid: number, secret: number): void;
}

const MAX_PID = 0x7fffffff;

export class CancelRegistry {
  private readonly sessions = new Map<string, Cancellable>();
  private nextPid: number;

  constructor(private readonly partition: CancelPartition = { index: 0, count: 1, forward: () => undefined }) {
    this.nextPid = partition.index === 0 ? partition.count : partition.index;
  }

  /** Issues a key for a session; the secret is random so keys cannot be guessed from the sequential pid. */
  issue(session: Cancellable): { pid: number; secret: number } {
    const pid = this.nextPid;
    const next = pid + this.partition.count;
    this.nextPid = next > MAX_PID ? (this.partition.index === 0 ? this.partition.count : this.partition.index) : next;
    const secret = randomInt(-0x80000000, 0x7fffffff);
    this.sessions.set(keyOf(pid, secret), session);
    return { pid, secret };
  }

  revoke(pid: number, secret: number): void {
    this.sessions.delete(keyOf(pid, secret));
  }

  /** Returns whether a session of this process held that key; a wrong key does nothing, as in PostgreSQL. */
  cancel(pid: number, secret: number): boolean {
    const session = this.sessions.get(keyOf(pid, secret));
    if (session === undefined) {
      const { index, count } = this.partition;
      if (count > 1 && pid > 0 && pid % count !== index) this.partition.forward(pid, secret);
      return false;
    }
    session.cancelCurrent();
    return true;
  }
}

function keyOf(pid: number, secret: number): string {
  return `${pid}:${secret}`;
}
