#!/usr/bin/env node
// bench/micro.mjs: micro-benchmarks of two hot paths of pg-tenant-proxy, on the built dist/ (run `npm run build` first).
//
//   framer: ns per frame for streams of small frames (Query + Sync; DataRow of ~100 bytes) fed in 64 KiB chunks
//   guard:  µs per guard.check() on an exact-text cache hit, a normalized-text hit (a different literal each time)
//           and a miss (a distinct statement each time), for a pgbench-like SELECT and a ~20-line join
//
// `node bench/micro.mjs` prints markdown; `node bench/micro.mjs --json` prints one JSON object (bench/run.mjs runs it
// this way after the pgbench matrix). BENCH_QUICK=1 runs fewer, shorter rounds.
import { cpus } from 'node:os';
import { pathToFileURL } from 'node:url';
import { Framer } from '../dist/protocol/framer.js';
import { createSqlGuard, isRefusal, loadParser } from '../dist/guard/sql-guard.js';

const QUICK = process.env.BENCH_QUICK === '1';
/** Timed rounds per case (the median is reported) and the wall time each round aims for. */
const ROUNDS = QUICK ? 3 : 7;
const ROUND_MS = QUICK ? 60 : 250;
const CHUNK = 64 * 1024;
const SCHEMA = 'tenant_t1';
const CACHE_SIZE = 10000;

// ---------------------------------------------------------------------------------------------------------------
// Framer

function frame(code, body) {
  const out = Buffer.alloc(5 + body.length);
  out[0] = code.charCodeAt(0);
  out.writeUInt32BE(4 + body.length, 1);
  body.copy(out, 5);
  return out;
}

/** Query + Sync as a simple-protocol client sends them (the Sync is what a client library adds after a batch). */
function querySyncPair(i) {
  const sql = `SELECT abalance FROM pgbench_accounts WHERE aid = ${100000 + (i % 900000)};`;
  return [frame('Q', Buffer.from(`${sql}\0`)), frame('S', Buffer.alloc(0))];
}

/** DataRow of ~100 bytes in all (header included): 4 text columns, three short numbers and a 63-byte filler. */
function dataRow(i) {
  const cols = [String(i % 1000000).padStart(7, '0'), String(i % 97), String(-(i % 5000)), 'x'.repeat(63)];
  const parts = [Buffer.alloc(2)];
  parts[0].writeUInt16BE(cols.length);
  for (const c of cols) {
    const len = Buffer.alloc(4);
    len.writeInt32BE(Buffer.byteLength(c));
    parts.push(len, Buffer.from(c));
  }
  return frame('D', Buffer.concat(parts));
}

/** A stream of ~8 MiB cut into 64 KiB chunks: frames straddle chunk boundaries as they do on a socket. */
function buildStream(make) {
  const frames = [];
  let bytes = 0;
  for (let i = 0; bytes < 8 * 1024 * 1024; i++) {
    for (const f of [].concat(make(i))) {
      frames.push(f);
      bytes += f.length;
    }
  }
  const whole = Buffer.concat(frames, bytes);
  const chunks = [];
  for (let at = 0; at < whole.length; at += CHUNK) chunks.push(Buffer.from(whole.subarray(at, at + CHUNK)));
  return { chunks, frames: frames.length, bytes, frameBytes: Math.round(bytes / frames.length) };
}

function framePass(chunks) {
  const framer = new Framer(1 << 30, true);
  let n = 0;
  let check = 0;
  for (const chunk of chunks) {
    framer.push(chunk);
    while (framer.next()) {
      n++;
      check += framer.code + framer.end - framer.start; // touch what a consumer reads
    }
  }
  if (framer.buffered !== 0) throw new Error(`framer left ${framer.buffered} bytes`);
  return { n, check };
}

