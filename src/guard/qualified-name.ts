// Qualified names written inside string literals ('tenant_b.items'::regclass, nextval('s.seq')), read as PostgreSQL reads them.

/**
 * Splits a name the way PostgreSQL's stringToQualifiedNameList does: dot-separated identifiers, double quotes keep
 * case and dots, unquoted parts fold to lower case. Text after '(' (regprocedure, regoperator signatures) is ignored.
 * Returns null when the text is not a name at all.
 */
export function parseQualifiedName(text: string): string[] | null {
  const parts: string[] = [];
  let i = 0;
  const skipSpace = (): void => {
    while (i < text.length && /\s/.test(text[i]!)) i++;
  };
  for (;;) {
    skipSpace();
    if (i >= text.length) return null;
    let part = '';
    if (text[i] === '"') {
      i++;
      for (;;) {
        if (i >= text.length) return null;
        if (text[i] === '"') {
          if (text[i + 1] === '"') {
            part += '"';
            i += 2;
            continue;
          }
          i++;
          break;
        }
        part += text[i++];
      }
      if (part === '') return null;
    } else {
      const start = i;
      while (i < text.length && !/[\s."(]/.test(text[i]!)) i++;
      part = text.slice(start, i).toLowerCase();
      if (part === '') return null;
    }
    parts.push(part);
    skipSpace();
    if (i >= text.length || text[i] === '(') return parts;
    if (text[i] !== '.') return null;
    i++;
  }
}
