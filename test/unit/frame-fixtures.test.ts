import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { PIPELINED_RESET, planPin, planReset, planRestore, planSnapshot } from '../../src/backend/pin.js';
import { REFUSAL_SENTINEL } from '../../src/backend/replies.js';
import { ServerStatements } from '../../src/backend/server-statements.js';
import { DEALLOCATE_NO_OP } from '../../src/frontend/prepared.js';
import type { ServerConn } from '../../src/backend/server-conn.js';
import { isStalePlan } from '../../src/frontend/stale-plan-retry.js';
import { BackendCode, FrontendCode } from '../../src/protocol/codes.js';
import { readErrorFields, type ErrorFields } from '../../src/protocol/messages.js';
import {
  PG_MAJORS,
  comparableReply,
  loadFrameFixture,
  loadScenario,
  type RecordedFrame,
  type RecordedScenario,
} from '../support/frame-fixtures.js';
import { OWNERS, proxyFrames, scenarios } from '../support/frame-scenarios.mjs';

const BACKEND_CODES = new Set(Object.values(BackendCode).map((c) => String.fromCharCode(c)));
const FRONTEND_CODES = new Set(Object.values(FrontendCode).map((c) => String.fromCharCode(c)));

const codes = (frames: RecordedFrame[]): string => frames.map((f) => f.code).join('');
const errors = (frames: RecordedFrame[]): ErrorFields[] =>
  frames.filter((f) => f.code === 'E').map((f) => readErrorFields(f.bytes, 0, f.bytes.length));
const segmentReplies = (scenario: RecordedScenario, i: number): RecordedFrame[] => scenario.segments[i]!.replies;
const parameterStatus = (frames: RecordedFrame[]): string[] =>
  frames.filter((f) => f.code === 'S').map((f) => f.payload.toString('utf8').split('\0')[0]!);

/** A server as planPin/planReset read it: fresh from reset, holding `statements` prepared statements. */
function fakeServer(statements = 0): ServerConn {
  const held = new ServerStatements();
  for (let i = 0; i < statements; i++) held.touch(`k${i}`, { name: `pgtp_s${i}`, preparedAt: 0, stale: false });
  return {
    applied: () => undefined,
    reported: new Map(),
    needsReset: false,
    cancelling: false,
    statements: held,
  } as unknown as ServerConn;
}

