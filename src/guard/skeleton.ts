// Large statements judged by their skeleton: long string literals set aside by a scanner that reads quotes as PostgreSQL does.
//
// A driver that interpolates parameters into the text (psycopg2, many ORMs' bulk paths) sends a 10 MB bytea as a
// 20-40 MB literal. Parsing that through the WASM parser would hold the event loop for seconds, and the literal's
// content is data the rules mostly never look at. So the guard parses a skeleton instead: the same text with the body
// of each long string literal replaced by a short placeholder, then puts every literal's value back into the parse
// tree before any rule runs. The rules therefore see the tree the full text would have produced (only `location`
// fields differ), which is why a skeleton cannot change a verdict, provided the scanner finds exactly the literals
// PostgreSQL's lexer finds. It follows src/backend/parser/scan.l (PostgreSQL 17, what libpg-query 18 embeds) with
// standard_conforming_strings on (the guard refuses sessions that turn it off), and gives up (null: the text is
// parsed as it is, or refused as too large) wherever it is not certain to agree.
import { randomBytes } from 'node:crypto';
import { scanLiterals, type Literal } from './literal-scanner.js';

export { scanLiterals, type Literal, type LiteralKind } from './literal-scanner.js';

/** A statement as the guard parses it, with what it needs to answer for the original text. */
export interface Skeleton {
  /** The statement it was made of. */
  readonly original: string;
  /** The text with long literals' bodies replaced by placeholders (same tokens, same statements). */
  readonly text: string;
  /** Literals set aside. */
  readonly replaced: number;
  /**
   * Puts each literal's value (as the lexer decodes it) back where its placeholder is in a parse tree of `text`.
   * Returns false when a placeholder turns up inside a longer string (the tree would not be the original's).
   */
  restoreTree(tree: unknown): boolean;
  /** The original source of a span of `text`. */
  source(span: string): string;
  /** A message about `text` with each placeholder shown as an ellipsis (no literal is ever echoed in full). */
  elide(message: string): string;
  /** The character offset in the original text of one in `text`. */
  originalOffset(offset: number): number;
}

/** Literals shorter than this stay in the skeleton: replacing them saves less than the placeholder costs. */
export const MIN_SET_ASIDE_CHARS = 64;
/** Statements from this length on are judged by their skeleton; shorter ones are parsed as they are. */
export const SKELETON_FROM_CHARS = 64 * 1024;

/**
 * The skeleton of a statement that is long (SKELETON_FROM_CHARS) or over the parse limit (maxParseBytes), else null;
 * null too when the scanner cannot vouch for the text or there is no long literal to set aside.
 */
export function skeletonFor(
  text: string,
  maxParseBytes: number,
  minLiteral = MIN_SET_ASIDE_CHARS,
  fromChars = SKELETON_FROM_CHARS,
): Skeleton | null {
  if (text.length < fromChars && (text.length * 3 <= maxParseBytes || Buffer.byteLength(text) <= maxParseBytes))
    return null;
  return buildSkeleton(text, minLiteral);
}

const PLACEHOLDER_NONCE_CHARS = 16;
const PLACEHOLDER_CHARS = PLACEHOLDER_NONCE_CHARS + 8;

/**
 * Replaces the body of every single-segment standard, dollar-quoted and plain-escape E'' literal of at least
 * `minLiteral` characters. The placeholder is hex digits only — no quote, backslash, dollar sign, or character a
 * UESCAPE could name — so each literal stays one token of the same kind, and it carries a random nonce, so a client
 * cannot write a literal the restore would mistake for a placeholder. Unicode and bit strings, and constants joined
 * across newlines, are kept as written.
 */
