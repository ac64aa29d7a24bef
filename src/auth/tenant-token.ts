// Tenant token verification: loads the configured key once, pins algorithms, checks claims and yields a TenantIdentity.
import { readFileSync } from 'node:fs';
import { X509Certificate, createPublicKey, type KeyObject } from 'node:crypto';
import {
  createLocalJWKSet,
  createRemoteJWKSet,
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
import type { Config } from '../config/schema.js';
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

export async function createTenantTokenVerifier(config: Config): Promise<TenantTokenVerifier> {
  const jwt = config.auth.jwt;
  const { derived, getKey } = await loadKey(jwt);
  const algorithms = narrowAlgorithms(derived, jwt.algorithms);
  const allowed = new Set(algorithms);
  const tenantPattern = new RegExp(config.tenancy.tenantPattern);
  const claim = jwt.tenantClaim;
  const maxAge = jwt.maxTokenAgeSec;

  const options: JWTVerifyOptions = {
    algorithms,
    requiredClaims: ['exp'],
    clockTolerance: jwt.clockToleranceSec,
    ...(jwt.issuer !== undefined && { issuer: jwt.issuer }),
    ...(jwt.audience !== undefined && { audience: jwt.audience }),
    ...(maxAge > 0 && { maxTokenAge: maxAge }),
  };

  async function verifySignedPayload(token: string): Promise<JWTPayload> {
    try {
      return (await jwtVerify(token, getKey, options)).payload;
    } catch (err) {
      // jose resolves exactly one JWKS key; when several match (rotation without kid) it hands us the candidates.
      if (!(err instanceof errors.JWKSMultipleMatchingKeys)) throw err;
      for await (const key of err) {
        try {
          return (await jwtVerify(token, key, options)).payload;
        } catch (inner) {
          if (!(inner instanceof errors.JWSSignatureVerificationFailed)) throw inner;
        }
      }
      throw new errors.JWSSignatureVerificationFailed();
    }
  }

  return {
    async verify(token: string): Promise<TenantIdentity> {
      checkShape(token, allowed);
      let payload: JWTPayload;
      try {
        payload = await verifySignedPayload(token);
      } catch (err) {
        throw toAuthFailure(err, maxAge);
      }
      // Schema lifetime semantics: a token minted to live longer than maxTokenAgeSec is refused even while fresh.
      if (maxAge > 0 && (payload.exp as number) - (payload.iat as number) > maxAge) {
        throw fail('token_too_old', 'tenant token lifetime exceeds auth.jwt.maxTokenAgeSec');
      }
      if (!Object.hasOwn(payload, claim)) throw fail('missing_claim', `tenant token lacks claim "${claim}"`);
      const tenantId = payload[claim];
      if (typeof tenantId !== 'string') throw fail('bad_tenant', `tenant token claim "${claim}" is not a string`);
      if (!tenantPattern.test(tenantId)) {
        throw fail('bad_tenant', `tenant token claim "${claim}" does not match tenancy.tenantPattern`);
      }
      return {
        tenantId,
        schema: schemaForTenant(tenantId, config.tenancy.schemaTemplate),
        role: config.tenancy.roles ? schemaForTenant(tenantId, config.tenancy.roleTemplate) : null,
        actor: typeof payload.sub === 'string' ? payload.sub : undefined,
        expiresAt: payload.exp as number,
        guardBypass: config.policy.bypassClaim !== undefined && payload[config.policy.bypassClaim] === true,
      };
    },
    close(): void {
      // Nothing to release: keys are in memory and a remote JWKS is fetched on demand, without timers.
    },
  };
}

/** Cheap refusals before any crypto: size, shape, and an algorithm outside the allow-list. */
function checkShape(token: string, allowed: ReadonlySet<string>): void {
  if (token.length > MAX_TOKEN_LENGTH) throw fail('malformed', `tenant token is longer than ${MAX_TOKEN_LENGTH} characters`);
  if (!COMPACT_JWS.test(token)) throw fail('malformed', 'tenant token is not a JWT (three base64url parts)');
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

function toAuthFailure(err: unknown, maxAge: number): unknown {
  if (err instanceof AuthFailure) return err;
  if (err instanceof errors.JWTExpired) {
    return err.claim === 'iat'
      ? fail('token_too_old', 'tenant token is older than auth.jwt.maxTokenAgeSec')
      : fail('expired', 'tenant token has expired');
  }
  if (err instanceof errors.JWTClaimValidationFailed) return claimFailure(err.claim, err.reason, maxAge);
  if (err instanceof errors.JWSSignatureVerificationFailed) return fail('bad_signature', 'tenant token signature does not verify');
  if (err instanceof errors.JOSEAlgNotAllowed) return fail('alg_not_allowed', 'tenant token algorithm is not allowed for this key');
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

function claimFailure(claim: string, reason: string, maxAge: number): AuthFailure {
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
        ? fail('token_too_old', `tenant token lacks claim "iat" (required while auth.jwt.maxTokenAgeSec is ${maxAge})`)
        : fail('not_yet_valid', 'tenant token was issued in the future (iat)');
    case 'iss':
      return fail('issuer', reason === 'missing' ? 'tenant token lacks claim "iss"' : 'tenant token issuer is not the configured one');
    case 'aud':
      return fail('audience', reason === 'missing' ? 'tenant token lacks claim "aud"' : 'tenant token audience is not the configured one');
    default:
      return fail('malformed', 'tenant token failed claim validation');
  }
}

type JwtConfig = Config['auth']['jwt'];

async function loadKey(jwt: JwtConfig): Promise<{ derived: string[]; getKey: JWTVerifyGetKey }> {
  if (jwt.secret !== undefined) {
    const secret = new TextEncoder().encode(jwt.secret);
    return { derived: HMAC_ALGORITHMS, getKey: () => secret };
  }
  if (jwt.publicKeyFile !== undefined) return loadPublicKeyFile(jwt.publicKeyFile);
  if (jwt.jwksFile !== undefined) {
    const key = 'auth.jwt.jwksFile';
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
  throw new ConfigError('no key configured for tenant tokens', 'auth.jwt');
}

async function loadPublicKeyFile(file: string): Promise<{ derived: string[]; getKey: JWTVerifyGetKey }> {
  const configKey = 'auth.jwt.publicKeyFile';
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

/** `auth.jwt.algorithms` may only narrow what the key allows. */
function narrowAlgorithms(derived: readonly string[], configured: readonly string[] | undefined): string[] {
  if (configured === undefined) return [...derived];
  if (configured.length === 0) throw new ConfigError('must name at least one algorithm when set', 'auth.jwt.algorithms');
  for (const alg of configured) {
    if (!derived.includes(alg)) {
      throw new ConfigError(`${alg} cannot be used with the configured key (allowed: ${derived.join(', ')})`, 'auth.jwt.algorithms');
    }
  }
  return derived.filter((alg) => configured.includes(alg));
}
