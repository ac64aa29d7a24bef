// The reply ledger fed what PostgreSQL 15 and 18 really answered (test/fixtures/frames, see docs/frame-fixtures.md):
// each reply must reach its owner, the client seeing exactly what a direct connection would have shown it.
import { describe, expect, it } from 'vitest';
import { ReplyLedger, Route } from '../../src/backend/replies.js';
import { BackendCode } from '../../src/protocol/codes.js';
import { ProxyError } from '../../src/protocol/errors.js';
import {
  PG_MAJORS,
  loadFrameFixture,
  loadScenario,
  type PgMajor,
  type RecordedFrame,
  type RecordedScenario,
} from '../support/frame-fixtures.js';

const REFUSED = new ProxyError('42501', 'refused by the proxy');

/** What a run of a scenario through one ledger produced. */
interface Outcome {
  /** Reply codes as the client gets them: `1*` a ParseComplete standing in, `C*` DEALLOCATE's tag, `E*` the refusal. */
  client: string;
  /** What the proxy's own requests reported. */
  events: string[];
  ledger: ReplyLedger;
}

/** Per-scenario wiring the generic rules below cannot guess. */
interface Plan {
  /**
   * A 0A000 makes the link replay (StalePlanRetry): the re-prepare segment at this index and the client's frames
   * after it are what ServerConn.replay writes, not new requests.
   */
  replayAt?: number;
  /** Before the Execute of this segment, the client's unnamed portal is a DEALLOCATE stand-in's. */
  deallocateExecuteAt?: number;
  /** Only step by step: the client waits for a reply before it sends the next segment (COPY FROM STDIN). */
  stepOnly?: boolean;
}

const PLANS: Record<string, Plan> = {
  'stale-plan-retry': { replayAt: 1 },
  'deallocate-parse': { deallocateExecuteAt: 1 },
  'copy-from-stdin-simple': { stepOnly: true },
  'copy-from-stdin-simple-fail': { stepOnly: true },
  'copy-from-stdin-extended': { stepOnly: true },
  'copy-from-stdin-extended-fail': { stepOnly: true },
};

const count = (frames: RecordedFrame[], ...of: string[]) => frames.filter((f) => of.includes(f.code)).length;

/** Enters one segment's requests as the link and ServerConn would. */
function enter(ledger: ReplyLedger, scenario: RecordedScenario, at: number, events: string[], plan: Plan): void {
  const segment = scenario.segments[at]!;
  const frames = segment.frames;
  const request = () => {
    for (const frame of frames) {
      if (plan.deallocateExecuteAt === at && frame.code === 'E') ledger.expect('command', Route.AsDeallocate);
      ledger.request(frame.bytes[0]!);
    }
  };
  switch (segment.owner) {
    case 'client':
      if (plan.replayAt === at - 1) return;
      request();
      return;
    case 'refusal':
      ledger.refuse(REFUSED);
      request();
      return;
    case 'deallocate':
      if (frames[0]!.code === 'Q') ledger.expect('command', Route.AsDeallocate);
      request();
      return;
    case 'reprepare':
      if (plan.replayAt === at) return;
      // The proxy's Parse in front of the client's Bind: its ParseComplete is the proxy's.
      ledger.expect('parse', Route.Swallow, () => events.push('parse skipped'));
      request();
      return;
    case 'pin':
      // A hand-over's DISCARD ALL (the `reset` segment before it) rides in the same run.
      if (scenario.segments[at - 1]?.owner === 'reset' && count(scenario.segments[at - 1]!.frames, 'S', 'Q') === 0)
        return;
      ledger.pinRun(pinRun(frames, false, events));
      return;
    case 'reset':
      if (count(frames, 'S', 'Q') === 0) {
        const pin = scenario.segments[at + 1]!;
        ledger.pinRun(pinRun([...frames, ...pin.frames], true, events));
        return;
      }
      ledger.query(proxyQuery(count(frames, 'S', 'Q'), 'reset', events));
      return;
    case 'snapshot':
      ledger.query(proxyQuery(count(frames, 'S', 'Q'), 'snapshot', events));
      return;
  }
}

function pinRun(frames: RecordedFrame[], handOver: boolean, events: string[]) {
  return {
    completions: count(frames, 'E', 'C'),
    handOver,
    onConfirmed: () => events.push('pin confirmed'),
    onFailed: (code: string, _message: string, seen: number) =>
      events.push(`${handOver && seen === 0 ? 'reset' : 'pin'} failed ${code}`),
  };
}

function proxyQuery(readies: number, what: string, events: string[]) {
  let rows = 0;
  return {
    readies,
    onRow: () => rows++,
    onDone: (error: string | null) => events.push(`${what} done: ${rows} rows${error === null ? '' : `, ${error}`}`),
  };
}