describe.each(PG_MAJORS)('frame fixtures of PostgreSQL %i', (major) => {
  const fixture = loadFrameFixture(major);

  it('were recorded from that version', () => {
    expect(fixture.postgres.major).toBe(major);
    expect(fixture.postgres.serverVersion.startsWith(`${major}.`)).toBe(true);
    expect(codes(fixture.startup.replies)).toMatch(/^RS+KZ$/);
    expect(fixture.startup.replies.at(-1)!.payload.toString()).toBe('I');
  });

  it('hold every scenario defined, in order, with the bytes the definitions send now', () => {
    expect(fixture.scenarios.map((s) => s.name)).toEqual(scenarios.map((s) => s.name));
    for (const definition of scenarios) {
      const recorded = loadScenario(major, definition.name);
      const bytes = (frames: RecordedFrame[]) => Buffer.concat(frames.map((f) => f.bytes));
      expect(bytes(recorded.setup), definition.name).toEqual(Buffer.concat(definition.setup ?? []));
      expect(bytes(recorded.helper), definition.name).toEqual(Buffer.concat(definition.helper ?? []));
      expect(recorded.segments.map((s) => s.owner)).toEqual(definition.segments.map((s) => s.owner));
      for (const [i, segment] of definition.segments.entries()) {
        const got = recorded.segments[i]!;
        expect(got.bytes, `${definition.name} segment ${i}`).toEqual(Buffer.concat(segment.frames));
        expect(got.cancelAfterMs).toBe(segment.cancelAfterMs);
        expect(got.why).toBe(segment.why);
      }
    }
  });

  it('use known message codes in both directions', () => {
    for (const scenario of fixture.scenarios) {
      for (const segment of scenario.segments) {
        for (const f of segment.frames)
          expect(FRONTEND_CODES.has(f.code), `${scenario.name} sends ${f.code}`).toBe(true);
        for (const f of segment.replies)
          expect(BACKEND_CODES.has(f.code), `${scenario.name} receives ${f.code}`).toBe(true);
      }
    }
  });

  it('answer each segment with its Sync + Query count of ReadyForQuery, or say why not', () => {
    for (const scenario of fixture.scenarios) {
      for (const [i, segment] of scenario.segments.entries()) {
        const where = `${scenario.name} segment ${i}`;
        const terminators = segment.frames.filter((f) => f.code === 'S' || f.code === 'Q').length;
        expect(segment.replies.filter((f) => f.code === 'Z').length, where).toBe(segment.readies);
        if (segment.why === undefined) expect(segment.readies, where).toBe(terminators);
        else expect(segment.readies, `${where}: ${segment.why}`).not.toBe(terminators);
        // Nothing follows a segment's last ReadyForQuery: its replies end there (or it has none).
        if (segment.readies > 0) expect(segment.replies.at(-1)!.code, where).toBe('Z');
        for (const z of segment.replies.filter((f) => f.code === 'Z')) expect('ITE').toContain(z.payload.toString());
      }
    }
  });

  it('got the same replies step by step as pipelined, up to what varies per connection', () => {
    for (const scenario of fixture.scenarios) {
      const stepwise = scenario.segments.flatMap((s) => s.replies);
      const comparable = (frames: RecordedFrame[]) =>
        frames.map((f) => `${f.code}:${comparableReply(f.code, f.payload)}`);
      expect(comparable(scenario.pipelined), scenario.name).toEqual(comparable(stepwise));
    }
  });

  it('carry complete ErrorResponses', () => {
    for (const scenario of fixture.scenarios) {
      for (const error of errors(scenario.segments.flatMap((s) => s.replies))) {
        expect(error.severity, scenario.name).toBe('ERROR');
        expect(error.code, scenario.name).toMatch(/^[0-9A-Z]{5}$/);
        expect(error.message.length, scenario.name).toBeGreaterThan(0);
      }
    }
  });

  it('cover every owner', () => {
    expect(new Set(fixture.scenarios.flatMap((s) => s.segments.map((seg) => seg.owner)))).toEqual(new Set(OWNERS));
  });

  it("answer the refusal sentinel with the syntax error the session swaps for its own, in the sentinel's segment", () => {
    for (const name of ['refusal-in-transaction', 'refusal-extended', 'refusal-extended-in-transaction']) {
      const scenario = loadScenario(major, name);
      const at = scenario.segments.findIndex((s) => s.owner === 'refusal');
      const [error, ...more] = errors(segmentReplies(scenario, at));
      expect(more, name).toEqual([]);
      expect(error?.code, name).toBe('42601');
      expect(error?.message, name).toContain('pg_tenant_proxy_refused_statement');
    }
    // Inside a transaction the server's transaction fails too.
    expect(codes(segmentReplies(loadScenario(major, 'refusal-in-transaction'), 2))).toBe('EZ');
    expect(segmentReplies(loadScenario(major, 'refusal-in-transaction'), 2)[1]!.payload.toString()).toBe('E');
  });

  it('produce a real stale plan, which the proxy recognises', () => {
    const scenario = loadScenario(major, 'stale-plan-retry');
    const [stale] = errors(segmentReplies(scenario, 0));
    expect(stale && isStalePlan(stale)).toBe(true);
    expect(codes(segmentReplies(scenario, 1))).toBe('31'); // the re-prepare's Close and Parse
    expect(errors(segmentReplies(scenario, 2))).toEqual([]);
  });

  it('cancel the sleeping batch only: 57014 there, the batches behind it run', () => {
    const scenario = loadScenario(major, 'cancel-mid-batch');
    expect(errors(segmentReplies(scenario, 0)).map((e) => e.code)).toEqual(['57014']);
    expect(codes(segmentReplies(scenario, 1))).toContain('C');
    expect(codes(segmentReplies(scenario, 2))).toContain('C');
  });

  it('skip the pin and the client statement behind a failed hand-over reset', () => {
    for (const name of ['hand-over-reset-fails', 'hand-over-reset-fails-query']) {
      const scenario = loadScenario(major, name);
      expect(
        errors(segmentReplies(scenario, 0)).map((e) => e.code),
        name,
      ).toEqual(['57014']);
      expect(segmentReplies(scenario, 1), name).toEqual([]);
    }
    expect(codes(segmentReplies(loadScenario(major, 'hand-over-reset-fails'), 2))).toBe('Z');
    expect(codes(segmentReplies(loadScenario(major, 'hand-over-reset-fails-query'), 2))).toBe('');
  });

  it('report search_path changes with ParameterStatus from PostgreSQL 18 on only', () => {
    const reported = fixture.scenarios.flatMap((s) => parameterStatus(s.segments.flatMap((seg) => seg.replies)));
    expect(reported).toContain('application_name');
    if (major >= 18) expect(reported).toContain('search_path');
    else expect(reported).not.toContain('search_path');
  });
});