function benchFramer(name, make) {
  const stream = buildStream(make);
  for (let i = 0; i < 5; i++) framePass(stream.chunks); // warm-up (JIT)
  const t = process.hrtime.bigint();
  framePass(stream.chunks);
  const onePassMs = Number(process.hrtime.bigint() - t) / 1e6;
  const passes = Math.max(1, Math.round(ROUND_MS / Math.max(onePassMs, 0.01)));
  const samples = [];
  for (let r = 0; r < ROUNDS; r++) {
    let frames = 0;
    const t0 = process.hrtime.bigint();
    for (let p = 0; p < passes; p++) frames += framePass(stream.chunks).n;
    const ns = Number(process.hrtime.bigint() - t0);
    if (frames !== stream.frames * passes)
      throw new Error(`framer returned ${frames} frames, expected ${stream.frames * passes}`);
    samples.push(ns / frames);
  }
  const nsPerFrame = median(samples);
  return {
    name,
    frames: stream.frames,
    avgFrameBytes: stream.frameBytes,
    streamBytes: stream.bytes,
    chunkBytes: CHUNK,
    passesPerRound: passes,
    rounds: ROUNDS,
    nsPerFrame: round(nsPerFrame, 1),
    nsPerFrameMin: round(Math.min(...samples), 1),
    nsPerFrameMax: round(Math.max(...samples), 1),
    mbPerSec: round((stream.frameBytes / nsPerFrame) * 1e3, 0),
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Guard

const STATEMENTS = [
  {
    id: 'pgbench-select',
    name: 'pgbench -S SELECT (1 line)',
    text: (table, literal) => `SELECT abalance FROM ${table} WHERE aid = ${literal};`,
    table: 'pgbench_accounts',
  },
  {
    id: 'join-20',
    name: '4-table join (20 lines)',
    text: (table, literal) =>
      [
        'SELECT a.aid,',
        '       a.abalance,',
        '       b.bbalance,',
        '       t.tbalance,',
        '       count(h.tid) AS history_rows,',
        '       sum(h.delta) AS total_delta,',
        '       max(h.mtime) AS last_change',
        `  FROM ${table} a`,
        '  JOIN pgbench_branches b ON b.bid = a.bid',
        '  JOIN pgbench_tellers t ON t.bid = b.bid',
        '  LEFT JOIN pgbench_history h ON h.aid = a.aid AND h.tid = t.tid',
        ` WHERE a.aid BETWEEN ${literal} AND ${literal} + 1000`,
        "   AND a.filler IS NOT NULL AND b.filler <> 'closed'",
        '   AND t.tbalance > -100000',
        "   AND h.mtime > now() - interval '7 days'",
        ' GROUP BY a.aid, a.abalance, b.bbalance, t.tbalance',
        'HAVING count(h.tid) > 0',
        ' ORDER BY total_delta DESC, a.aid',
        ' LIMIT 50',
        '   OFFSET 0;',
      ].join('\n'),
    table: 'pgbench_accounts',
  },
];

const CASES = [
  { id: 'exactHit', name: 'exact-text hit', stat: 'exactHits' },
  { id: 'normalizedHit', name: 'normalized-text hit', stat: 'normalizedHits' },
  { id: 'miss', name: 'miss', stat: 'misses' },
];

let unique = 0; // every generated text is new to the guard's caches

/** `n` texts for one timed round of a case. */
function textsFor(stmt, kind, n) {
  const out = new Array(n);
  for (let i = 0; i < n; i++) {
    const u = ++unique;
    if (kind === 'exactHit') out[i] = stmt.text(stmt.table, 4242);
    else if (kind === 'normalizedHit')
      out[i] = stmt.text(stmt.table, 1000000 + u); // same statement, new literal
    else out[i] = stmt.text(`${stmt.table}_${u}`, 4242); // a table name never seen: a new normalized text
  }
  return out;
}

function runChecks(guard, texts) {
  let refused = 0;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < texts.length; i++) if (isRefusal(guard.check(texts[i], SCHEMA))) refused++;
  return { ns: Number(process.hrtime.bigint() - t0), refused };
}

function benchGuardCase(guard, stmt, kind, stat) {
  // Prime: the exact text (for exact hits) and the normalized form (for normalized hits) are cached from here on.
  guard.check(stmt.text(stmt.table, 4242), SCHEMA);
  // Steady state: caches full, so every new text evicts one (hits on a new text and misses insert into them).
  if (kind !== 'exactHit') runChecks(guard, textsFor(stmt, kind, CACHE_SIZE));
  // Warm-up and calibration: how many checks fill one round of ROUND_MS.
  let n = 50;
  let perOpNs = 0;
  for (let i = 0; i < 4; i++) {
    const r = runChecks(guard, textsFor(stmt, kind, n));
    perOpNs = r.ns / n;
    if (r.ns < (ROUND_MS * 1e6) / 4) n *= 4;
  }
  n = Math.max(20, Math.min(500_000, Math.round((ROUND_MS * 1e6) / perOpNs)));
  const samples = [];
  let checks = 0;
  let counted = 0;
  let refused = 0;
  for (let r = 0; r < ROUNDS; r++) {
    const texts = textsFor(stmt, kind, n); // built outside the timed loop
    const before = guard.stats[stat];
    const res = runChecks(guard, texts);
    counted += guard.stats[stat] - before;
    refused += res.refused;
    checks += n;
    samples.push(res.ns / n / 1000);
  }
  if (counted !== checks)
    throw new Error(
      `guard ${stmt.id} ${kind}: ${counted} of ${checks} checks were ${stat}; the case does not measure what it says`,
    );
  if (refused > 0)
    throw new Error(`guard ${stmt.id} ${kind}: ${refused} checks were refused; expected every statement to pass`);
  return {
    usPerCheck: round(median(samples), 2),
    usMin: round(Math.min(...samples), 2),
    usMax: round(Math.max(...samples), 2),
    checksPerRound: n,
    rounds: ROUNDS,
  };
}

async function benchGuard() {
  await loadParser();
  const results = [];
  for (const stmt of STATEMENTS) {
    const row = {
      id: stmt.id,
      name: stmt.name,
      bytes: Buffer.byteLength(stmt.text(stmt.table, 4242)),
      lines: stmt.text(stmt.table, 4242).split('\n').length,
    };
    for (const c of CASES) {
      // A fresh guard per case, as configured in the brief (cacheSize 10000), so one case's entries never serve another.
      const guard = createSqlGuard({
        sharedSchemas: [],
        deniedFunctions: [],
        maxStatementBytes: 1 << 20,
        cacheSize: CACHE_SIZE,
        checkNames: true,
        schemaTemplate: 'tenant_{tenant}',
        tenantPattern: '^[a-z0-9_]{1,48}$',
      });
      row[c.id] = benchGuardCase(guard, stmt, c.id, c.stat);
    }
    results.push(row);
  }
  return results;
}

// ---------------------------------------------------------------------------------------------------------------

export function renderMicro(result) {
  const lines = [
    `Micro-benchmarks (node ${result.node}, ${result.cpu}; median of ${result.rounds} rounds of ~${result.roundMs} ms each, one process, one thread; guard caches of ${result.guardCacheSize.toLocaleString('en-US')} entries, full before the hit-on-new-text and miss cases are timed):`,
    '',
    '| framer stream (64 KiB chunks) | avg frame | ns/frame (min–max) | MB/s |',
    '| --- | ---: | ---: | ---: |',
  ];
  for (const f of result.framer)
    lines.push(
      `| ${f.name} | ${f.avgFrameBytes} B | ${f.nsPerFrame.toFixed(1)} (${f.nsPerFrameMin.toFixed(1)}–${f.nsPerFrameMax.toFixed(1)}) | ${f.mbPerSec} |`,
    );
  lines.push(
    '',
    '| guard.check() µs (min–max) | exact-text hit | normalized-text hit | miss |',
    '| --- | ---: | ---: | ---: |',
  );
  for (const g of result.guard) {
    const cell = (c) => `${fmtUs(c.usPerCheck)} (${fmtUs(c.usMin)}–${fmtUs(c.usMax)})`;
    lines.push(`| ${g.name}, ${g.bytes} B | ${cell(g.exactHit)} | ${cell(g.normalizedHit)} | ${cell(g.miss)} |`);
  }
  return lines.join('\n');
}

const fmtUs = (x) => (x < 10 ? x.toFixed(2) : x < 100 ? x.toFixed(1) : x.toFixed(0));

export async function runMicro() {
  const started = Date.now();
  const framer = [
    benchFramer('Query + Sync (pgbench -S text)', querySyncPair),
    benchFramer('DataRow, 100 bytes', dataRow),
  ];
  const guard = await benchGuard();
  const result = {
    startedAt: new Date(started).toISOString(),
    node: process.version,
    cpu: cpus()[0]?.model ?? '?',
    rounds: ROUNDS,
    roundMs: ROUND_MS,
    guardCacheSize: CACHE_SIZE,
    framer,
    guard,
    elapsedSec: round((Date.now() - started) / 1000, 1),
  };
  result.markdown = renderMicro(result);
  return result;
}

function median(values) {
  const v = [...values].sort((a, b) => a - b);
  const mid = v.length >> 1;
  return v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
}

function round(x, digits) {
  return Math.round(x * 10 ** digits) / 10 ** digits;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  runMicro().then(
    (result) =>
      process.stdout.write(process.argv.includes('--json') ? `${JSON.stringify(result)}\n` : `${result.markdown}\n`),
    (err) => {
      process.stderr.write(`micro-benchmarks failed: ${err.stack ?? err}\n`);
      process.exit(1);
    },
  );
}
