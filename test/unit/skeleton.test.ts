import { loadModule, parseSync, scanSync } from 'libpg-query';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildSkeleton, scanLiterals, skeletonFor, type Literal } from '../../src/guard/skeleton.js';

beforeAll(async () => {
  await loadModule();
});

/** Each literal as [kind, its token's text], the way a reader checks a scanner. */
const literals = (text: string): Array<[string, string]> | null =>
  scanLiterals(text)?.map((l: Literal) => [
    l.kind + (l.continued ? '+' : '') + (l.kind === 'escape' && !l.plainEscapes ? '!' : ''),
    text.slice(l.start, l.end),
  ]) ?? null;

describe('scanLiterals reads quotes as PostgreSQL does (standard_conforming_strings on)', () => {
  it.each<[string, Array<[string, string]> | null]>([
    [
      "SELECT 'a', 'it''s', ''",
      [
        ['standard', "'a'"],
        ['standard', "'it''s'"],
        ['standard', "''"],
      ],
    ],
    // Backslashes are plain in a standard string: 'a\' ends at its second quote.
    [
      "SELECT 'a\\' , 'b'",
      [
        ['standard', "'a\\'"],
        ['standard', "'b'"],
      ],
    ],
    [
      "SELECT E'a\\'b', e'\\\\', E'it''s'",
      [
        ['escape', "E'a\\'b'"],
        ['escape', "e'\\\\'"],
        ['escape', "E'it''s'"],
      ],
    ],
    [
      "SELECT E'\\x41', E'\\101', E'\\u0041', E'\\\\x41'",
      [
        ['escape!', "E'\\x41'"],
        ['escape!', "E'\\101'"],
        ['escape!', "E'\\u0041'"],
        ['escape', "E'\\\\x41'"],
      ],
    ],
    [
      "SELECT $$a'b$$, $f$ $$ $g$ $f$, $x_1$$x_1$",
      [
        ['dollar', "$$a'b$$"],
        ['dollar', '$f$ $$ $g$ $f$'],
        ['dollar', '$x_1$$x_1$'],
      ],
    ],
    // $1 is a parameter, a$b$ an identifier, a lone $ just a character.
    ["SELECT $1, a$b$, $ 'x'", [['standard', "'x'"]]],
    ["SELECT 1 -- 'not' $$ a /* literal\n, /* 'no' /* nested */ $$ */ 'yes'", [['standard', "'yes'"]]],
    // Names in double quotes are names, not literals; "" is a quote inside them.
    ['SELECT "a\'b", "x""y", U&"d\\0061t" FROM t', []],
    [
      "SELECT U&'d\\0061t' UESCAPE '!', B'0101', X'1F', N'n'",
      [
        ['unicode', "U&'d\\0061t'"],
        ['standard', "'!'"],
        ['bit', "B'0101'"],
        ['bit', "X'1F'"],
        ['standard', "'n'"],
      ],
    ],
    // A prefix letter only counts alone: name'x' is a word, then a standard string.
    [
      "SELECT name'x', tie'y', xe'z'",
      [
        ['standard', "'x'"],
        ['standard', "'y'"],
        ['standard', "'z'"],
      ],
    ],
    // Segments joined across a newline are one constant, keeping the first one's escaping.
    [
      "SELECT 'a'\n'b', E'c' \n  'd\\'e'",
      [
        ['standard+', "'a'\n'b'"],
        ['escape+', "E'c' \n  'd\\'e'"],
      ],
    ],
    [
      "SELECT 'a' 'b', 'c' /* x */\n'd'",
      [
        ['standard', "'a'"],
        ['standard', "'b'"],
        ['standard', "'c'"],
        ['standard', "'d'"],
      ],
    ],
    // PostgreSQL joins these across the comment, libpg-query does not: no skeleton of such a text.
    ["SELECT 'a' -- c\n'b'", null],
    ["SELECT 'a'\n-- c\n'b'", null],
    ["SELECT 'unterminated", null],
    ['SELECT $$unterminated', null],
    ['SELECT 1 /* unterminated', null],
    ['SELECT "unterminated', null],
    // Numbers running into a quote or a dollar sign: the lexer's trailing-junk rules, not worth matching.
    ["SELECT 1e'x'", null],
    ['SELECT 1$$x$$', null],
    ['SELECT $1abc', null],
  ])('%j', (text, expected) => {
    expect(literals(text)).toEqual(expected);
  });

  it('reads non-ASCII identifiers as words (no prefix letter)', () => {
    expect(literals("SELECT é'x', Ē'y'")).toEqual([
      ['standard', "'x'"],
      ['standard', "'y'"],
    ]);
  });
});

// ── Differential: the scanner against libpg-query's own lexer and parser ─────────────────────────────────────────

