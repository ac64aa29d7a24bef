// What a client's link reports of its replies to the tenant's usage: statements, rows, transactions, server time.
import { TxStatus } from '../protocol/codes.js';
import type { TenantUsage } from './tenant-usage.js';

const SPACE = 0x20;
const ZERO = 0x30;
const NINE = 0x39;
const C = 0x43;
const D = 0x44;
const E = 0x45;
const F = 0x46;
const I = 0x49;
const M = 0x4d;
const O = 0x4f;
const S = 0x53;
const U = 0x55;

/**
 * One per client link, fed only the replies the link already reads (CommandComplete, ErrorResponse, ReadyForQuery,
 * CopyInResponse) and its server changes; nothing here looks at a forwarded DataRow.
 */
export class UsageTap {
  /** A statement completed or failed since the last ReadyForQuery. */
  private worked = false;
  /** The last ReadyForQuery said a transaction block is open (T or E). */
  private inBlock = false;
  /** A COPY FROM STDIN is running: its tag counts rows written, not rows returned. */
  private copyingIn = false;

  constructor(readonly usage: TenantUsage) {}

  /** A CommandComplete frame (code, length, tag, NUL) of the client's. */
  completed(buf: Buffer, start: number, end: number): void {
    this.usage.statements++;
    this.worked = true;
    countTagRows(this.usage, buf, start + 5, end - 1, this.copyingIn);
    this.copyingIn = false;
  }

  /** A statement of the client's that failed on the server (not a refusal the proxy made). */
  failed(): void {
    this.usage.statements++;
    this.worked = true;
    this.copyingIn = false;
  }

  copyIn(): void {
    this.copyingIn = true;
  }

  /**
   * A transaction ends at ReadyForQuery I after a block, or after an implicit transaction that ran something (a Sync
   * with nothing before it is not one).
   */
  ready(status: number): void {
    if (status === TxStatus.Idle && (this.worked || this.inBlock)) this.usage.transactions++;
    this.inBlock = status !== TxStatus.Idle;
    this.worked = false;
  }

  /** The link took a server (`held`) or gave it up: server time runs while a server is linked. */
  serverChanged(held: boolean): void {
    if (held) this.usage.serverHeld(performance.now());
    else {
      this.usage.serverFreed(performance.now());
      // A server lost mid-transaction takes its transaction with it.
      this.inBlock = false;
      this.worked = false;
      this.copyingIn = false;
    }
  }
}

/**
 * Adds the row count of a command tag in buf[start, end) without making a string: SELECT, FETCH and COPY TO return
 * rows; INSERT, UPDATE, DELETE, MERGE and COPY FROM write them; MOVE and tags without a count add nothing.
 */
export function countTagRows(usage: TenantUsage, buf: Buffer, start: number, end: number, copyingIn: boolean): void {
  let i = end - 1;
  let rows = 0;
  let scale = 1;
  while (i > start && buf[i]! >= ZERO && buf[i]! <= NINE) {
    rows += (buf[i]! - ZERO) * scale;
    scale *= 10;
    i--;
  }
  if (scale === 1 || buf[i] !== SPACE || rows === 0) return;
  switch (buf[start]) {
    case S: // SELECT
    case F: // FETCH
      usage.rowsReturned += rows;
      return;
    case I: // INSERT 0 n
    case U: // UPDATE
    case D: // DELETE
      usage.rowsAffected += rows;
      return;
    case M: // MERGE, not MOVE
      if (buf[start + 1] === E) usage.rowsAffected += rows;
      return;
    case C: // COPY; no other command tag starting with C carries a count
      if (buf[start + 1] !== O) return;
      if (copyingIn) usage.rowsAffected += rows;
      else usage.rowsReturned += rows;
      return;
    default:
  }
}
