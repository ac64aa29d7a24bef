// SCRAM-SHA-256(-PLUS) client side (RFC 5802/7677/5929) for authenticating the proxy's login role to PostgreSQL.
import { createHash, createHmac, pbkdf2Sync, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * How the client stands on channel binding: `bound` to the server certificate's hash (SCRAM-SHA-256-PLUS), `unused`
 * though TLS is up (the server did not offer it: gs2 flag y, so a server that did cannot be downgraded by a man in
 * the middle), or `none` (no TLS, or turned off).
 */
export type ChannelBinding = { kind: 'bound'; certificateHash: Buffer } | { kind: 'unused' } | { kind: 'none' };

export class ScramClient {
  private readonly clientNonce = randomBytes(18).toString('base64');
  private clientFirstBare = '';
  private expectedServerSignature: Buffer | null = null;
  private readonly gs2Header: string;

  constructor(
    private readonly password: string,
    private readonly binding: ChannelBinding = { kind: 'none' },
  ) {
    this.gs2Header = binding.kind === 'bound' ? 'p=tls-server-end-point,,' : binding.kind === 'unused' ? 'y,,' : 'n,,';
  }

  get mechanism(): string {
    return this.binding.kind === 'bound' ? 'SCRAM-SHA-256-PLUS' : 'SCRAM-SHA-256';
  }

  /** Body of SASLInitialResponse's data: gs2 header + client-first-message-bare. */
  clientFirst(): string {
    this.clientFirstBare = `n=*,r=${this.clientNonce}`;
    return `${this.gs2Header}${this.clientFirstBare}`;
  }

  /** Given server-first-message, returns client-final-message. */
  clientFinal(serverFirst: string): string {
    const attrs = parseAttributes(serverFirst);
    const nonce = attrs.get('r');
    const salt = attrs.get('s');
    const iterations = Number(attrs.get('i'));
    if (!nonce || !salt || !Number.isInteger(iterations) || iterations < 1) {
      throw new Error('SCRAM: malformed server-first-message');
    }
    if (!nonce.startsWith(this.clientNonce) || nonce.length === this.clientNonce.length) {
      throw new Error('SCRAM: server nonce does not extend the client nonce');
    }
    const saltedPassword = pbkdf2Sync(
      this.password.normalize('NFKC'),
      Buffer.from(salt, 'base64'),
      iterations,
      32,
      'sha256',
    );
    const clientKey = hmac(saltedPassword, 'Client Key');
    const storedKey = createHash('sha256').update(clientKey).digest();
    const bindingData = this.binding.kind === 'bound' ? this.binding.certificateHash : Buffer.alloc(0);
    const channel = Buffer.concat([Buffer.from(this.gs2Header), bindingData]).toString('base64');
    const clientFinalWithoutProof = `c=${channel},r=${nonce}`;
    const authMessage = `${this.clientFirstBare},${serverFirst},${clientFinalWithoutProof}`;
    const clientSignature = hmac(storedKey, authMessage);
    const proof = Buffer.alloc(clientKey.length);
    for (let i = 0; i < proof.length; i++) proof[i] = clientKey[i]! ^ clientSignature[i]!;
    this.expectedServerSignature = hmac(hmac(saltedPassword, 'Server Key'), authMessage);
    return `${clientFinalWithoutProof},p=${proof.toString('base64')}`;
  }

  /** Checks server-final-message; a server that cannot prove it knows the password is not trusted. */
  verifyServerFinal(serverFinal: string): void {
    const attrs = parseAttributes(serverFinal);
    if (attrs.has('e')) throw new Error(`SCRAM: server error ${attrs.get('e')}`);
    const signature = Buffer.from(attrs.get('v') ?? '', 'base64');
    const expected = this.expectedServerSignature;
    if (expected === null || signature.length !== expected.length || !timingSafeEqual(signature, expected)) {
      throw new Error('SCRAM: server signature does not match');
    }
  }
}

/**
 * tls-server-end-point (RFC 5929): the hash of the server's DER certificate with the hash of its signature
 * algorithm, SHA-256 when that is MD5 or SHA-1 — as PostgreSQL computes it.
 */
export function certificateHash(der: Buffer): Buffer {
  return createHash(signatureHash(der)).update(der).digest();
}

/** Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm AlgorithmIdentifier, ... }: the hash of its OID. */
function signatureHash(der: Buffer): string {
  const outer = derHeader(der, 0);
  const tbs = derHeader(der, outer.contentStart);
  const algorithm = derHeader(der, tbs.contentStart + tbs.length);
  const oid = derHeader(der, algorithm.contentStart);
  const bytes = der.subarray(oid.contentStart, oid.contentStart + oid.length).toString('hex');
  // sha384WithRSAEncryption, ecdsa-with-SHA384 / sha512WithRSAEncryption, ecdsa-with-SHA512; everything else SHA-256.
  if (bytes === '2a864886f70d01010c' || bytes === '2a8648ce3d040303') return 'sha384';
  if (bytes === '2a864886f70d01010d' || bytes === '2a8648ce3d040304') return 'sha512';
  return 'sha256';
}

function derHeader(der: Buffer, at: number): { contentStart: number; length: number } {
  const first = der[at + 1];
  if (first === undefined) throw new Error('SCRAM: malformed server certificate');
  if (first < 0x80) return { contentStart: at + 2, length: first };
  const octets = first & 0x7f;
  let length = 0;
  for (let i = 0; i < octets; i++) length = length * 256 + der[at + 2 + i]!;
  return { contentStart: at + 2 + octets, length };
}

function hmac(key: Buffer, data: string): Buffer {
  return createHmac('sha256', key).update(data).digest();
}

function parseAttributes(message: string): Map<string, string> {
  const attrs = new Map<string, string>();
  for (const part of message.split(',')) {
    const eq = part.indexOf('=');
    if (eq === 1) attrs.set(part[0]!, part.slice(2));
  }
  return attrs;
}