/** Fragments that exercise every quoting rule; random sequences of them make texts no human would write. */
const FRAGMENTS = [
  'SELECT ',
  ' ',
  '\n',
  '\r\n',
  '\t',
  "'",
  "''",
  "'x'",
  "'long literal body'",
  "E'",
  "e'",
  "E'\\'",
  '\\',
  "\\'",
  '\\\\',
  '\\n',
  '\\x41',
  '\\0',
  '$$',
  '$a$',
  '$b$',
  '$1',
  '$',
  'a$',
  '--',
  '-- c\n',
  '/*',
  '*/',
  '/* c */',
  '"',
  '""',
  '"id"',
  "U&'",
  'U&"',
  "u&'",
  "B'",
  "X'",
  "N'",
  'x',
  'e',
  'E',
  'u',
  'n',
  'b',
  '1',
  '1.5',
  '1e3',
  '.',
  ';',
  ',',
  '(',
  ')',
  '::text',
  '&',
  '+',
  '-',
  '*',
  '/',
  'UESCAPE',
  "UESCAPE '!'",
  'tenant_b.items',
  'name',
  "'tenant_b.seq'",
];

function* randomTexts(seed: number, count: number): Generator<string> {
  let state = seed;
  const next = (): number => {
    state = (state * 1103515245 + 12345) & 0x7fffffff;
    return state;
  };
  for (let k = 0; k < count; k++) {
    let text = next() % 3 === 0 ? '' : 'SELECT ';
    const parts = 3 + (next() % 20);
    for (let p = 0; p < parts; p++) text += FRAGMENTS[next() % FRAGMENTS.length];
    yield text;
  }
}

/** Literal spellings with bodies full of what a scanner could trip on. */
const BODY_PARTS = [
  "''",
  '\\',
  '\\n',
  '"',
  '$',
  '$$',
  '$a$',
  '--',
  '/*',
  '*/',
  '\n',
  'é',
  'tenant_b.items',
  ';',
  ' ',
  'x',
];
const SPELLINGS: Array<(body: string) => string> = [
  (b) => `'${b.replaceAll('\\', '')}'`,
  (b) => `'${b}'`,
  (b) => `E'${b.replaceAll("''", "\\'")}'`,
  (b) => `e'${b}'`,
  (b) => `$$${b.replaceAll('$$', '$')}$$`,
  (b) => `$q$${b.replaceAll('$q$', '')}$q$`,
  (b) => `N'${b}'`,
  (b) => `U&'${b.replaceAll('\\', '')}'`,
  (b) => `'${b.replaceAll('\\', '')}'\n  '${b}'`,
];
const TEMPLATES = [
  'SELECT #, # FROM t WHERE x = #',
  'INSERT INTO items VALUES (1, #), (2, #::bytea) RETURNING #',
  'SELECT set_config(#, #, false); SELECT nextval(#)',
  'SELECT #::regclass, to_regclass(#), # LIKE # ESCAPE #',
  'DO $do$ BEGIN PERFORM #; END $do$; COMMENT ON TABLE t IS #',
  'CREATE FUNCTION f() RETURNS text LANGUAGE sql AS #',
  'SELECT "a#b", #"x" FROM "t#"',
];

function* templatedTexts(seed: number, count: number): Generator<string> {
  let state = seed;
  const next = (): number => {
    state = (state * 1103515245 + 12345) & 0x7fffffff;
    return state;
  };
  for (let k = 0; k < count; k++) {
    const template = TEMPLATES[next() % TEMPLATES.length]!;
    yield template.replaceAll('#', () => {
      let body = '';
      for (let p = next() % 6; p > 0; p--) body += BODY_PARTS[next() % BODY_PARTS.length];
      return SPELLINGS[next() % SPELLINGS.length]!(body);
    });
  }
}

/** A parse tree without positions: what rules see. */
function withoutPositions(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(withoutPositions);
  if (value === null || typeof value !== 'object') return value;
  const out: Record<string, unknown> = {};
  for (const [key, child] of Object.entries(value)) {
    if (key === 'location' || key === 'stmt_location' || key === 'stmt_len') continue;
    out[key] = withoutPositions(child);
  }
  return out;
}

type Parsed = { ok: true; tree: unknown } | { ok: false; message: string };
function parse(text: string): Parsed {
  try {
    return { ok: true, tree: parseSync(text) };
  } catch (err) {
    return { ok: false, message: (err as Error).message };
  }
}

/** libpg-query's JSON output cannot carry \f or \v inside a string (it fails on them), which the fragments never make. */
const jsonSafe = (text: string): boolean => !/[\f\v]/.test(text);

