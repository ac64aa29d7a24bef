// Proxy-issued BackendKeyData: maps the key a client holds to its session, so a cancel reaches only its own backend.
import { randomInt } from 'node:crypto';

export interface Cancellable {
  cancelCurrent(): void;
}

export class CancelRegistry {
  private readonly sessions = new Map<string, Cancellable>();
  private nextPid = 1;

  /** Issues a key for a session; the secret is random so keys cannot be guessed from the sequential pid. */
  issue(session: Cancellable): { pid: number; secret: number } {
    const pid = this.nextPid;
    this.nextPid = this.nextPid >= 0x7fffffff ? 1 : this.nextPid + 1;
    const secret = randomInt(-0x80000000, 0x7fffffff);
    this.sessions.set(keyOf(pid, secret), session);
    return { pid, secret };
  }

  revoke(pid: number, secret: number): void {
    this.sessions.delete(keyOf(pid, secret));
  }

  /** Returns whether a session held that key; a wrong key does nothing, as in PostgreSQL. */
  cancel(pid: number, secret: number): boolean {
    const session = this.sessions.get(keyOf(pid, secret));
    if (session === undefined) return false;
    session.cancelCurrent();
    return true;
  }
}

function keyOf(pid: number, secret: number): string {
  return `${pid}:${secret}`;
}