function routeAll(ledger: ReplyLedger, replies: RecordedFrame[], out: string[], plan: Plan, events: string[]): void {
  for (const reply of replies) {
    const route = ledger.route(reply.bytes[0]!, reply.bytes, 0, reply.bytes.length);
    if (
      route === Route.Pass &&
      reply.code === 'E' &&
      plan.replayAt !== undefined &&
      ledger.lastError!.code === '0A000'
    ) {
      // The link swallows the stale plan's error and replays: the rest of the attempt is the proxy's.
      ledger.replay(() => events.push('reprepare failed'));
      events.push('replayed');
      continue;
    }
    if (route === Route.Pass) out.push(reply.code);
    else if (route === Route.AsParseComplete) out.push('1*');
    else if (route === Route.AsDeallocate) out.push('C*');
    else if (route === Route.AsRefusal) out.push('E*');
    else if (route === Route.Unowned) out.push('!');
  }
}

/** Step by step: each segment's requests entered, then its replies routed, as when a client waits for each answer. */
function stepwise(major: PgMajor, name: string): Outcome {
  const scenario = loadScenario(major, name);
  const plan = PLANS[name] ?? {};
  const ledger = new ReplyLedger();
  const events: string[] = [];
  const client: string[] = [];
  scenario.segments.forEach((segment, at) => {
    enter(ledger, scenario, at, events, plan);
    routeAll(ledger, segment.replies, client, plan, events);
  });
  return { client: client.join(''), events, ledger };
}

/** Pipelined: every request entered first, then the replies of the one-write recording. */
function pipelined(major: PgMajor, name: string): Outcome {
  const scenario = loadScenario(major, name);
  const plan = PLANS[name] ?? {};
  const ledger = new ReplyLedger();
  const events: string[] = [];
  const client: string[] = [];
  scenario.segments.forEach((_, at) => enter(ledger, scenario, at, events, plan));
  routeAll(ledger, scenario.pipelined, client, plan, events);
  return { client: client.join(''), events, ledger };
}

/** PostgreSQL 18 reports search_path after each pin, 15 never does: compared without ParameterStatus. */
const withoutReports = (codes: string) => codes.replaceAll('S', '');

/** What the client must see of each scenario, and what the proxy's requests report. */
const EXPECTED: Record<string, { client: string; events?: string[] }> = {
  'simple-query': { client: 'TDCZ' },
  'simple-multi-statement': { client: 'TDCTDCCZ' },
  'simple-multi-statement-error': { client: 'TDCEZTDCZ' },
  'pin-simple-query': { client: 'TDDCZ', events: ['pin confirmed'] },
  'pin-extended': { client: '12TDCZ', events: ['pin confirmed'] },
  'pin-role-settings': { client: 'TDCZ', events: ['pin confirmed'] },
  'pin-failed-then-query': { client: '', events: ['pin failed 22023'] },
  'pin-failed-then-extended': { client: 'ZCZ', events: ['pin failed 22023'] },
  'extended-pipelined-error': { client: '12TDCZ1EZ12TDCZ' },
  'extended-parse-error-pipelined': { client: 'EZ12TDCZ' },
  'extended-flush-then-sync': { client: '12TDCZ' },
  'extended-portal-suspended': { client: '12DDsDCZ' },
  'copy-from-stdin-simple': { client: 'GCZTDCZ' },
  'copy-from-stdin-simple-fail': { client: 'GEZ' },
  'copy-from-stdin-extended': { client: '12nGCZTDCZ' },
  'copy-from-stdin-extended-fail': { client: '12nGEZ' },
  'copy-to-stdout': { client: 'HdddcCZ12nHdcCZ' },
  'refusal-in-transaction': { client: 'CZTDCZE*ZEZCZ' },
  'refusal-extended': { client: '12TDCE*Z12TDCZ' },
  'refusal-extended-in-transaction': { client: 'CZE*ZCZ' },
  'hand-over': { client: '12TDCZ', events: ['pin confirmed'] },
  'hand-over-query': { client: 'TDCZ', events: ['pin confirmed'] },
  'hand-over-reset-fails': { client: 'Z', events: ['reset failed 57014'] },
  'hand-over-reset-fails-query': { client: '', events: ['reset failed 57014'] },
  'reset-discard': { client: '', events: ['reset done: 0 rows'] },
  'reset-keep-statements': { client: '', events: ['reset done: 1 rows'] },
  'reset-after-open-transaction': { client: 'CZEZ', events: ['reset done: 0 rows', 'reset done: 0 rows'] },
  'settings-snapshot': {
    client: 'CCZCZCZ',
    events: ['snapshot done: 2 rows', 'snapshot done: 3 rows', 'snapshot done: 1 rows', 'snapshot done: 0 rows'],
  },
  'deallocate-query': { client: 'C*ZTDCZ' },
  'deallocate-parse': { client: '12nC*Z' },
  'deallocate-in-failed-transaction': { client: 'CZEZEZCZ' },
  'close-substitution': { client: '3Z' },
  'shared-parse-stand-in': { client: '32TDCZ' },
  reprepare: { client: '2TDCZ' },
  'reprepare-fails': { client: 'EZ', events: ['parse skipped'] },
  'stale-plan-retry': { client: '2DCZ', events: ['replayed'] },
  'cancel-mid-batch': { client: '12TEZ12TDCZTDCZ' },
  'notice-and-parameter-status': { client: 'NCCCTDCZ12nNC12nCZNCZ' },
  'listen-notify': { client: 'CCAZ' },
};

