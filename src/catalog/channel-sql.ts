// The catalog filter's pg_notify(): the channel, literal or computed, prefixed in SQL with the tenant's tag.
import { MAX_TENANT_CHANNEL_BYTES } from '../channels/names.js';
import { CATALOG_SCHEMA as S } from './surfaces.js';

const eq = 'OPERATOR(pg_catalog.=)';

/**
 * channel_prefix(): the tag of the tenant whose schema the session's search path names (the proxy pins it and the
 * guard refuses changing it; see tenant_backends() in install.ts), as channels/names.ts computes it. pg_notify(): the
 * server's, on the prefixed channel; refused as PostgreSQL refuses an empty or too long name, never truncated. Every
 * call and operator is qualified: the functions run with the caller's search path.
 */
export function channelFunctions(): string[] {
  return [
    `CREATE OR REPLACE FUNCTION ${S}.channel_prefix() RETURNS pg_catalog.text LANGUAGE plpgsql STABLE AS $$
DECLARE s pg_catalog.text;
BEGIN
  SELECT n.nspname::pg_catalog.text INTO s FROM pg_catalog.pg_namespace n
   WHERE pg_catalog.quote_ident(n.nspname) ${eq} pg_catalog.current_setting('search_path');
  IF s IS NULL THEN
    RAISE EXCEPTION 'pg_notify() through pg-tenant-proxy needs the tenant''s own search_path' USING ERRCODE = '42501';
  END IF;
  RETURN pg_catalog.concat('pgtp:',
    pg_catalog.left(pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(s, 'UTF8')), 'hex'), 16), ':');
END $$`,
    `CREATE OR REPLACE FUNCTION ${S}.pg_notify(pg_catalog.text, pg_catalog.text) RETURNS void LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  IF $1 IS NULL OR $1 ${eq} '' THEN
    RAISE EXCEPTION 'channel name cannot be empty' USING ERRCODE = '22023';
  END IF;
  IF pg_catalog.octet_length($1) OPERATOR(pg_catalog.>) ${MAX_TENANT_CHANNEL_BYTES} THEN
    RAISE EXCEPTION 'channel name too long' USING ERRCODE = '22023',
      DETAIL = 'through pg-tenant-proxy a channel name has at most ${MAX_TENANT_CHANNEL_BYTES} bytes';
  END IF;
  PERFORM pg_catalog.pg_notify(pg_catalog.concat(${S}.channel_prefix(), $1), $2);
END $$`,
  ];
}
