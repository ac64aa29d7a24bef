// Runs lifecycle verbs one at a time over one admin connection: each in its transaction, recorded as an event and audited.
import type { LifecycleAudit } from '../audit/lifecycle-audit.js';
import type { SqlRunner } from './provision.js';
import type { LifecycleEvent, RegistryStore } from './registry-store.js';
import { toTenantError } from './tenant-error.js';

/** A verb's work: its result, and the outcome and details its event records. */
export type VerbBody<T> = (
  db: SqlRunner,
) => Promise<{ result: T; outcome: LifecycleEvent['outcome']; details: Record<string, unknown> }>;

export class VerbRunner {
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly db: SqlRunner,
    private readonly store: RegistryStore,
    private readonly audit: LifecycleAudit,
    private readonly actor: string,
  ) {}

  /**
   * Runs one verb after any still running: in a transaction whose last statement records the event (so the change
   * and its record commit together), or, for reads, without one. A failure rolls back, is recorded as an event of
   * its own when the database still answers, and rethrown as a TenantError. The audit file gets either.
   */
  run<T>(verb: string, tenant: string | null, body: VerbBody<T>, transaction = true): Promise<T> {
    const task = async (): Promise<T> => {
      const db = this.db;
      let event: LifecycleEvent;
      let result: T;
      try {
        if (transaction) {
          await db.query('BEGIN');
          // Two creates of one id, or a suspend racing a create, take turns; other tenants are not held up.
          await db.query('SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext($1), pg_catalog.hashtext($2))', [
            `pg-tenant-proxy tenant ${this.store.schema}`,
            tenant ?? '',
          ]);
        }
        const done = await body(db);
        event = { actor: this.actor, verb, tenant, outcome: done.outcome, details: done.details };
        await this.store.recordEvent(db, event);
        if (transaction) await db.query('COMMIT');
        result = done.result;
      } catch (err) {
        if (transaction) await db.query('ROLLBACK').catch(() => undefined);
        const error = toTenantError(err);
        const failed: LifecycleEvent = {
          actor: this.actor,
          verb,
          tenant,
          outcome: 'error',
          details: { error: error.message, code: error.code, ...(error.step !== undefined && { step: error.step }) },
        };
        await this.store.recordEvent(db, failed).catch(() => undefined);
        this.audit.write(failed);
        throw error;
      }
      this.audit.write(event);
      return result;
    };
    const next = this.queue.then(task, task);
    this.queue = next.catch(() => undefined);
    return next;
  }

  /** Settles once every verb queued so far has finished (close waits for it). */
  async idle(): Promise<void> {
    await this.queue.catch(() => undefined);
  }
}
