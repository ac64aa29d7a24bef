// Tenant token verification: loads the configured key once, pins algorithms, checks claims and yields a TenantIdentity.
import { readFileSync } from 'node:fs';
import { X509Certificate, createPublicKey, type KeyObject } from 'node:crypto';
import {
  createLocalJWKSet,
  createRemoteJWKSet,
  decodeJwt,
  decodeProtectedHeader,
  errors,
  importJWK,
  jwtVerify,
  type CryptoKey,
  type JWTPayload,
  type JWTVerifyGetKey,
  type JWTVerifyOptions,
} from 'jose';
import { ConfigError } from '../config/load.js';
import type { Config, IssuerConfig } from '../config/schema.js';
import { SqlState } from '../protocol/codes.js';
import { schemaForTenant, type TenantIdentity } from './identity.js';

/** Every way a token can be refused, with the SQLSTATE the client gets; the reason doubles as a metric label. */
export const authFailureSqlState = {
  malformed: SqlState.INVALID_PASSWORD,
  bad_signature: SqlState.INVALID_PASSWORD,
  alg_not_allowed: SqlState.INVALID_PASSWORD,
  expired: SqlState.INVALID_PASSWORD,
  not_yet_valid: SqlState.INVALID_PASSWORD,
  missing_exp: SqlState.INVALID_PASSWORD,
  issuer: SqlState.INVALID_PASSWORD,
  audience: SqlState.INVALID_PASSWORD,
  token_too_old: SqlState.INVALID_PASSWORD,
  no_key: SqlState.INVALID_PASSWORD,
  // auth.issuers: the token's iss names no configured issuer, or its issuer may not speak for the tenant it names.
  // Refused as a bad signature is: to the client, a token from the wrong IdP is no valid credential.
  unknown_issuer: SqlState.INVALID_PASSWORD,
  issuer_not_allowed: SqlState.INVALID_PASSWORD,
  // The token itself is genuine; it just does not name a tenant we accept.
  missing_claim: SqlState.INVALID_AUTHORIZATION_SPECIFICATION,
  bad_tenant: SqlState.INVALID_AUTHORIZATION_SPECIFICATION,
  // Refused by the tenant registry (tenancy.registry.enabled).
  not_registered: SqlState.INVALID_AUTHORIZATION_SPECIFICATION,
  suspended: SqlState.INVALID_AUTHORIZATION_SPECIFICATION,
  deleting: SqlState.INVALID_AUTHORIZATION_SPECIFICATION,
} as const;
export type AuthFailureReason = keyof typeof authFailureSqlState;
export type AuthFailureSqlState = (typeof authFailureSqlState)[AuthFailureReason];

/** A refused token. Messages go to the client and the audit log, so they never quote the token or its claim values. */
export class AuthFailure extends Error {
  constructor(
    readonly reason: AuthFailureReason,
    message: string,
    readonly sqlstate: AuthFailureSqlState,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'AuthFailure';
  }
}

export interface TenantTokenVerifier {
  verify(token: string): Promise<TenantIdentity>;
  close(): void;
}

