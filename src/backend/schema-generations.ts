// Per-tenant schema generations: a counter bumped on every DDL the proxy sees, so statements cached before it are not shared.

/** One tenant's generation, shared by reference between its sessions: reading it is a property access, no lookup. */
export interface SchemaGeneration {
  value: number;
}

/**
 * The generations of the tenants whose statements are cached on one pool's servers. The generation is part of the key
 * a server caches a statement under, so a client's Parse after DDL is never mapped onto a statement prepared before
 * it (see frontend/prepared). One entry per tenant schema that ever logged in: bounded by provisioned tenants.
 */
export class SchemaGenerations {
  private readonly bySchema = new Map<string, SchemaGeneration>();

  of(schema: string): SchemaGeneration {
    let generation = this.bySchema.get(schema);
    if (generation === undefined) {
      generation = { value: 0 };
      this.bySchema.set(schema, generation);
    }
    return generation;
  }
}
