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

/** How each kind of string constant is written. */
export type LiteralKind =
  /** '…' (also after N, which the lexer reads as a separate token): '' is a quote, backslashes are plain. */
  | 'standard'
  /** E'…': backslash escapes. */
  | 'escape'
  /** $tag$…$tag$: nothing is special inside. */
  | 'dollar'
  /** U&'…': escapes decoded after lexing, with an escape character a later UESCAPE clause may change. */
  | 'unicode'
  /** B'…' and X'…': bit strings. */
  | 'bit';

export interface Literal {
  kind: LiteralKind;
  /** The token, prefix and quotes included: [start, end) in UTF-16 units. */
  start: number;
  end: number;
  /** Its body between the opening and closing quote (of the first segment when `continued`). */
  bodyStart: number;
  bodyEnd: number;
  /** Written as several quoted segments joined across a newline ('a'\n'b' is one constant). */
  continued: boolean;
  /** For E'' bodies: every escape is one that cannot fail (no octal, \x or Unicode escape). */
  plainEscapes: boolean;
  /** Its body holds a doubled quote ('' for '), so its value is not the body as written. */
  doubled: boolean;
  /** Follows the word UESCAPE: the grammar checks its content (one escape character), so it is never replaced. */
  afterUescape: boolean;
}

/**
 * The string constants of a SQL text in order, or null when the text does not lex cleanly (an unterminated
 * literal, quoted identifier or comment) or has a spot where the scanner could disagree with PostgreSQL or with
 * libpg-query (a number or parameter running into a quote or an identifier: trailing junk the lexer refuses; a
 * comment between two quoted segments, see continuation).
 */
export function scanLiterals(text: string): Literal[] | null {
  const literals: Literal[] = [];
  const n = text.length;
  let i = 0;
  /** The last token was the word UESCAPE (whitespace and comments between do not count). */
  let uescape = false;
  while (i < n) {
    const c = text.charCodeAt(i);
    if (isSpace(c)) {
      i++;
      continue;
    }
    if (c === DASH && text.charCodeAt(i + 1) === DASH) {
      i = lineEnd(text, i + 2);
      continue;
    }
    if (c === SLASH && text.charCodeAt(i + 1) === STAR) {
      const end = blockCommentEnd(text, i + 2);
      if (end < 0) return null;
      i = end;
      continue;
    }
    const afterUescape = uescape;
    uescape = false;
    if (c === QUOTE) {
      const literal = quoted(text, 'standard', i, i + 1);
      if (literal === null) return null;
      literals.push({ ...literal, afterUescape });
      i = literal.end;
    } else if (c === DOUBLE_QUOTE) {
      const end = quotedIdentifierEnd(text, i + 1);
      if (end < 0) return null;
      i = end;
    } else if (c === DOLLAR) {
      const next = text.charCodeAt(i + 1);
      if (isDigit(next)) {
        // A parameter ($1); $1abc is trailing junk.
        let j = i + 1;
        while (j < n && (isDigit(text.charCodeAt(j)) || text.charCodeAt(j) === UNDERSCORE)) j++;
        if (j < n && isIdentStart(text.charCodeAt(j))) return null;
        i = j;
        continue;
      }
      let j = i + 1;
      if (isIdentStart(next)) {
        j++;
        while (j < n && isDollarTagChar(text.charCodeAt(j))) j++;
      }
      if (text.charCodeAt(j) !== DOLLAR) {
        // Not a delimiter: the lexer returns the lone $ and reads on from the next character.
        i++;
        continue;
      }
      const tag = text.slice(i, j + 1);
      const close = text.indexOf(tag, j + 1);
      if (close < 0) return null;
      literals.push({
        kind: 'dollar',
        start: i,
        end: close + tag.length,
        bodyStart: j + 1,
        bodyEnd: close,
        continued: false,
        plainEscapes: true,
        doubled: false,
        afterUescape,
      });
      i = close + tag.length;
    } else if (isIdentStart(c)) {
      let j = i + 1;
      while (j < n && isIdentChar(text.charCodeAt(j))) j++;
      if (j === i + 1) {
        // A one-letter word right before a quote is a prefix: E'', B'', X'', U&'', U&"" (N'' reads as N then '').
        const after = text.charCodeAt(j);
        const lower = c | 0x20;
        let literal: Literal | null | undefined;
        if (after === QUOTE && lower === 0x65 /* e */) literal = quoted(text, 'escape', i, j + 1);
        else if (after === QUOTE && (lower === 0x62 /* b */ || lower === 0x78) /* x */)
          literal = quoted(text, 'bit', i, j + 1);
        else if (lower === 0x75 /* u */ && after === AMPERSAND && text.charCodeAt(j + 1) === QUOTE)
          literal = quoted(text, 'unicode', i, j + 2);
        else if (lower === 0x75 && after === AMPERSAND && text.charCodeAt(j + 1) === DOUBLE_QUOTE) {
          const end = quotedIdentifierEnd(text, j + 2);
          if (end < 0) return null;
          i = end;
          continue;
        }
        if (literal === null) return null;
        if (literal !== undefined) {
          literals.push({ ...literal, afterUescape });
          i = literal.end;
          continue;
        }
      }
      uescape = j - i === 7 && text.slice(i, j).toLowerCase() === 'uescape';
      i = j;
    } else if (isDigit(c) || (c === DOT && isDigit(text.charCodeAt(i + 1)))) {
      // Numbers (1, 1.5e-3, 0x1F, 1_000) are kept as they are; only where they end matters.
      let j = i + 1;
      for (;;) {
        const d = text.charCodeAt(j);
        if (isDigit(d) || isLetter(d) || d === UNDERSCORE || d === DOT || d >= 0x80) j++;
        else if (
          (d === PLUS || d === DASH) &&
          (text.charCodeAt(j - 1) | 0x20) === 0x65 &&
          isDigit(text.charCodeAt(j + 1))
        )
          j++;
        else break;
      }
      const after = text.charCodeAt(j);
      if (after === QUOTE || after === DOUBLE_QUOTE || after === DOLLAR) return null;
      i = j;
    } else {
      i++;
    }
  }
  return literals;
}

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