describe('frame scenarios send what the proxy sends', () => {
  it('pins as planPin builds it', () => {
    expect(proxyFrames.pinTenantA).toEqual(planPin(fakeServer(), 'tenant_a', null, new Map()).frame);
    expect(proxyFrames.pinMissingRole).toEqual(planPin(fakeServer(), 'tenant_a', 'tenant_gone', new Map()).frame);
    const settings = new Map([
      ['application_name', 'client-app'],
      ['work_mem', '8MB'],
    ]);
    expect(proxyFrames.pinTenantARoleSettings).toEqual(planPin(fakeServer(), 'tenant_a', 'tenant_a', settings).frame);
  });

  it('resets as planReset and PIPELINED_RESET build them', () => {
    expect(proxyFrames.pipelinedReset).toEqual(PIPELINED_RESET);
    expect(proxyFrames.resetDiscard).toEqual(planReset(fakeServer(), false).frame);
    expect(proxyFrames.resetKeepStatements).toEqual(planReset(fakeServer(1), false).frame);
    expect(Buffer.concat([proxyFrames.rollback, proxyFrames.resetDiscard])).toEqual(
      planReset(fakeServer(), true).frame,
    );
  });

  it('snapshots and restores as planSnapshot and planRestore build them', () => {
    expect(proxyFrames.snapshot).toEqual(planSnapshot([]));
    expect(proxyFrames.snapshotCustom).toEqual(planSnapshot(['app.note']));
    expect(proxyFrames.restoreApplicationName).toEqual(
      planRestore(new Map([['application_name', 'client-app']])).frame,
    );
  });

  it('uses the statement texts the session and prepared statements substitute', () => {
    const sentinel = REFUSAL_SENTINEL;
    const noOp = DEALLOCATE_NO_OP;
    const prepared = readFileSync(new URL('../../src/frontend/prepared.ts', import.meta.url), 'utf8');
    expect(proxyFrames.refusalQuery.includes(`${sentinel}\0`)).toBe(true);
    expect(proxyFrames.refusalParse.includes(`\0${sentinel}\0`)).toBe(true);
    expect(proxyFrames.deallocateQuery.includes(`${noOp}\0`)).toBe(true);
    expect(proxyFrames.deallocateParse.includes(`\0${noOp}\0`)).toBe(true);
    expect(prepared).toContain('const NO_SUCH_STATEMENT = `${SERVER_STATEMENT_PREFIX}none`');
    expect(proxyFrames.closeNothingStatement.subarray(5).toString('latin1')).toBe('Spgtp_snone\0');
    expect(proxyFrames.closeNothingPortal.subarray(5).toString('latin1')).toBe('Ppgtp_snone\0');
  });
});
