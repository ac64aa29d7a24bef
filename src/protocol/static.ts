// Prebuilt constant frames, built once.
import { AuthRequest, BackendCode, FrontendCode, TxStatus } from './codes.js';
import { Writer } from './writer.js';

function readyForQuery(status: number): Buffer {
  return new Writer(6).begin(BackendCode.ReadyForQuery).int8(status).end().flush();
}

function authentication(kind: number): Buffer {
  return new Writer(9).begin(BackendCode.Authentication).int32(kind).end().flush();
}

export const READY_FOR_QUERY_IDLE = readyForQuery(TxStatus.Idle);
/** An empty simple-protocol Query outside a transaction, answered as PostgreSQL does. */
export const EMPTY_QUERY_IDLE = Buffer.concat([
  new Writer(5).begin(BackendCode.EmptyQueryResponse).end().flush(),
  READY_FOR_QUERY_IDLE,
]);
export const PARSE_COMPLETE = new Writer(5).begin(BackendCode.ParseComplete).end().flush();
export const AUTHENTICATION_OK = authentication(AuthRequest.Ok);
export const AUTHENTICATION_CLEARTEXT = authentication(AuthRequest.CleartextPassword);
export const SSL_ACCEPT = Buffer.from('S');
export const SSL_REFUSE = Buffer.from('N');
export const GSSENC_REFUSE = Buffer.from('N');
export const TERMINATE = new Writer(5).begin(FrontendCode.Terminate).end().flush();
export const SYNC = new Writer(5).begin(FrontendCode.Sync).end().flush();
