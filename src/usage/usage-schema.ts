// The registry's usage tables and the one function through which proxies add to them (registry version 5).

/** How GRANT and has_function_privilege name the flush function (argument types only). */
export const USAGE_FLUSH_SIGNATURE =
  'usage_flush(uuid, bigint, timestamptz, timestamptz, timestamptz, text[], bigint[], bigint[], bigint[], bigint[], bigint[], bigint[], bigint[], integer[])';

/** The statements of the upgrade step; `s` is the quoted registry schema. */
export function usageTables(s: string): string[] {
  return [
    // No foreign key to tenants: usage outlives a tenant's record for billing, and a flush naming a tenant deleted a
    // moment ago must not fail the other tenants' deltas with it.
    `CREATE TABLE ${s}.usage_hours (
       tenant_id text NOT NULL,
       hour timestamptz NOT NULL,
       transactions bigint NOT NULL DEFAULT 0,
       statements bigint NOT NULL DEFAULT 0,
       server_ms bigint NOT NULL DEFAULT 0,
       bytes_in bigint NOT NULL DEFAULT 0,
       bytes_out bigint NOT NULL DEFAULT 0,
       rows_returned bigint NOT NULL DEFAULT 0,
       rows_affected bigint NOT NULL DEFAULT 0,
       PRIMARY KEY (tenant_id, hour)
     )`,
    `CREATE INDEX usage_hours_hour ON ${s}.usage_hours (hour)`,
    // Peaks cannot be added across instances: each instance's peak is kept with the span it was seen in, and a
    // report adds up only instances whose spans overlap (one that replaced another across a restart does not add).
    `CREATE TABLE ${s}.usage_peaks (
       tenant_id text NOT NULL,
       hour timestamptz NOT NULL,
       instance uuid NOT NULL,
       peak_clients integer NOT NULL,
       first_at timestamptz NOT NULL,
       last_at timestamptz NOT NULL,
       PRIMARY KEY (tenant_id, hour, instance)
     )`,
    // The last flush each proxy process had applied: a retry of a flush that committed (its answer lost) carries a
    // sequence number not above it and is recognised and skipped. Flushes of one process are strictly sequential.
    `CREATE TABLE ${s}.usage_instances (
       instance uuid PRIMARY KEY,
       last_seq bigint NOT NULL,
       first_flush_at timestamptz NOT NULL DEFAULT now(),
       last_flush_at timestamptz NOT NULL DEFAULT now()
     )`,
    // SECURITY DEFINER: the proxy's login role (which tenants share in guard-only mode) gets no write on any table,
    // only this function, which can add to buckets and nothing else.
    `CREATE FUNCTION ${s}.usage_flush(
       p_instance uuid, p_seq bigint, p_hour timestamptz, p_since timestamptz, p_until timestamptz,
       p_tenants text[], p_transactions bigint[], p_statements bigint[], p_server_ms bigint[], p_bytes_in bigint[],
       p_bytes_out bigint[], p_rows_returned bigint[], p_rows_affected bigint[], p_peak_clients integer[]
     ) RETURNS boolean LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
     BEGIN
       IF p_hour <> date_trunc('hour', p_hour, 'UTC') OR p_seq < 1 THEN
         RAISE EXCEPTION 'usage_flush: bad hour % or sequence %', p_hour, p_seq;
       END IF;
       -- Whoever may call this can only add: no negative delta takes usage away.
       IF 0 > ANY (p_transactions) OR 0 > ANY (p_statements) OR 0 > ANY (p_server_ms) OR 0 > ANY (p_bytes_in)
          OR 0 > ANY (p_bytes_out) OR 0 > ANY (p_rows_returned) OR 0 > ANY (p_rows_affected)
          OR 0 > ANY (p_peak_clients) THEN
         RAISE EXCEPTION 'usage_flush: negative delta';
       END IF;
       IF p_seq = 1 THEN
         -- A new process: forget processes silent for long (their retries could not still be pending).
         DELETE FROM ${s}.usage_instances WHERE last_flush_at < now() - interval '35 days';
       END IF;
       -- The row lock taken here also serialises a retry behind an attempt still running on a lost connection.
       INSERT INTO ${s}.usage_instances AS i (instance, last_seq) VALUES (p_instance, p_seq)
         ON CONFLICT (instance) DO UPDATE SET last_seq = EXCLUDED.last_seq, last_flush_at = now()
         WHERE i.last_seq < EXCLUDED.last_seq;
       IF NOT FOUND THEN
         RETURN false;
       END IF;
       -- Rows in tenant order: two processes flushing at once lock them in the same order and cannot deadlock.
       INSERT INTO ${s}.usage_hours AS u (tenant_id, hour, transactions, statements, server_ms, bytes_in, bytes_out,
           rows_returned, rows_affected)
         SELECT d.tenant_id, p_hour, d.transactions, d.statements, d.server_ms, d.bytes_in, d.bytes_out,
                d.rows_returned, d.rows_affected
           FROM unnest(p_tenants, p_transactions, p_statements, p_server_ms, p_bytes_in, p_bytes_out,
                       p_rows_returned, p_rows_affected)
                AS d(tenant_id, transactions, statements, server_ms, bytes_in, bytes_out, rows_returned, rows_affected)
          ORDER BY d.tenant_id
         ON CONFLICT (tenant_id, hour) DO UPDATE SET
           transactions = u.transactions + EXCLUDED.transactions,
           statements = u.statements + EXCLUDED.statements,
           server_ms = u.server_ms + EXCLUDED.server_ms,
           bytes_in = u.bytes_in + EXCLUDED.bytes_in,
           bytes_out = u.bytes_out + EXCLUDED.bytes_out,
           rows_returned = u.rows_returned + EXCLUDED.rows_returned,
           rows_affected = u.rows_affected + EXCLUDED.rows_affected;
       INSERT INTO ${s}.usage_peaks AS p (tenant_id, hour, instance, peak_clients, first_at, last_at)
         SELECT d.tenant_id, p_hour, p_instance, d.peak, greatest(p_since, p_hour), p_until
           FROM unnest(p_tenants, p_peak_clients) AS d(tenant_id, peak)
          WHERE d.peak > 0
          ORDER BY d.tenant_id
         ON CONFLICT (tenant_id, hour, instance) DO UPDATE SET
           peak_clients = greatest(p.peak_clients, EXCLUDED.peak_clients),
           first_at = least(p.first_at, EXCLUDED.first_at),
           last_at = greatest(p.last_at, EXCLUDED.last_at);
       RETURN true;
     END $$`,
    `REVOKE ALL ON FUNCTION ${s}.${USAGE_FLUSH_SIGNATURE} FROM PUBLIC`,
  ];
}
