// Lazy readers for the few messages the proxy inspects; everything else passes through undecoded.
import { ProxyError } from './errors.js';
import { Writer } from './writer.js';
import { BackendCode, FrontendCode } from './codes.js';

/** Reads a NUL-terminated string at `at`; returns it and the offset after the NUL, or throws on a missing NUL. */
export function readCString(buf: Buffer, at: number, end: number): [string, number] {
  const nul = buf.indexOf(0, at);
  if (nul < 0 || nul >= end) throw ProxyError.protocolViolation('unterminated string in message');
  return [buf.toString('utf8', at, nul), nul + 1];
}

/** StartupMessage body (after length and version) → ordered name/value pairs; strict about termination. */
export function readStartupParams(buf: Buffer, start: number, end: number): Map<string, string> {
  const params = new Map<string, string>();
  let at = start + 8;
  for (;;) {
    if (at >= end) throw ProxyError.protocolViolation('startup packet is not terminated');
    if (buf[at] === 0) {
      if (at !== end - 1) throw ProxyError.protocolViolation('trailing bytes after startup packet terminator');
      return params;
    }
    const [name, afterName] = readCString(buf, at, end);
    const [value, afterValue] = readCString(buf, afterName, end);
    if (params.has(name)) throw ProxyError.protocolViolation(`duplicate startup parameter "${name}"`);
    params.set(name, value);
    at = afterValue;
  }
}

/** The query text of a Query or Parse frame. */
export function queryText(frame: Buffer, start: number, end: number): string {
  if (frame[start] === FrontendCode.Query) return readCString(frame, start + 5, end)[0];
  const [, afterName] = readCString(frame, start + 5, end);
  return readCString(frame, afterName, end)[0];
}

export function readParameterStatus(frame: Buffer, start: number, end: number): [string, string] {
  const [name, after] = readCString(frame, start + 5, end);
  return [name, readCString(frame, after, end)[0]];
}

export interface ErrorFields {
  severity: string;
  code: string;
  message: string;
  /** The source routine PostgreSQL raised it in (R): names an error independently of lc_messages. */
  routine: string;
}

/** Decodes S/V/C/M/R of an ErrorResponse or NoticeResponse (rare messages, so decoding is fine). */
export function readErrorFields(frame: Buffer, start: number, end: number): ErrorFields {
  const fields: ErrorFields = { severity: '', code: '', message: '', routine: '' };
  let at = start + 5;
  while (at < end && frame[at] !== 0) {
    const type = frame[at]!;
    const [value, next] = readCString(frame, at + 1, end);
    if (type === 0x56 || (type === 0x53 && fields.severity === ''))
      fields.severity = value; // 'V' wins over 'S'
    else if (type === 0x43) fields.code = value;
    else if (type === 0x4d) fields.message = value;
    else if (type === 0x52) fields.routine = value;
    at = next;
  }
  return fields;
}

export function encodeParameterStatus(name: string, value: string): Buffer {
  return new Writer(64).begin(BackendCode.ParameterStatus).cstring(name).cstring(value).end().flush();
}

export function encodeBackendKeyData(pid: number, secret: number): Buffer {
  return new Writer(16).begin(BackendCode.BackendKeyData).int32(pid).int32(secret).end().flush();
}

export function encodeCommandComplete(tag: string): Buffer {
  return new Writer(tag.length + 8).begin(BackendCode.CommandComplete).cstring(tag).end().flush();
}

export function encodeQuery(sql: string): Buffer {
  return new Writer(sql.length + 8).begin(FrontendCode.Query).cstring(sql).end().flush();
}

/** A Parse of the unnamed statement with no parameter types. */
export function encodeUnnamedParse(sql: string): Buffer {
  return new Writer(sql.length + 16).begin(FrontendCode.Parse).cstring('').cstring(sql).int16(0).end().flush();
}
