// Development token minting for `pg-tenant-proxy token`: signs with the configured secret or private key.
import { readFileSync } from 'node:fs';
import { createPrivateKey, type KeyObject } from 'node:crypto';
import { SignJWT } from 'jose';
import { ConfigError } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { algorithmsForKey } from './tenant-token.js';

export interface DevTokenOptions {
  tenant: string;
  sub?: string;
  ttlSeconds: number;
  /** Added to the payload; the standard claims and the tenant claim win over these. */
  extraClaims?: Record<string, unknown>;
  /** With auth.issuers: the issuer (by name) to sign as; it must have a secret. Default: the first one with a secret. */
  issuer?: string;
}

type SigningConfig = {
  secret?: string;
  privateKeyFile?: string;
  algorithms?: readonly string[];
  tenantClaim: string;
  issuer?: string;
  audience?: string;
};

/** auth.jwt, or with auth.issuers the named one (or the first with a secret): only secrets can mint from an issuer. */
function signingConfig(config: Config, name: string | undefined): SigningConfig {
  if (config.auth.jwt !== undefined) return config.auth.jwt;
  const issuers = config.auth.issuers ?? [];
  const found = name === undefined ? issuers.find((i) => i.secret !== undefined) : issuers.find((i) => i.name === name);
  if (found === undefined) {
    throw new ConfigError(
      name === undefined ? 'signing a token needs an issuer with a secret' : `no issuer is named "${name}"`,
      'auth.issuers',
    );
  }
  if (found.secret === undefined)
    throw new ConfigError(`issuer "${found.name}" has no secret to sign with`, 'auth.issuers');
  return found;
}

export async function signDevToken(config: Config, opts: DevTokenOptions): Promise<string> {
  const jwt = signingConfig(config, opts.issuer);
  // Minting a token the verifier would refuse only moves the error somewhere harder to read.
  if (!new RegExp(config.tenancy.tenantPattern).test(opts.tenant)) {
    throw new Error(`tenant "${opts.tenant}" does not match tenancy.tenantPattern ${config.tenancy.tenantPattern}`);
  }
  if (!Number.isSafeInteger(opts.ttlSeconds) || opts.ttlSeconds <= 0) {
    throw new Error(`ttl must be a positive whole number of seconds, got ${opts.ttlSeconds}`);
  }
  const { key, candidates } = signingKey(jwt);
  // Honour auth.jwt.algorithms so the token passes the same allow-list it will be checked against.
  const alg = jwt.algorithms?.find((a) => candidates.includes(a)) ?? candidates[0]!;

  const now = Math.floor(Date.now() / 1000);
  const builder = new SignJWT({ ...opts.extraClaims, [jwt.tenantClaim]: opts.tenant })
    .setProtectedHeader({ alg, typ: 'JWT' })
    .setIssuedAt(now)
    .setExpirationTime(now + opts.ttlSeconds);
  if (opts.sub !== undefined) builder.setSubject(opts.sub);
  if (jwt.issuer !== undefined) builder.setIssuer(jwt.issuer);
  if (jwt.audience !== undefined) builder.setAudience(jwt.audience);
  return builder.sign(key);
}

/** The secret wins when both are set, because the verifier then checks HMAC and would refuse a signed token. */
function signingKey(jwt: SigningConfig): { key: Uint8Array | KeyObject; candidates: string[] } {
  if (jwt.secret !== undefined) {
    return { key: new TextEncoder().encode(jwt.secret), candidates: ['HS256', 'HS384', 'HS512'] };
  }
  const file = jwt.privateKeyFile;
  if (file === undefined) {
    throw new ConfigError(
      'signing a token needs auth.jwt.secret or auth.jwt.privateKeyFile',
      'auth.jwt.privateKeyFile',
    );
  }
  let pem: string;
  try {
    pem = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read ${file}: ${(err as Error).message}`, 'auth.jwt.privateKeyFile');
  }
  try {
    const key = createPrivateKey(pem);
    return { key, candidates: algorithmsForKey(key) };
  } catch (err) {
    throw new ConfigError(`${file}: ${(err as Error).message}`, 'auth.jwt.privateKeyFile');
  }
}

const UNIT_SECONDS: Record<string, number> = { '': 1, s: 1, m: 60, h: 3600, d: 86400 };

/** `90`, `90s`, `15m`, `1h`, `7d` → seconds, for the CLI's `--ttl`. */
export function parseDuration(text: string): number {
  const match = /^(\d+)([smhd]?)$/.exec(text.trim());
  const seconds = match === null ? NaN : Number(match[1]) * UNIT_SECONDS[match[2]!]!;
  if (!Number.isSafeInteger(seconds) || seconds <= 0) {
    throw new Error(
      `invalid duration "${text}": use a positive number with an optional unit s, m, h or d (e.g. 90, 15m, 1h, 7d)`,
    );
  }
  return seconds;
}
