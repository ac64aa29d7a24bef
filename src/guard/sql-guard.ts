// Allow/deny for statement text and a tenant: cached analyses (exact text, then normalized text) judged per schema.
import { createHash } from 'node:crypto';
import { loadModule, normalizeSync } from 'libpg-query';
import { tenantSchemaShape } from '../auth/identity.js';
import { SqlState } from '../protocol/codes.js';
import { ProxyError } from '../protocol/errors.js';
import { analyzeSql, type Analysis, type GuardRule } from './analyze.js';
import { literalKey } from './literal-key.js';
import { Lru } from './lru.js';
import { SKELETON_FROM_CHARS, skeletonFor, type Skeleton } from './skeleton.js';

export interface GuardPolicy {
  /** Schemas every tenant may name besides its own (pg_catalog is always allowed). */
  sharedSchemas: readonly string[];
  /** Extra function names refused for everyone (lower case, unqualified or pg_catalog). */
  deniedFunctions: readonly string[];
  /**
   * The most the guard parses of one statement: the statement itself, or for a long one its skeleton (long string
   * literals set aside), and any body or literal it must read in full. Longer is refused (54000).
   */
  maxStatementBytes: number;
  /** Entries per cache (exact text, normalized text). */
  cacheSize: number;
  /** false turns off the cross-schema name rules only; session identity and escape-hatch rules always apply. */
  checkNames: boolean;
  /**
   * policy.catalogFilter: catalog references are rewritten to the filtered views in CATALOG_SCHEMA (StatementAnalysis
   * .catalog, applied by rewrite-frame.ts). Off when absent.
   */
  catalogFilter?: boolean;
  /** tenancy.schemaTemplate and tenancy.tenantPattern: what any tenant's schema name looks like. */
  schemaTemplate?: string;
  tenantPattern?: string;
}

export interface Refusal {
  error: ProxyError;
  rule: GuardRule;
  /** What the refused statement is, for the audit (absent for refusals not about the text, e.g. a parameter type). */
  analysis?: StatementAnalysis;
}

/** An analysis as cached: also what the audit log records of the statement, with its literals abstracted. */
export interface StatementAnalysis extends Analysis {
  /** The parser's normalised text (literals replaced by $n); null when the text does not parse. */
  normalized: string | null;
  /** First 16 hex digits of the SHA-256 of `normalized`: equal for statements that differ only in literals. */
  fingerprint: string | null;
}

export interface GuardStats {
  exactHits: number;
  normalizedHits: number;
  misses: number;
}

export interface SqlGuard {
  /** The cached analysis when the statement may run for a tenant whose schema is `schema`, else the refusal. */
  check(text: string, schema: string): Refusal | StatementAnalysis;
  /** The cached analysis without judging it (for auditing sessions the guard does not check). */
  describe(text: string): StatementAnalysis;
  /**
   * Why the catalog filter cannot be used (not installed, another version), or null: while set, statements that
   * name a catalog are refused with a hint naming the install command, never sent unfiltered.
   */
  catalogFilterMissing(reason: string | null): void;
  readonly stats: GuardStats;
}

/** libpg-query's WASM module must be loaded once before the first synchronous parse. */
let parserReady: Promise<void> | null = null;
export function loadParser(): Promise<void> {
  parserReady ??= loadModule();
  return parserReady;
}

// Catalog views show names, not data; what they reveal is documented (README, security model).
const ALWAYS_ALLOWED = ['pg_catalog', 'information_schema'];
/**
 * Characters each verdict cache may hold besides its entry count (policy.cacheSize): 10,000 distinct statements of
 * 16 KB, which one client can send in a second, would otherwise keep several hundred MB.
 */
const CACHE_CHARS = 16 * 1024 * 1024;
/** A cache entry's charge: its key and the normalised text its analysis keeps for the audit (counted per entry). */
const heldChars = (key: string, analysis: StatementAnalysis): number => key.length + (analysis.normalized?.length ?? 0);