describe('skeleton against libpg-query', () => {
  it('finds every string constant libpg-query lexes, and no other (20,000 random texts)', () => {
    let compared = 0;
    for (const text of randomTexts(17, 20_000)) {
      let tokens: Array<{ start: number; end: number; tokenName: string }>;
      try {
        tokens = scanSync(text).tokens;
      } catch {
        continue; // a lexer error: the tree test below covers what the skeleton does with it
      }
      const mine = scanLiterals(text);
      if (mine === null) continue; // the scanner gave up: the text is parsed whole, which is always right
      // libpg-query names only SCONST; U&'', B'' and X'' tokens are told by their spelling.
      const constants = tokens.filter(
        (t) => t.tokenName === 'SCONST' || /^([bBxX]|[uU]&)'/.test(text.slice(t.start, t.end)),
      );
      expect(
        mine.map((l) => [l.start, l.end]),
        text,
      ).toEqual(constants.map((t) => [t.start, t.end]));
      compared++;
    }
    expect(compared).toBeGreaterThan(5000);
  });

  it('a skeleton parses to the tree of its text once its literals are back, or fails where the text fails (40,000 random texts)', () => {
    let same = 0;
    let bothFail = 0;
    for (const text of [...randomTexts(42, 20_000), ...templatedTexts(7, 20_000)]) {
      const skeleton = buildSkeleton(text, 0);
      if (skeleton === null) continue;
      const whole = parse(text);
      const bare = parse(skeleton.text);
      if (!whole.ok || !bare.ok) {
        // Lexer errors inside a literal are kept (the literal is not replaced), so both fail or neither does.
        expect({ text, whole: whole.ok, skeleton: bare.ok }).toEqual({ text, whole: false, skeleton: false });
        bothFail++;
        continue;
      }
      expect(skeleton.restoreTree(bare.tree)).toBe(true);
      expect(withoutPositions(bare.tree), text).toEqual(withoutPositions(whole.tree));
      same++;
    }
    expect(same).toBeGreaterThan(5000);
    expect(bothFail).toBeGreaterThan(500);
  });

  it.each([
    "SELECT 'it''s', E'tab\\there\\\\ \\'q\\' \\z', $$dollar ' \\ $$, $t$nested $$ $t$",
    "INSERT INTO t VALUES ('\\x0001ff'::bytea, E'\\\\x0001ff', 'tenant_b.seq')",
    "SELECT set_config('search_path', 'tenant_b', false), nextval('tenant_b.seq'), 'tenant_b.t'::regclass",
    "DO $$ BEGIN PERFORM 1; END $$; CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
    "SELECT U&'\\0041' UESCAPE '\\', U&'!0041' UESCAPE '!', 'x'",
  ])('restores every literal of %j', (text) => {
    const skeleton = buildSkeleton(text, 0)!;
    expect(skeleton.text).not.toBe(text);
    const tree = parseSync(skeleton.text);
    expect(skeleton.restoreTree(tree)).toBe(true);
    expect(withoutPositions(tree)).toEqual(withoutPositions(parseSync(text)));
    expect(skeleton.source(skeleton.text)).toBe(text);
  });
});

describe('skeleton', () => {
  it('sets aside long literals only, and keeps what names and escapes depend on', () => {
    const long = 'x'.repeat(100);
    const text = `SELECT '${long}', 'short', "${long}", E'${long}\\n', E'${long}\\101', U&'${long}', B'${'1'.repeat(100)}', 'a${long}'\n'b'`;
    const skeleton = buildSkeleton(text)!;
    expect(skeleton.replaced).toBe(2); // the standard and the plain-escape E'' literal
    expect(skeleton.text).toContain("'short'");
    expect(skeleton.text).toContain(`"${long}"`);
    expect(skeleton.text).toContain(`E'${long}\\101'`);
    expect(skeleton.text).toContain(`U&'${long}'`);
    expect(skeleton.text.length).toBeLessThan(text.length - 150);
  });

  it('maps positions and messages back to the original text', () => {
    const text = `SELECT '${'x'.repeat(1000)}' FROM WHERE`;
    const skeleton = buildSkeleton(text)!;
    expect(() => parseSync(skeleton.text)).toThrow();
    const at = skeleton.text.indexOf('WHERE');
    expect(skeleton.originalOffset(at)).toBe(text.indexOf('WHERE'));
    expect(skeleton.elide(skeleton.text)).toBe("SELECT '…' FROM WHERE");
  });

  it('uses a fresh placeholder nonce each time, so a client cannot write one', () => {
    const text = `SELECT '${'x'.repeat(100)}'`;
    expect(buildSkeleton(text)!.text).not.toBe(buildSkeleton(text)!.text);
  });

  it('is only built for long statements or ones over the parse limit', () => {
    const text = `SELECT '${'x'.repeat(1000)}'`;
    expect(skeletonFor(text, 1 << 20)).toBeNull();
    expect(skeletonFor(text, 500)).not.toBeNull();
    expect(skeletonFor(`SELECT '${'x'.repeat(70_000)}'`, 1 << 20)).not.toBeNull();
    // Nothing long to set aside: parsed as it is.
    expect(skeletonFor(`SELECT ${'1,'.repeat(40_000)}1`, 1 << 20)).toBeNull();
  });

  it('scans a 40 MB literal in milliseconds', () => {
    // As the proxy gets it: a flat string decoded from the message (a concatenated one would be flattened first).
    const text = Buffer.from(`INSERT INTO t VALUES ('\\x${'0a'.repeat(20 << 20)}'::bytea)`).toString();
    buildSkeleton(text);
    const started = performance.now();
    const skeleton = buildSkeleton(text)!;
    expect(performance.now() - started).toBeLessThan(250);
    expect(skeleton.text.length).toBeLessThan(100);
    expect(jsonSafe(skeleton.text)).toBe(true);
  });
});