describe.each(PG_MAJORS)('the reply ledger on PostgreSQL %i recordings', (major) => {
  const names = loadFrameFixture(major).scenarios.map((s) => s.name);

  it('has an expectation for every recorded scenario', () => {
    expect(Object.keys(EXPECTED).sort()).toEqual([...names].sort());
  });

  it.each(names)('%s, step by step: each reply reaches its owner', (name) => {
    const outcome = stepwise(major, name);
    const expected = EXPECTED[name]!;
    expect(withoutReports(outcome.client)).toBe(withoutReports(expected.client));
    expect(outcome.events).toEqual(expected.events ?? []);
    expect(outcome.ledger.owed).toBe(name === 'pin-failed-then-query' || name.endsWith('reset-fails-query') ? 1 : 0);
  });

  it.each(names.filter((name) => PLANS[name]?.stepOnly !== true))(
    '%s, pipelined: the same replies in one stream reach the same owners',
    (name) => {
      const stepped = stepwise(major, name);
      const outcome = pipelined(major, name);
      expect(outcome.client).toBe(stepped.client);
      expect(outcome.events).toEqual(stepped.events);
    },
  );
});

describe('ledger bookkeeping', () => {
  it('counts what the client is owed, across Syncs, Queries and an unsynced batch', () => {
    const ledger = new ReplyLedger();
    ledger.attach(7);
    expect(ledger.idle).toBe(true);
    ledger.request(0x50); // Parse
    expect(ledger.unsynced).toBe(true);
    expect(ledger.request(0x53)).toBe(true); // Sync
    expect(ledger.request(0x51)).toBe(true); // Query
    expect([ledger.sent, ledger.done, ledger.owed, ledger.unsynced]).toEqual([9, 7, 2, false]);
    const z = readyFor('I');
    expect(ledger.route(BackendCode.ReadyForQuery, z, 0, z.length)).toBe(Route.Pass);
    expect(ledger.route(BackendCode.ReadyForQuery, z, 0, z.length)).toBe(Route.Pass);
    expect(ledger.route(BackendCode.ReadyForQuery, z, 0, z.length)).toBe(Route.Unowned);
    expect([ledger.done, ledger.owed, ledger.idle]).toEqual([9, 0, true]);
  });

  it('runs a skipped mark’s callback when its segment ends without the completion', () => {
    const ledger = new ReplyLedger();
    const skipped: string[] = [];
    ledger.expect('parse', Route.Swallow, () => skipped.push('parse'));
    ledger.request(0x50);
    ledger.request(0x53);
    const z = readyFor('E');
    ledger.route(BackendCode.ReadyForQuery, z, 0, z.length);
    expect(skipped).toEqual(['parse']);
  });

  it('runs the skipped marks as soon as the segment’s error goes to the client, once', () => {
    // A pipelining client re-Parses a failed statement's name on the ErrorResponse, before ReadyForQuery arrives.
    const ledger = new ReplyLedger();
    const skipped: string[] = [];
    ledger.expect('parse', Route.Swallow, () => skipped.push('parse'));
    ledger.request(0x50);
    ledger.request(0x42);
    ledger.request(0x53);
    const e = new ProxyError('42704', 'type "nonexistent_type_xyz" does not exist').encode();
    expect(ledger.route(BackendCode.ErrorResponse, e, 0, e.length)).toBe(Route.Pass);
    ledger.errorPassed();
    expect(skipped).toEqual(['parse']);
    const z = readyFor('I');
    expect(ledger.route(BackendCode.ReadyForQuery, z, 0, z.length)).toBe(Route.Pass);
    expect(skipped).toEqual(['parse']);
  });

  it('detaches a departed client’s proxy queries: they finish without calling back', () => {
    const ledger = new ReplyLedger();
    const done: string[] = [];
    ledger.query({ readies: 1, onRow: null, onDone: () => done.push('snapshot') });
    ledger.detach();
    const z = readyFor('I');
    expect(ledger.route(BackendCode.ReadyForQuery, z, 0, z.length)).toBe(Route.Swallow);
    expect(done).toEqual([]);
    expect(ledger.idle).toBe(true);
  });
});

function readyFor(status: 'I' | 'T' | 'E'): Buffer {
  return Buffer.from([BackendCode.ReadyForQuery, 0, 0, 0, 5, status.charCodeAt(0)]);
}
