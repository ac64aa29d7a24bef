// A cheap cache key for SQL that differs only in simple literals, or null when the text is not simple enough.

/**
 * Replaces plain integer/decimal numbers and plain single-quoted strings with placeholders, but only in text whose
 * lexing is unambiguous without a full lexer: no backslash, dollar sign, double quote, comment marker, and no
 * quote directly after a letter or digit (E'', U&'', B'', X'', N'') or directly after a closing quote ('' escapes).
 * Anything else returns null and the caller uses the real parser's normalisation. Two texts with the same key
 * therefore differ only inside literals, which is exactly what literal-independent analyses may share.
 */
export function literalKey(text: string): string | null {
  if (text.length > 8192 || /[\\$"]|--|\/\*/.test(text)) return null;
  // Unchanged runs are copied as slices: building the key char by char cost more than the rest of a cache hit.
  let out = '';
  let copied = 0;
  let i = 0;
  const n = text.length;
  while (i < n) {
    const ch = text.charCodeAt(i);
    if (ch === 39 /* ' */) {
      const prev = i > 0 ? text.charCodeAt(i - 1) : 32;
      if (isWordChar(prev)) return null;
      const close = text.indexOf("'", i + 1);
      if (close < 0 || text.charCodeAt(close + 1) === 39) return null;
      out += text.slice(copied, i) + "'?'";
      i = copied = close + 1;
      continue;
    }
    if (ch >= 48 && ch <= 57 && (i === 0 || (!isWordChar(text.charCodeAt(i - 1)) && text.charCodeAt(i - 1) !== 46))) {
      let j = i;
      while (j < n && isDigit(text.charCodeAt(j))) j++;
      if (text.charCodeAt(j) === 46 && isDigit(text.charCodeAt(j + 1))) {
        j++;
        while (j < n && isDigit(text.charCodeAt(j))) j++;
      }
      // A number running into letters, dots or underscores (1e5, 0x1F, 1_000, 1.2.3) is left to the real parser.
      if (j < n && (isWordChar(text.charCodeAt(j)) || text.charCodeAt(j) === 46)) return null;
      out += text.slice(copied, i) + '0';
      i = copied = j;
      continue;
    }
    i++;
  }
  return copied === 0 ? text : out + text.slice(copied);
}

function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}

function isWordChar(c: number): boolean {
  return (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95 || c > 127;
}