/**
 * Reads a quoted constant from the body start `from` (the opening quote is just before it) to its closing quote,
 * following continuation segments. Returns null when it never closes.
 */
function quoted(text: string, kind: LiteralKind, start: number, from: number): Literal | null {
  let plainEscapes = true;
  let doubled = false;
  let continued = false;
  let bodyEnd = -1;
  let j = from;
  for (;;) {
    let close: number;
    if (kind === 'escape') {
      // The next quote and the next backslash, each found with indexOf (far faster than a regular expression over
      // megabytes) and kept until passed, so the scan stays linear however many escapes there are.
      let quote = -1;
      let backslash = -1;
      for (;;) {
        if (quote < j) quote = text.indexOf("'", j);
        if (quote < 0) return null;
        if (backslash < j) {
          backslash = text.indexOf('\\', j);
          if (backslash < 0) backslash = NONE;
        }
        if (backslash !== NONE && backslash < quote) {
          if (backslash + 1 >= text.length) return null;
          // \ooo, \xhh, \uXXXX and \UXXXXXXXX can fail to lex (a zero byte, invalid UTF-8 or Unicode): such
          // literals are kept as written so that the parser meets the same error.
          if (/[0-7xuU]/.test(text[backslash + 1]!)) plainEscapes = false;
          j = backslash + 2;
          continue;
        }
        if (text.charCodeAt(quote + 1) === QUOTE) {
          doubled = true;
          j = quote + 2;
          continue;
        }
        close = quote;
        break;
      }
    } else {
      for (;;) {
        const k = text.indexOf("'", j);
        if (k < 0) return null;
        // In a bit string '' is not an escaped quote: the first quote ends the segment.
        if (kind !== 'bit' && text.charCodeAt(k + 1) === QUOTE) {
          doubled = true;
          j = k + 2;
          continue;
        }
        close = k;
        break;
      }
    }
    if (bodyEnd < 0) bodyEnd = close;
    const reopen = continuation(text, close + 1);
    if (reopen === AMBIGUOUS) return null;
    if (reopen < 0) {
      return {
        kind,
        start,
        end: close + 1,
        bodyStart: from,
        bodyEnd,
        continued,
        plainEscapes,
        doubled,
        afterUescape: false,
      };
    }
    continued = true;
    j = reopen + 1;
  }
}

