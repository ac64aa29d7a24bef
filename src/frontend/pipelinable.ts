// Which queued client segment may ride behind a pipelined reset (see ServerConn.pinAfterReset): when the reset fails,
// PostgreSQL skips the segment and the proxy sends it again on another server, so it must be whole (up to its Sync),
// need no rewriting, and carry nothing that follows it on the wire (COPY data).
import { FrontendCode } from '../protocol/codes.js';

/**
 * Exactly one segment: a simple Query (no COPY, whose data would follow it), or an unnamed Parse followed by unnamed
 * Bind/Describe/Execute and a Sync. Its first frame must be `approved`, the one the guard judged while idle: nothing in
 * the segment is judged or rewritten after the server arrives.
 */
export function isPipelinableSegment(queued: readonly Buffer[], approved: Buffer | undefined): boolean {
  const first = queued[0];
  if (first === undefined || first !== approved) return false;
  if (first[0] === FrontendCode.Query) return queued.length === 1 && !mentionsCopy(first);
  if (first[0] !== FrontendCode.Parse || first[5] !== 0 || queued[queued.length - 1]![0] !== FrontendCode.Sync)
    return false;
  for (let i = 1; i < queued.length - 1; i++) {
    const frame = queued[i]!;
    const unnamed =
      (frame[0] === FrontendCode.Bind && frame[5] === 0 && frame[6] === 0) ||
      (frame[0] === FrontendCode.Describe && frame[6] === 0) ||
      (frame[0] === FrontendCode.Execute && frame[5] === 0);
    if (!unnamed) return false;
  }
  return true;
}

/** Whether a Query frame's text may hold COPY, in any case: a false alarm only costs the pipelined reset. */
export function mentionsCopy(frame: Buffer): boolean {
  for (let i = 5; i + 3 < frame.length; i++) {
    if (
      (frame[i]! | 0x20) === 0x63 &&
      (frame[i + 1]! | 0x20) === 0x6f &&
      (frame[i + 2]! | 0x20) === 0x70 &&
      (frame[i + 3]! | 0x20) === 0x79
    )
      return true;
  }
  return false;
}
