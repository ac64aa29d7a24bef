// Reads a YAML/JSON config file, applies PGTP_* environment overrides and returns a validated, frozen Config.
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import type { z } from 'zod';
import { configSchema, type Config } from './schema.js';

export const ENV_PREFIX = 'PGTP_';

export class ConfigError extends Error {
  constructor(
    message: string,
    /** Dotted key the problem is about, when there is one. */
    readonly key?: string,
  ) {
    super(key === undefined ? message : `${key}: ${message}`);
    this.name = 'ConfigError';
  }
}

/** `auth.jwt.publicKeyFile` → `PGTP_AUTH_JWT_PUBLIC_KEY_FILE`. */
export function envNameFor(key: string): string {
  return (
    ENV_PREFIX +
    key
      .split('.')
      .map((part) => part.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase())
      .join('_')
  );
}

export function loadConfig(file: string | undefined, env: NodeJS.ProcessEnv = process.env): Config {
  const raw = file === undefined ? {} : readConfigFile(file);
  applyEnvOverrides(raw, env);
  return validateConfig(raw);
}

export function validateConfig(raw: unknown): Config {
  const result = configSchema.safeParse(raw);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    const key = issue.path.map(String).join('.');
    throw new ConfigError(issue.message, key === '' ? undefined : key);
  }
  return deepFreeze(result.data);
}

function readConfigFile(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read config file ${file}: ${(err as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = file.endsWith('.json') ? JSON.parse(text) : parseYaml(text);
  } catch (err) {
    throw new ConfigError(`cannot parse config file ${file}: ${(err as Error).message}`);
  }
  if (parsed === null || parsed === undefined) return {};
  if (typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new ConfigError(`config file ${file} must hold a mapping at the top level`);
  }
  // A section holding only commented-out keys (`admin:` above `# url: …`) parses as null: it means "all defaults".
  for (const [key, value] of Object.entries(parsed))
    if (value === null) delete (parsed as Record<string, unknown>)[key];
  return parsed as Record<string, unknown>;
}

type Leaf = {
  key: string;
  /** json: a list of mappings (auth.issuers), which has no comma-separated spelling: its env value is JSON. */
  kind: 'string' | 'number' | 'boolean' | 'array' | 'json';
  /** The schema's default; absent for required keys and for optional ones whose absence means something. */
  default?: unknown;
};

/** Every settable leaf key, derived from the schema so the env names can never drift from it. */
export function configKeys(): Leaf[] {
  const leaves: Leaf[] = [];
  walk(configSchema, '', leaves);
  return leaves;
}

function walk(schema: z.ZodType, prefix: string, out: Leaf[]): void {
  const inner = unwrap(schema);
  const def = inner.def as { type: string; shape?: Record<string, z.ZodType>; element?: z.ZodType };
  if (def.type === 'object' && def.shape) {
    for (const [name, child] of Object.entries(def.shape)) walk(child, prefix === '' ? name : `${prefix}.${name}`, out);
    return;
  }
  // A list is one leaf: its elements have no dotted names. A list of mappings is set whole, as JSON, from the env.
  const ofObjects = def.type === 'array' && def.element !== undefined && unwrap(def.element).def.type === 'object';
  // A mapping of named entries (upstreams, limits.tiers) has no fixed dotted names either: JSON too.
  const kind =
    ofObjects || def.type === 'record'
      ? 'json'
      : def.type === 'number' || def.type === 'boolean' || def.type === 'array'
        ? def.type
        : 'string';
  const outer = schema.def as { type: string; defaultValue?: unknown };
  out.push(outer.type === 'default' ? { key: prefix, kind, default: outer.defaultValue } : { key: prefix, kind });
}

/** The schema under defaults, optionals and transforms (whose input side is what a config file sets). */
function unwrap(schema: z.ZodType): z.ZodType {
  let current = schema;
  for (;;) {
    const def = current.def as { type: string; innerType?: z.ZodType; in?: z.ZodType };
    if ((def.type === 'default' || def.type === 'optional' || def.type === 'prefault') && def.innerType) {
      current = def.innerType;
    } else if (def.type === 'pipe' && def.in) {
      current = def.in;
    } else {
      return current;
    }
  }
}

function applyEnvOverrides(raw: Record<string, unknown>, env: NodeJS.ProcessEnv): void {
  for (const leaf of configKeys()) {
    const value = env[envNameFor(leaf.key)];
    if (value === undefined || value === '') continue;
    const coerced = coerce(value, leaf);
    const current = getPath(raw, leaf.key);
    // upstreams from the file and from the env meet: the env's entries (a password) go into the file's.
    setPath(raw, leaf.key, isMapping(current) && isMapping(coerced) ? mergeDeep(current, coerced) : coerced);
  }
}

function coerce(value: string, leaf: Leaf): unknown {
  switch (leaf.kind) {
    case 'number': {
      const n = Number(value);
      if (!Number.isFinite(n)) throw new ConfigError(`${envNameFor(leaf.key)} must be a number`, leaf.key);
      return n;
    }
    case 'boolean':
      if (value === 'true' || value === '1') return true;
      if (value === 'false' || value === '0') return false;
      throw new ConfigError(`${envNameFor(leaf.key)} must be true or false`, leaf.key);
    case 'array':
      return value
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s !== '');
    case 'json':
      try {
        return JSON.parse(value) as unknown;
      } catch {
        throw new ConfigError(`${envNameFor(leaf.key)} must be a JSON list or mapping`, leaf.key);
      }
    case 'string':
      return value;
  }
}

function isMapping(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function mergeDeep(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(over)) {
    const existing = out[key];
    out[key] = isMapping(existing) && isMapping(value) ? mergeDeep(existing, value) : value;
  }
  return out;
}

function getPath(target: Record<string, unknown>, key: string): unknown {
  let node: unknown = target;
  for (const part of key.split('.')) {
    if (!isMapping(node)) return undefined;
    node = node[part];
  }
  return node;
}

function setPath(target: Record<string, unknown>, key: string, value: unknown): void {
  const parts = key.split('.');
  let node = target;
  for (const part of parts.slice(0, -1)) {
    const next = node[part];
    if (next === undefined || next === null) {
      node[part] = {};
    } else if (typeof next !== 'object' || Array.isArray(next)) {
      throw new ConfigError('must be a mapping', parts.slice(0, parts.indexOf(part) + 1).join('.'));
    }
    node = node[part] as Record<string, unknown>;
  }
  node[parts[parts.length - 1]!] = value;
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object') {
    for (const child of Object.values(value)) deepFreeze(child);
    Object.freeze(value);
  }
  return value;
}