export const MAX_TOKEN_LENGTH = 16 * 1024;
const HMAC_ALGORITHMS = ['HS256', 'HS384', 'HS512'];
const RSA_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512'];
const ASYMMETRIC_ALGORITHMS = [...RSA_ALGORITHMS, 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519'];
// Names safe to echo in a message; anything else in a header is attacker text.
const KNOWN_ALGORITHMS = new Set([...HMAC_ALGORITHMS, ...ASYMMETRIC_ALGORITHMS, 'none']);
// Three base64url parts; the signature may be empty so that `alg: none` is reported as an algorithm refusal.
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;
const EC_CURVE_ALGORITHM: Record<string, string> = { prime256v1: 'ES256', secp384r1: 'ES384', secp521r1: 'ES512' };

function fail(reason: AuthFailureReason, message: string, cause?: unknown): AuthFailure {
  return new AuthFailure(reason, message, authFailureSqlState[reason], cause === undefined ? undefined : { cause });
}

/**
 * JWS algorithms a public or private key can be used with, most common first.
 * Throws a plain Error for key types jose cannot use on Node; callers wrap it in a ConfigError naming their key.
 */
export function algorithmsForKey(key: KeyObject): string[] {
  switch (key.asymmetricKeyType) {
    case 'rsa': {
      const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
      // jose refuses RSA keys under 2048 bits at verification time; say so now instead.
      if (bits < 2048) throw new Error(`RSA key is ${bits} bits; at least 2048 are required`);
      return RSA_ALGORITHMS;
    }
    case 'ec': {
      const curve = key.asymmetricKeyDetails?.namedCurve ?? 'unknown';
      const alg = EC_CURVE_ALGORITHM[curve];
      if (alg === undefined) throw new Error(`EC curve ${curve} is not usable for JWS (P-256, P-384 or P-521 are)`);
      return [alg];
    }
    case 'ed25519':
      // jose v6 accepts both the legacy "EdDSA" name and the fully-specified "Ed25519" (RFC 9864).
      return ['EdDSA', 'Ed25519'];
    case 'rsa-pss':
      // Node cannot export id-RSASSA-PSS keys as JWK or WebCrypto keys, so jose cannot use them.
      throw new Error('RSA-PSS-restricted keys are not supported; use a plain RSA key (it allows PS256/384/512 too)');
    case 'ed448':
      throw new Error('Ed448 keys are not supported by jose; use Ed25519');
    default:
      throw new Error(`key type ${key.asymmetricKeyType ?? key.type} cannot sign JWTs`);
  }
}

/** What verifying a token needs from auth.jwt or one entry of auth.issuers. */
type KeyConfig = Pick<
  IssuerConfig,
  | 'secret'
  | 'publicKeyFile'
  | 'jwksFile'
  | 'jwksUrl'
  | 'audience'
  | 'tenantClaim'
  | 'algorithms'
  | 'clockToleranceSec'
  | 'maxTokenAgeSec'
> & { issuer?: string | undefined };

/** One issuer, ready to verify: its key, its algorithm allow-list and its jose options. */
interface PreparedIssuer {
  /** auth.issuers name; undefined for auth.jwt. */
  name: string | undefined;
  /** Dotted config key prefix, for messages (auth.jwt, auth.issuers.<name>). */
  prefix: string;
  allowed: ReadonlySet<string>;
  claim: string;
  maxAge: number;
  /** The tenant rule: true/false when decided here, 'registry' when admission decides by the tenant's record. */
  mayServe: (tenantId: string) => boolean | 'registry';
  verifyPayload(token: string): Promise<JWTPayload>;
}

async function prepareIssuer(
  key: KeyConfig,
  prefix: string,
  name: string | undefined,
  tenants: IssuerConfig['tenants'] | undefined,
): Promise<PreparedIssuer> {
  const { derived, getKey } = await loadKey(key, prefix);
  const algorithms = narrowAlgorithms(derived, key.algorithms, prefix);
  const maxAge = key.maxTokenAgeSec;
  const options: JWTVerifyOptions = {
    algorithms,
    requiredClaims: ['exp'],
    clockTolerance: key.clockToleranceSec,
    ...(key.issuer !== undefined && { issuer: key.issuer }),
    ...(key.audience !== undefined && { audience: key.audience }),
    ...(maxAge > 0 && { maxTokenAge: maxAge }),
  };
  let mayServe: PreparedIssuer['mayServe'];
  if (tenants === undefined) {
    mayServe = () => true;
  } else if (tenants === 'registry') {
    mayServe = () => 'registry';
  } else if (Array.isArray(tenants)) {
    const ids = new Set(tenants);
    mayServe = (id) => ids.has(id);
  } else {
    const pattern = new RegExp(tenants.pattern);
    mayServe = (id) => pattern.test(id);
  }
  return {
    name,
    prefix,
    allowed: new Set(algorithms),
    claim: key.tenantClaim,
    maxAge,
    mayServe,
    async verifyPayload(token) {
      try {
        return (await jwtVerify(token, getKey, options)).payload;
      } catch (err) {
        // jose resolves exactly one JWKS key; when several match (rotation without kid) it hands us the candidates.
        if (!(err instanceof errors.JWKSMultipleMatchingKeys)) throw err;
        for await (const candidate of err) {
          try {
            return (await jwtVerify(token, candidate, options)).payload;
          } catch (inner) {
            if (!(inner instanceof errors.JWSSignatureVerificationFailed)) throw inner;
          }
        }
        throw new errors.JWSSignatureVerificationFailed();
      }
    },
  };
}

export async function createTenantTokenVerifier(config: Config): Promise<TenantTokenVerifier> {
  const tenantPattern = new RegExp(config.tenancy.tenantPattern);
  const single =
    config.auth.jwt === undefined ? undefined : await prepareIssuer(config.auth.jwt, 'auth.jwt', undefined, undefined);
  // auth.issuers: looked up by the token's (unverified) iss; only that issuer's key and options then apply.
  const byIss = new Map<string, PreparedIssuer>();
  for (const issuer of config.auth.issuers ?? []) {
    byIss.set(issuer.issuer, await prepareIssuer(issuer, `auth.issuers.${issuer.name}`, issuer.name, issuer.tenants));
  }

  /** The issuer that is to verify this token, after the cheap checks (no crypto yet). */
  function pick(token: string): PreparedIssuer {
    if (single !== undefined) {
      checkShape(token, single.allowed);
      return single;
    }
    checkShape(token, null);
    let iss: unknown;
    try {
      iss = decodeJwt(token).iss;
    } catch {
      throw fail('malformed', 'tenant token payload is not valid base64url JSON');
    }
    // Read unverified only to choose a key; the chosen issuer's jwtVerify checks iss again, signed.
    const issuer = typeof iss === 'string' ? byIss.get(iss) : undefined;
    if (issuer === undefined) {
      throw fail(
        'unknown_issuer',
        iss === undefined ? 'tenant token lacks claim "iss"' : 'tenant token issuer is not a configured one',
      );
    }
    checkAlgorithm(token, issuer.allowed);
    return issuer;
  }

  return {
    async verify(token: string): Promise<TenantIdentity> {
      const issuer = pick(token);
      const { claim, maxAge } = issuer;
      let payload: JWTPayload;
      try {
        payload = await issuer.verifyPayload(token);
      } catch (err) {
        throw toAuthFailure(err, maxAge, issuer.prefix);
      }
      // Schema lifetime semantics: a token minted to live longer than maxTokenAgeSec is refused even while fresh.
      if (maxAge > 0 && (payload.exp as number) - (payload.iat as number) > maxAge) {
        throw fail('token_too_old', `tenant token lifetime exceeds ${issuer.prefix}.maxTokenAgeSec`);
      }
      if (!Object.hasOwn(payload, claim)) throw fail('missing_claim', `tenant token lacks claim "${claim}"`);
      const tenantId = payload[claim];
      if (typeof tenantId !== 'string') throw fail('bad_tenant', `tenant token claim "${claim}" is not a string`);
      if (!tenantPattern.test(tenantId)) {
        throw fail('bad_tenant', `tenant token claim "${claim}" does not match tenancy.tenantPattern`);
      }
      const allowed = issuer.mayServe(tenantId);
      if (allowed === false) throw issuerNotAllowed();
      return {
        tenantId,
        schema: schemaForTenant(tenantId, config.tenancy.schemaTemplate),
        role: config.tenancy.roles ? schemaForTenant(tenantId, config.tenancy.roleTemplate) : null,
        actor: typeof payload.sub === 'string' ? payload.sub : undefined,
        expiresAt: payload.exp as number,
        guardBypass: config.policy.bypassClaim !== undefined && payload[config.policy.bypassClaim] === true,
        ...(issuer.name !== undefined && { issuer: issuer.name, issuerByRegistry: allowed === 'registry' }),
      };
    },
    close(): void {
      // Nothing to release: keys are in memory and a remote JWKS is fetched on demand, without timers.
    },
  };
}

/** The refusal of a genuine token from an issuer that may not speak for the tenant it names (no names: 28P01 like a bad signature). */
export function issuerNotAllowed(): AuthFailure {
  return fail('issuer_not_allowed', 'tenant token issuer may not speak for this tenant');
}

/** Cheap refusals before any crypto: size, shape, and (when the allow-list is known) an algorithm outside it. */
function checkShape(token: string, allowed: ReadonlySet<string> | null): void {
  if (token.length > MAX_TOKEN_LENGTH)
    throw fail('malformed', `tenant token is longer than ${MAX_TOKEN_LENGTH} characters`);
  if (!COMPACT_JWS.test(token)) throw fail('malformed', 'tenant token is not a JWT (three base64url parts)');
  if (allowed !== null) checkAlgorithm(token, allowed);
}

function checkAlgorithm(token: string, allowed: ReadonlySet<string>): void {
  let alg: unknown;
  try {
    alg = decodeProtectedHeader(token).alg;
  } catch {
    throw fail('malformed', 'tenant token header is not valid base64url JSON');
  }
  if (typeof alg !== 'string') throw fail('malformed', 'tenant token header lacks "alg"');
  if (!allowed.has(alg)) {
    const name = KNOWN_ALGORITHMS.has(alg) ? `${alg} ` : '';
    throw fail('alg_not_allowed', `tenant token algorithm ${name}is not allowed for this key`);
  }
}

function toAuthFailure(err: unknown, maxAge: number, prefix: string): unknown {
  if (err instanceof AuthFailure) return err;
  if (err instanceof errors.JWTExpired) {
    return err.claim === 'iat'
      ? fail('token_too_old', `tenant token is older than ${prefix}.maxTokenAgeSec`)
      : fail('expired', 'tenant token has expired');
  }
  if (err instanceof errors.JWTClaimValidationFailed) return claimFailure(err.claim, err.reason, maxAge, prefix);
  if (err instanceof errors.JWSSignatureVerificationFailed)
    return fail('bad_signature', 'tenant token signature does not verify');
  if (err instanceof errors.JOSEAlgNotAllowed)
    return fail('alg_not_allowed', 'tenant token algorithm is not allowed for this key');
  if (
    err instanceof errors.JWKSNoMatchingKey ||
    err instanceof errors.JWKSInvalid ||
    err instanceof errors.JWKSTimeout
  ) {
    return fail('no_key', 'no configured key matches the tenant token', err);
  }
  // JWSInvalid, JWTInvalid, JOSENotSupported and the rest describe a token jose could not parse.
  if (err instanceof errors.JOSEError) return fail('malformed', 'tenant token is malformed');
  return err;
}

function claimFailure(claim: string, reason: string, maxAge: number, prefix: string): AuthFailure {
  switch (claim) {
    case 'exp':
      return reason === 'missing'
        ? fail('missing_exp', 'tenant token lacks claim "exp"')
        : fail('malformed', 'tenant token claim "exp" is not a number');
    case 'nbf':
      return reason === 'invalid'
        ? fail('malformed', 'tenant token claim "nbf" is not a number')
        : fail('not_yet_valid', 'tenant token is not valid yet (nbf)');
    case 'iat':
      if (reason === 'invalid') return fail('malformed', 'tenant token claim "iat" is not a number');
      return reason === 'missing'
        ? fail('token_too_old', `tenant token lacks claim "iat" (required while ${prefix}.maxTokenAgeSec is ${maxAge})`)
        : fail('not_yet_valid', 'tenant token was issued in the future (iat)');
    case 'iss':
      return fail(
        'issuer',
        reason === 'missing' ? 'tenant token lacks claim "iss"' : 'tenant token issuer is not the configured one',
      );
    case 'aud':
      return fail(
        'audience',
        reason === 'missing' ? 'tenant token lacks claim "aud"' : 'tenant token audience is not the configured one',
      );
    default:
      return fail('malformed', 'tenant token failed claim validation');
  }
}

async function loadKey(jwt: KeyConfig, prefix: string): Promise<{ derived: string[]; getKey: JWTVerifyGetKey }> {
  if (jwt.secret !== undefined) {
    const secret = new TextEncoder().encode(jwt.secret);
    return { derived: HMAC_ALGORITHMS, getKey: () => secret };
  }
  if (jwt.publicKeyFile !== undefined) return loadPublicKeyFile(jwt.publicKeyFile, prefix);
  if (jwt.jwksFile !== undefined) {
    const key = `${prefix}.jwksFile`;
    const text = readKeyFile(jwt.jwksFile, key);
    let local: ReturnType<typeof createLocalJWKSet>;
    try {
      local = createLocalJWKSet(JSON.parse(text) as Parameters<typeof createLocalJWKSet>[0]);
    } catch (err) {
      throw new ConfigError(`${jwt.jwksFile} is not a JSON Web Key Set: ${(err as Error).message}`, key);
    }
    return { derived: ASYMMETRIC_ALGORITHMS, getKey: local };
  }
  if (jwt.jwksUrl !== undefined) {
    const remote = createRemoteJWKSet(new URL(jwt.jwksUrl));
    return {
      derived: ASYMMETRIC_ALGORITHMS,
      // A failed fetch surfaces as a TypeError from fetch(); the client should see a key problem, not XX000.
      getKey: async (header, token) => {
        try {
          return await remote(header, token);
        } catch (err) {
          if (err instanceof errors.JOSEError) throw err;
          throw fail('no_key', 'the key set for tenant tokens could not be fetched', err);
        }
      },
    };
  }
  // The schema requires exactly one key source; reaching here means it changed without this file.
  throw new ConfigError('no key configured for tenant tokens', prefix);
}

async function loadPublicKeyFile(
  file: string,
  prefix: string,
): Promise<{ derived: string[]; getKey: JWTVerifyGetKey }> {
  const configKey = `${prefix}.publicKeyFile`;
  const pem = readKeyFile(file, configKey);
  // A private key would "work" (Node derives the public half) but should never be deployed to the proxy.
  if (pem.includes('PRIVATE KEY-----')) {
    throw new ConfigError(`${file} holds a private key; give the public key or certificate`, configKey);
  }
  let publicKey: KeyObject;
  let derived: string[];
  try {
    publicKey = pem.includes('-----BEGIN CERTIFICATE-----') ? new X509Certificate(pem).publicKey : createPublicKey(pem);
    derived = algorithmsForKey(publicKey);
  } catch (err) {
    throw new ConfigError(`${file}: ${(err as Error).message}`, configKey);
  }
  // Import once per algorithm so a key jose cannot use fails at startup, not on the first client.
  const jwk = publicKey.export({ format: 'jwk' });
  const imported = new Map<string, CryptoKey>();
  for (const alg of derived) {
    try {
      imported.set(alg, (await importJWK(jwk, alg)) as CryptoKey);
    } catch (err) {
      throw new ConfigError(`${file}: cannot use the key for ${alg}: ${(err as Error).message}`, configKey);
    }
  }
  return {
    derived,
    // checkShape has already refused any alg outside `derived`, so the lookup always hits.
    getKey: (header) => imported.get(header.alg)!,
  };
}

function readKeyFile(file: string, configKey: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read ${file}: ${(err as Error).message}`, configKey);
  }
}

/** `auth.jwt.algorithms` (or an issuer's) may only narrow what the key allows. */
function narrowAlgorithms(
  derived: readonly string[],
  configured: readonly string[] | undefined,
  prefix: string,
): string[] {
  if (configured === undefined) return [...derived];
  if (configured.length === 0)
    throw new ConfigError('must name at least one algorithm when set', `${prefix}.algorithms`);
  for (const alg of configured) {
    if (!derived.includes(alg)) {
      throw new ConfigError(
        `${alg} cannot be used with the configured key (allowed: ${derived.join(', ')})`,
        `${prefix}.algorithms`,
      );
    }
  }
  return derived.filter((alg) => configured.includes(alg));
}
