// Channels per tenant: NOTIFY, LISTEN, UNLISTEN and pg_notify() as the guard rewrites them (see channels/names.ts).
//
// NOTIFY goes out with the channel prefixed by the tenant's tag (a splice whose text depends on the tenant), pg_notify
// is pointed at the catalog filter's wrapper (which prefixes in SQL, so a computed channel is namespaced too), and a
// LISTEN/UNLISTEN is recorded for the proxy to answer and replaced by a stand-in on the server. Only the top-level
// text can be rewritten: inside a function body, a DO block, a rule or a long statement these are refused.
import { CATALOG_SCHEMA } from '../catalog/surfaces.js';
import { channelNameProblem, LISTEN_STAND_IN, notifyStatement, UNLISTEN_STAND_IN } from '../channels/names.js';
import type { ChannelAction } from './analysis.js';
import { CatalogRefs, type Splice } from './catalog-refs.js';
import { SqlState } from '../protocol/codes.js';
import type { Json } from './tree-nodes.js';

const WHY = 'the proxy namespaces channels only in statements it can rewrite';

export class ChannelRules {
  readonly splices: Splice[] = [];
  readonly actions: ChannelAction[] = [];
  /** A pg_notify() call now goes through the catalog filter's wrapper. */
  usesCatalog = false;
  statements = 0;
  /** The top-level statement being walked and its byte range in the text. */
  private current: { stmt: Json; start: number; end: number; index: number } | null = null;
  private refs: CatalogRefs | null = null;

  /**
   * `source`: the text's bytes, or null where nothing can be spliced (a body, a skeleton); `deny`: the analyser's,
   * with rule `unsupported`.
   */
  constructor(
    private readonly source: Buffer | null,
    private readonly deny: (what: string, sqlstate?: string) => void,
  ) {}

  /** The next top-level statement of the text. */
  statement(stmt: Json, start: number, end: number): void {
    this.current = { stmt, start, end, index: this.statements++ };
  }

  /** NotifyStmt, ListenStmt or UnlistenStmt. */
  command(type: string, node: Json): void {
    const verb = type === 'NotifyStmt' ? 'NOTIFY' : type === 'ListenStmt' ? 'LISTEN' : 'UNLISTEN';
    const current = this.current;
    if (this.source === null || current === null || current.stmt[type] !== node) {
      this.deny(`${verb} inside a function body, DO block, rule or long statement (${WHY})`);
      return;
    }
    const channel = typeof node.conditionname === 'string' ? node.conditionname : null;
    const problem = channel === null ? null : channelNameProblem(channel);
    if (problem !== null) {
      this.deny(problem, SqlState.INVALID_PARAMETER_VALUE);
      return;
    }
    const { start, end } = current;
    if (type === 'NotifyStmt') {
      const payload = typeof node.payload === 'string' ? node.payload : null;
      this.splices.push({ start, end, text: '', tenant: (prefix) => notifyStatement(prefix, channel!, payload) });
      return;
    }
    const listen = type === 'ListenStmt';
    this.actions.push({ listen, channel, index: current.index });
    this.splices.push({ start, end, text: listen ? LISTEN_STAND_IN : UNLISTEN_STAND_IN });
  }

  /** pg_notify(channel, payload), unqualified or pg_catalog.: to the wrapper that prefixes the channel in SQL. */
  call(parts: string[], node: Json): void {
    if (this.source === null) {
      this.deny(`pg_notify() inside a function body, DO block or long statement (${WHY})`);
      return;
    }
    this.refs ??= new CatalogRefs(this.source);
    const before = this.refs.splices.length;
    const refusal = this.refs.rename(parts, node, `${CATALOG_SCHEMA}.pg_notify`);
    if (refusal !== null) {
      this.deny(refusal);
      return;
    }
    this.splices.push(...this.refs.splices.slice(before));
    this.usesCatalog = true;
  }
}