export function buildSkeleton(text: string, minLiteral = MIN_SET_ASIDE_CHARS): Skeleton | null {
  const literals = scanLiterals(text);
  if (literals === null) return null;
  const nonce = randomBytes(PLACEHOLDER_NONCE_CHARS / 2).toString('hex');
  const setAside: Literal[] = [];
  /** Start of each placeholder in the skeleton. */
  const at: number[] = [];
  let out = '';
  let copied = 0;
  for (const literal of literals) {
    // Never an empty one: libpg-query's JSON keeps some empty strings and drops others, so its tree is not restorable.
    const length = literal.bodyEnd - literal.bodyStart;
    if (literal.continued || literal.afterUescape || length === 0 || length < minLiteral) continue;
    if (literal.kind === 'unicode' || literal.kind === 'bit' || (literal.kind === 'escape' && !literal.plainEscapes))
      continue;
    out += text.slice(copied, literal.bodyStart);
    at.push(out.length);
    out += nonce + setAside.length.toString(16).padStart(8, '0');
    setAside.push(literal);
    copied = literal.bodyEnd;
  }
  if (setAside.length === 0) return null;
  out += text.slice(copied);

  const placeholders = new RegExp(`${nonce}([0-9a-f]{8})`, 'g');
  const indexOf = (placeholder: string): number => Number.parseInt(placeholder.slice(PLACEHOLDER_NONCE_CHARS), 16);
  const value = (literal: Literal): string => {
    const body = text.slice(literal.bodyStart, literal.bodyEnd);
    if (literal.kind === 'dollar') return body;
    if (literal.kind === 'standard') return literal.doubled ? body.replaceAll("''", "'") : body;
    return decodePlainEscapes(body);
  };

  return {
    original: text,
    text: out,
    replaced: setAside.length,
    restoreTree(tree) {
      let intact = true;
      /** The literal's value for a placeholder, else undefined (and a spliced-in placeholder noted). */
      const restored = (node: string): string | undefined => {
        if (node.length === PLACEHOLDER_CHARS && node.startsWith(nonce)) {
          const literal = setAside[indexOf(node)];
          if (literal !== undefined) return value(literal);
        }
        if (node.includes(nonce)) intact = false;
        return undefined;
      };
      const visit = (node: unknown): void => {
        if (Array.isArray(node)) {
          for (let k = 0; k < node.length; k++) {
            const item: unknown = node[k];
            if (typeof item === 'string') node[k] = restored(item) ?? item;
            else visit(item);
          }
        } else if (node !== null && typeof node === 'object') {
          const object = node as Record<string, unknown>;
          for (const key in object) {
            const child = object[key];
            if (typeof child !== 'string') {
              visit(child);
              continue;
            }
            const literal = restored(child);
            if (literal !== undefined) object[key] = literal;
          }
        }
      };
      visit(tree);
      return intact;
    },
    source(span) {
      return span.replace(placeholders, (placeholder) => {
        const literal = setAside[indexOf(placeholder)];
        return literal === undefined ? placeholder : text.slice(literal.bodyStart, literal.bodyEnd);
      });
    },
    elide(message) {
      return message.replace(placeholders, '…');
    },
    originalOffset(offset) {
      let shift = 0;
      for (let k = 0; k < at.length; k++) {
        const start = at[k]!;
        const literal = setAside[k]!;
        if (offset < start) break;
        if (offset < start + PLACEHOLDER_CHARS) return literal.bodyStart;
        shift += literal.bodyEnd - literal.bodyStart - PLACEHOLDER_CHARS;
      }
      return offset + shift;
    },
  };
}

/** The value of an E'' body whose escapes are all single characters (PostgreSQL 17's unescape_single_char). */
function decodePlainEscapes(body: string): string {
  return body.replace(/\\([\s\S])|''/g, (match, escaped: string | undefined) => {
    if (escaped === undefined) return "'";
    switch (escaped) {
      case 'b':
        return '\b';
      case 'f':
        return '\f';
      case 'n':
        return '\n';
      case 'r':
        return '\r';
      case 't':
        return '\t';
      case 'v':
        return '\v';
      default:
        return escaped;
    }
  });
}