/**
 * scan.l's quotecontinue: after a closing quote, whitespace holding a newline then a quote continues the same
 * constant. Returns the index of the reopening quote, -1 when nothing continues it, or AMBIGUOUS when only a --
 * comment in the gap decides: PostgreSQL's lexer lets comments stand there, libpg-query's (which returns comments as
 * tokens) does not, so the two read the rest of the text differently and no skeleton is made of it.
 *   PostgreSQL 17: non_newline_whitespace* newline special_whitespace* quote, with
 *   non_newline_whitespace = [ \t\f\v] | "--" [^\n\r]*;  special_whitespace = [ \t\n\r\f\v]+ | "--" [^\n\r]* newline
 */
function continuation(text: string, from: number): number {
  let j = from;
  let comment = false;
  for (;;) {
    const c = text.charCodeAt(j);
    if (c === 0x20 || c === 0x09 || c === 0x0c || c === 0x0b) j++;
    else if (c === DASH && text.charCodeAt(j + 1) === DASH) {
      comment = true;
      j = lineEnd(text, j + 2);
    } else break;
  }
  if (!isNewline(text.charCodeAt(j))) return -1;
  j++;
  for (;;) {
    const c = text.charCodeAt(j);
    if (isSpace(c)) j++;
    else if (c === DASH && text.charCodeAt(j + 1) === DASH) {
      const end = lineEnd(text, j + 2);
      if (end >= text.length) return -1;
      comment = true;
      j = end + 1;
    } else break;
  }
  if (text.charCodeAt(j) !== QUOTE) return -1;
  return comment ? AMBIGUOUS : j;
}

const AMBIGUOUS = -2;

/** Index just past a double-quoted identifier whose body starts at `from` ("" is a quote), or -1. */
function quotedIdentifierEnd(text: string, from: number): number {
  let j = from;
  for (;;) {
    const k = text.indexOf('"', j);
    if (k < 0) return -1;
    if (text.charCodeAt(k + 1) === DOUBLE_QUOTE) {
      j = k + 2;
      continue;
    }
    return k + 1;
  }
}

/** Index of the newline ending a -- comment (or the end of the text). */
function lineEnd(text: string, from: number): number {
  let j = from;
  while (j < text.length && !isNewline(text.charCodeAt(j))) j++;
  return j;
}

/** Index just past a (nested) block comment whose body starts at `from`, or -1 when it never closes. */
function blockCommentEnd(text: string, from: number): number {
  let depth = 0;
  let j = from;
  while (j < text.length) {
    const c = text.charCodeAt(j);
    if (c === SLASH && text.charCodeAt(j + 1) === STAR) {
      depth++;
      j += 2;
    } else if (c === STAR && text.charCodeAt(j + 1) === SLASH) {
      if (depth === 0) return j + 2;
      depth--;
      j += 2;
    } else j++;
  }
  return -1;
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

/** No backslash left in the text. */
const NONE = Number.MAX_SAFE_INTEGER;
const QUOTE = 0x27;
const DOUBLE_QUOTE = 0x22;
const DOLLAR = 0x24;
const DASH = 0x2d;
const SLASH = 0x2f;
const STAR = 0x2a;
const DOT = 0x2e;
const PLUS = 0x2b;
const UNDERSCORE = 0x5f;
const AMPERSAND = 0x26;

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

function isLetter(c: number): boolean {
  return (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
}

/** scan.l's ident_start: [A-Za-z\200-\377_]. */
function isIdentStart(c: number): boolean {
  return isLetter(c) || c === UNDERSCORE || c >= 0x80;
}

/** scan.l's ident_cont: [A-Za-z\200-\377_0-9\$]. */
function isIdentChar(c: number): boolean {
  return isIdentStart(c) || isDigit(c) || c === DOLLAR;
}

/** scan.l's dolq_cont: [A-Za-z\200-\377_0-9]. */
function isDollarTagChar(c: number): boolean {
  return isIdentStart(c) || isDigit(c);
}

function isNewline(c: number): boolean {
  return c === 0x0a || c === 0x0d;
}

/** scan.l's space: [ \t\n\r\f\v]. */
function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d || c === 0x0c || c === 0x0b;
}
