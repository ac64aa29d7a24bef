// The prepared statements the proxy made on one server, shared by a tenant's clients: least recently used first.

/** A prepared statement the proxy made on a server, shared by the tenant's clients that parse the same text. */
export interface ServerStatement {
  /** Its name on the server (SERVER_STATEMENT_PREFIX + a number). */
  name: string;
  /** When it was prepared, on the proxy's statement clock: compared with when a client parsed its statement. */
  preparedAt: number;
  /** PostgreSQL said its cached plan must not change result type: the schema changed under it unseen. */
  stale: boolean;
}

/** Keyed by (tenant schema, schema generation, Parse body): see frontend/prepared. */
export class ServerStatements {
  readonly #byKey = new Map<string, ServerStatement>();
  #distrusted = false;

  get size(): number {
    return this.#byKey.size;
  }

  /** A client ran SQL-level PREPARE/DEALLOCATE here: only a DISCARD ALL can say again what the server holds. */
  get distrusted(): boolean {
    return this.#distrusted;
  }

  get(key: string): ServerStatement | undefined {
    return this.#byKey.get(key);
  }

  /** Adds or uses a statement: it becomes the most recently used. */
  touch(key: string, statement: ServerStatement): void {
    this.#byKey.delete(key);
    this.#byKey.set(key, statement);
  }

  delete(key: string): void {
    this.#byKey.delete(key);
  }

  /** Removes and returns the least recently used statement. */
  evictOldest(): ServerStatement | undefined {
    const oldest = this.#byKey.entries().next();
    if (oldest.done === true) return undefined;
    this.#byKey.delete(oldest.value[0]);
    return oldest.value[1];
  }

  /** Least recently used first. */
  entries(): IterableIterator<[string, ServerStatement]> {
    return this.#byKey.entries();
  }

  distrust(): void {
    this.#distrusted = true;
    this.#byKey.clear();
  }

  /** DISCARD ALL ran: nothing is prepared here any more. */
  discarded(): void {
    this.#byKey.clear();
    this.#distrusted = false;
  }
}