export function createSqlGuard(policy: GuardPolicy): SqlGuard {
  const exact = new Lru<string, StatementAnalysis>(policy.cacheSize, CACHE_CHARS, heldChars);
  const normalized = new Lru<string, StatementAnalysis>(policy.cacheSize, CACHE_CHARS, heldChars);
  const shared = new Set([...ALWAYS_ALLOWED, ...policy.sharedSchemas]);
  const deniedFunctions = new Set(policy.deniedFunctions.map((f) => f.toLowerCase()));
  const shape =
    policy.schemaTemplate === undefined || policy.tenantPattern === undefined
      ? null
      : tenantSchemaShape(policy.schemaTemplate, policy.tenantPattern);
  const stats: GuardStats = { exactHits: 0, normalizedHits: 0, misses: 0 };
  let catalogMissing: string | null = null;
  /** Texts larger than this are analysed but not kept, so the cache's memory stays bounded. */
  const maxCachedText = 16 * 1024;

  const analyze = (text: string): StatementAnalysis => {
    const hit = exact.get(text);
    if (hit !== undefined) {
      stats.exactHits++;
      return hit;
    }
    // A long statement is judged from its skeleton, never parsed (or normalised) whole; it is too long to be cached.
    const skeleton = skeletonFor(text, policy.maxStatementBytes);
    const short =
      skeleton === null &&
      text.length < SKELETON_FROM_CHARS &&
      (text.length * 3 <= policy.maxStatementBytes || Buffer.byteLength(text) <= policy.maxStatementBytes);
    let key: string | null = short ? literalKey(text) : null;
    if (key === null && short) {
      try {
        key = normalizeSync(text);
      } catch {
        // Unparsable: the full analysis below reports the syntax error.
      }
    } else if (key !== null) {
      // The cheap key and the parser's normalised text live in different key spaces.
      key = `\u0001${key}`;
    }
    const shareable = key === null ? undefined : normalized.get(key);
    if (shareable !== undefined) {
      stats.normalizedHits++;
      if (text.length <= maxCachedText) exact.set(text, shareable);
      return shareable;
    }
    stats.misses++;
    const analysis = withFingerprint(
      catalogChecked(
        analyzeSql(skeleton ?? text, deniedFunctions, shape, policy.maxStatementBytes, policy.catalogFilter === true),
        text,
      ),
      skeleton ?? text,
    );
    if (text.length <= maxCachedText) exact.set(text, analysis);
    // Only analyses that never looked at a literal may serve texts that differ from this one in literals; nor may a
    // catalog rewrite, whose splice offsets are this text's (a literal of another length moves them).
    if (key !== null && !analysis.literalDependent && analysis.catalog === null && key.length <= maxCachedText)
      normalized.set(key, analysis);
    return analysis;
  };

  return {
    stats,
    // A session the guard does not check is audited, not rewritten: it reads the catalogs as they are.
    describe(text) {
      const analysis = analyze(text);
      return analysis.catalog === null ? analysis : { ...analysis, catalog: null, channels: null };
    },
    catalogFilterMissing(reason) {
      catalogMissing = reason;
    },
    check(text, schema) {
      const analysis = analyze(text);
      const denial = analysis.denial;
      if (denial !== null) {
        const error = new ProxyError(denial.sqlstate, denial.message);
        error.position = denial.position;
        return { rule: denial.rule, error, analysis };
      }
      if (catalogMissing !== null && analysis.catalog?.filtered === true) {
        return {
          rule: 'catalog',
          analysis,
          error: new ProxyError(
            SqlState.INSUFFICIENT_PRIVILEGE,
            `reading the catalogs is not allowed through pg-tenant-proxy: ${catalogMissing}`,
            'ERROR',
            undefined,
            'an administrator runs `pg-tenant-proxy catalog install --config FILE` (or sets policy.catalogFilter: false)',
          ),
        };
      }
      if (!policy.checkNames) return analysis;
      for (const [named, example] of analysis.schemas) {
        if (named === schema || shared.has(named)) continue;
        return {
          rule: 'schema',
          analysis,
          error: new ProxyError(
            SqlState.INSUFFICIENT_PRIVILEGE,
            `"${example}" is outside the tenant's schema`,
            'ERROR',
            `only schema "${schema}"${
              shared.size > ALWAYS_ALLOWED.length
                ? ` and ${[...shared]
                    .filter((s) => !ALWAYS_ALLOWED.includes(s))
                    .map((s) => `"${s}"`)
                    .join(', ')}`
                : ''
            } may be named`,
          ),
        };
      }
      return analysis;
    },
  };
}

/**
 * Splice offsets are bytes of the text's UTF-8 encoding, which are the frame's own bytes only when the frame was
 * valid UTF-8; one that was not decodes with U+FFFD in it, and a catalog statement like that is refused, not guessed.
 */
function catalogChecked(analysis: Analysis, text: string): Analysis {
  if (analysis.catalog === null || !text.includes('\uFFFD')) return analysis;
  return {
    ...analysis,
    catalog: null,
    denial: {
      rule: 'catalog',
      sqlstate: SqlState.INSUFFICIENT_PRIVILEGE,
      message: 'a catalog query that is not valid UTF-8 is not allowed through pg-tenant-proxy',
    },
  };
}

function withFingerprint(analysis: Analysis, parsed: string | Skeleton): StatementAnalysis {
  let normalizedText: string | null = null;
  // Nothing unparsed (a syntax error) or over the parse limit is normalised.
  if (analysis.denial?.rule !== 'syntax' && analysis.denial?.rule !== 'too_large') {
    try {
      // A skeleton normalises like its statement (literals become $n), but for the placeholders of literals that are
      // not constants (a DO body): those are shown as an ellipsis, so the fingerprint does not depend on the nonce.
      normalizedText = typeof parsed === 'string' ? normalizeSync(parsed) : parsed.elide(normalizeSync(parsed.text));
    } catch {
      // Parsed for the analysis but not normalisable: recorded without a text rather than with its literals.
    }
  }
  const fingerprint =
    normalizedText === null ? null : createHash('sha256').update(normalizedText).digest('hex').slice(0, 16);
  return { ...analysis, normalized: normalizedText, fingerprint };
}

export function isRefusal(verdict: Refusal | Analysis): verdict is Refusal {
  return (verdict as Refusal).error !== undefined;
}
