// A client's session settings follow it from server to server: read back after a transaction that changed them.
import type { Logger } from 'pino';
import { encodeParameterStatus } from '../protocol/messages.js';
import type { SessionSettings } from '../frontend/session-settings.js';
import { planRestore } from './pin.js';
import type { ServerConn } from './server-conn.js';

export interface FollowHost {
  readonly log: Logger;
  pauseClient(): void;
  /** Runs a continuation of a server reply; a failure in it ends the session, nothing else. */
  guarded(step: () => void): void;
}

/**
 * After a transaction that ran SET, RESET or set_config, the server is asked for the session's settings (the answer
 * already has transaction semantics applied: a rolled-back SET, SET LOCAL), and settings a RESET took back to the
 * server's default are set back to the client's startup values, as a direct connection would have them. The
 * client's next statement waits until this is done.
 */
export class SettingsFollow {
  /** Reading back or restoring: the client's next statement is held. */
  busy = false;

  constructor(
    private readonly host: FollowHost,
    private readonly settings: SessionSettings,
    /** Writes a ParameterStatus to the client. */
    private readonly tell: (frame: Buffer) => void,
    /** Whether `server` still serves the client. */
    private readonly linked: (server: ServerConn) => boolean,
    private readonly done: () => void,
  ) {}

  /** The transaction is over: true when the settings are being read back from `server` (done() follows). */
  begin(server: ServerConn): boolean {
    if (!this.settings.changed) return false;
    this.busy = true;
    this.host.pauseClient();
    const snapshot = new Map<string, string>();
    server.runQuery(
      this.settings.beginSnapshot(),
      ([name, value]) => snapshot.set(name!, value!),
      (error) =>
        this.host.guarded(() => {
          if (error !== null) {
            // Unanswered (the client's own 1 ms statement_timeout can do that): its settings stay as last known.
            this.host.log.warn(
              { err: error },
              'could not read the session settings after a SET; keeping the last known ones',
            );
            this.finish();
            return;
          }
          this.restore(server, this.settings.adopt(snapshot));
        }),
    );
    return true;
  }

  /** A ParameterStatus of the client's own SET: its value follows the client, and the client hears it. */
  reported(name: string, value: string, frame: Buffer): void {
    this.settings.reported(name, value);
    this.tellParameter(name, value, frame);
  }

  /** Startup settings the snapshot found RESET are set back on the server, and the client told what it reports. */
  private restore(server: ServerConn, restore: Map<string, string>): void {
    if (restore.size === 0 || !this.linked(server)) {
      this.finish();
      return;
    }
    const plan = planRestore(restore);
    server.runQuery(
      plan.frame,
      () => undefined,
      (error) =>
        this.host.guarded(() => {
          if (error === null) for (const name of plan.reported) this.tellParameter(name, restore.get(name)!);
          else this.host.log.warn({ err: error }, 'could not restore startup settings after a RESET');
          this.finish();
        }),
    );
  }

  private tellParameter(name: string, value: string, frame?: Buffer): void {
    if (this.settings.tell(name, value)) this.tell(frame ?? encodeParameterStatus(name, value));
  }

  private finish(): void {
    this.busy = false;
    this.done();
  }
}
