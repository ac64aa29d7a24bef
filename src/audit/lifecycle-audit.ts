// Tenant lifecycle events (CLI and library verbs) appended to audit.file, in the same JSON-lines stream as the proxy's.
import fs from 'node:fs';
import { ConfigError } from '../config/load.js';
import type { Config } from '../config/schema.js';
import type { LifecycleEvent } from '../tenants/registry-store.js';

/**
 * Writes `{"log":"audit","time":…,"event":"tenant_lifecycle",…}` lines. The file is opened when the admin session
 * starts, so an unwritable audit file stops a verb before it changes anything. Each line is one write(2) on an
 * O_APPEND descriptor: whole, even with a running proxy appending to the same file. Without audit.file (or with
 * audit.enabled false) the registry's events table is the only record: the verbs' stdout is their result alone.
 */
export class LifecycleAudit {
  private fd: number | null;

  constructor(config: Config) {
    const file = config.audit.enabled ? config.audit.file : undefined;
    if (file === undefined) {
      this.fd = null;
      return;
    }
    try {
      this.fd = fs.openSync(file, 'a', 0o640);
    } catch (err) {
      throw new ConfigError(`cannot open "${file}" for appending: ${(err as Error).message}`, 'audit.file');
    }
  }

  write(event: LifecycleEvent): void {
    if (this.fd === null) return;
    const line = JSON.stringify({
      log: 'audit',
      time: new Date().toISOString(),
      event: 'tenant_lifecycle',
      verb: event.verb,
      tenant: event.tenant,
      actor: event.actor,
      outcome: event.outcome,
      details: event.details,
    });
    fs.writeSync(this.fd, `${line}\n`);
  }

  close(): void {
    if (this.fd !== null) fs.closeSync(this.fd);
    this.fd = null;
  }
}
