// The seam between the guard's catalog rewrite and the session: a Query or Parse frame with its SQL text rewritten.
import { applySplices } from './catalog-refs.js';
import type { StatementAnalysis } from './sql-guard.js';

const QUERY = 0x51; // 'Q'

/**
 * The frame buf[start, end) (a Query or a Parse) with its statement text pointed at the filtered catalog views, or
 * null when the guard found no catalog reference in it (the common case: one property read, nothing allocated).
 * Audit keeps the client's own text and fingerprint; only the bytes sent to the server change.
 */
export function catalogFrame(
  buf: Buffer,
  start: number,
  end: number,
  source: { analysis?: StatementAnalysis | null } | null | undefined,
  /** The tenant's channel prefix (channels/names.ts), for a NOTIFY's splice. */
  channelPrefix: string,
): Buffer | null {
  const catalog = source?.analysis?.catalog;
  if (catalog === null || catalog === undefined) return null;
  // Query: 'Q' int32 text\0. Parse: 'P' int32 name\0 text\0 int16 n int32[n].
  let textStart = start + 5;
  if (buf[start] !== QUERY) textStart = buf.indexOf(0, textStart) + 1;
  const textEnd = buf.indexOf(0, textStart);
  // The guard read its text from this frame, so this cannot fail; if it did, the frame must not go out unrewritten.
  if (textStart <= 0 || textEnd < 0 || textEnd >= end) throw new Error('a catalog statement frame without its text');
  const text = applySplices(buf.subarray(textStart, textEnd), catalog.splices, channelPrefix);
  const frame = Buffer.allocUnsafe(end - start + text.length - (textEnd - textStart));
  buf.copy(frame, 0, start, textStart);
  text.copy(frame, textStart - start);
  buf.copy(frame, textStart - start + text.length, textEnd, end);
  frame.writeUInt32BE(frame.length - 1, 1);
  return frame;
}
