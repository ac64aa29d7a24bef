// The SQL lexer's view of string constants: where each literal starts and ends, read as PostgreSQL's scan.l reads them.
//
// It follows src/backend/parser/scan.l (PostgreSQL 17, what libpg-query 18 embeds) with standard_conforming_strings
// on (the guard refuses sessions that turn it off), and gives up (null) wherever it is not certain to agree: the
// skeleton (skeleton.ts) is built from its answer, so a literal it misread would change a verdict.

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
