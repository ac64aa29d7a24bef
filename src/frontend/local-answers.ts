// Statements an idle client gets answered without a server: a named Parse (PreparedStatements.answerParse), and a
// Query of nothing but LISTEN/UNLISTEN (ClientChannels.answer).
import { FrontendCode } from '../protocol/codes.js';
import { ProxyError } from '../protocol/errors.js';
import type { Framer } from '../protocol/framer.js';
import { PARSE_COMPLETE } from '../protocol/static.js';
import type { ClientParts } from './client-parts.js';
import type { StatementSource } from './statement-tracker.js';

/**
 * The answer to a Query or Parse judged while idle, when the proxy gives it itself: a Promise when it comes once the
 * proxy's channel listening connection listens; null when a server must answer.
 */
export function answerLocally(
  parts: ClientParts,
  framer: Framer,
  code: number,
  buf: Buffer,
  start: number,
  end: number,
  verdict: StatementSource | null,
): Buffer | ProxyError | Promise<Buffer> | null {
  if (code === FrontendCode.Parse) return answerParse(parts, framer, buf, start, end, verdict);
  const channels = verdict?.analysis?.channels;
  return channels?.only === true && parts.channels !== null ? parts.channels.answer(channels.actions) : null;
}

/**
 * A named Parse outside a transaction with its Sync or Flush right behind it is answered without a server
 * (PreparedStatements.answerParse): libpq's PQprepare blocks its thread on the answer, and a thread of pgbench
 * clients waiting for a server its own clients held mid-transaction never got one. Returns the answer (ParseComplete,
 * or the refusal) or null when a server must answer.
 */
function answerParse(
  parts: ClientParts,
  framer: Framer,
  buf: Buffer,
  start: number,
  end: number,
  verdict: StatementSource | null,
): Buffer | ProxyError | null {
  const next = buf === framer.buffer && end === framer.end ? framer.peekCode() : -1;
  const answer = parts.prepared.answerParse(buf, start, end, verdict?.analysis, next);
  if (answer === null || answer instanceof ProxyError) return answer;
  parts.tracker?.parsed(answer, verdict!);
  return PARSE_COMPLETE;
}
