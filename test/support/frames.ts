// Extended-protocol frames and exchanges for raw-socket tests, through the proxy or straight to PostgreSQL.
import { inject } from 'vitest';
import { connectServer, upstreamTarget } from '../../src/backend/connect.js';
import type { Config } from '../../src/config/schema.js';
import { Writer } from '../../src/protocol/writer.js';
import { RawClient, type RawMessage } from './raw-client.js';

export const parse = (name: string, sql: string) =>
  new Writer().begin(0x50).cstring(name).cstring(sql).int16(0).end().flush();
export const bind = (stmt: string) =>
  new Writer().begin(0x42).cstring('').cstring(stmt).int16(0).int16(0).int16(0).end().flush();
export const describeStatement = (stmt: string) => new Writer().begin(0x44).int8(0x53).cstring(stmt).end().flush();
export const describePortal = new Writer().begin(0x44).int8(0x50).cstring('').end().flush();
export const close = (stmt: string) => new Writer().begin(0x43).int8(0x53).cstring(stmt).end().flush();
export const query = (sql: string) => new Writer().begin(0x51).cstring(sql).end().flush();
export const execute = new Writer().begin(0x45).cstring('').int32(0).end().flush();
export const sync = new Writer().begin(0x53).end().flush();
export const flush = new Writer().begin(0x48).end().flush();

export const codes = (raw: RawClient) => raw.messages.map((m) => m.code).join('');
/** The CommandComplete tags received. */
export const tags = (raw: RawClient) =>
  raw.messages.filter((m) => m.code === 'C').map((m) => m.body.toString('utf8', 0, m.body.length - 1));
export const settle = async (raw: RawClient, readyCount: number) => {
  for (let i = 0; i < 100 && raw.messages.filter((m) => m.code === 'Z').length < readyCount; i++)
    await new Promise((r) => setTimeout(r, 20));
};

/** An ErrorResponse's fields by their type letter (C code, M message, P position, R routine…). */
export function errorFields(message: RawMessage): Record<string, string> {
  const fields: Record<string, string> = {};
  let at = 0;
  while (at < message.body.length && message.body[at] !== 0) {
    const nul = message.body.indexOf(0, at + 1);
    fields[String.fromCharCode(message.body[at]!)] = message.body.toString('utf8', at + 1, nul);
    at = nul + 1;
  }
  return fields;
}

/** The column type OIDs of a RowDescription. */
export function columnTypes(message: RawMessage): number[] {
  const types: number[] = [];
  const body = message.body;
  let at = 2;
  for (let i = 0; i < body.readInt16BE(0); i++) {
    at = body.indexOf(0, at) + 1;
    types.push(body.readInt32BE(at + 6));
    at += 18;
  }
  return types;
}

export interface Exchange {
  codes: string;
  tags: string[];
  /** The ReadyForQuery status letters. */
  status: string;
  /** The first error's code, message and position, as PostgreSQL or the proxy sent them. */
  error?: { code: string; message: string; position?: string };
  /** The column types of the last RowDescription. */
  types?: number[];
}

/** Sends `frames` and waits for `readyCount` ReadyForQuery; returns what came back and starts afresh. */
export async function exchange(raw: RawClient, frames: Buffer[], readyCount = 1): Promise<Exchange> {
  raw.messages.length = 0;
  raw.write(Buffer.concat(frames));
  await settle(raw, readyCount);
  const error = raw.messages.find((m) => m.code === 'E');
  const rows = raw.messages.filter((m) => m.code === 'T');
  const fields = error === undefined ? undefined : errorFields(error);
  const result: Exchange = {
    codes: codes(raw),
    tags: tags(raw),
    status: raw.messages
      .filter((m) => m.code === 'Z')
      .map((m) => String.fromCharCode(m.body[0]!))
      .join(''),
  };
  if (fields !== undefined)
    result.error = { code: fields.C!, message: fields.M!, ...(fields.P === undefined ? {} : { position: fields.P }) };
  if (rows.length > 0) result.types = columnTypes(rows[rows.length - 1]!);
  raw.messages.length = 0;
  return result;
}

/** A raw connection straight to PostgreSQL as the proxy's role, in `schema`: what a direct connection shows. */
export async function directRaw(config: Config, schema: string): Promise<RawClient> {
  const server = await connectServer(upstreamTarget(config));
  const raw = RawClient.wrap(server.socket);
  await exchange(raw, [query(`SET search_path TO ${schema}`)]);
  return raw;
}

/** A raw client logged in through the proxy on `port` with `token`. */
export async function proxyRaw(port: number, token: string): Promise<RawClient> {
  const raw = await RawClient.connect(port);
  raw.startup({ user: 'app', database: inject('pg').database, tenant_token: token });
  await raw.waitFor('Z');
  raw.messages.length = 0;
  return raw;
}
