// Typed access to test/fixtures/frames/pg<N>.json: what PostgreSQL answered to each scenario's segments, as Buffers.
// Recorded by test/support/record-frames.mjs (see docs/frame-fixtures.md); the format is described there.
import { readFileSync } from 'node:fs';
import { OWNERS, comparableReply, type Owner } from './frame-scenarios.mjs';

export { comparableReply, type Owner };

export const PG_MAJORS = [15, 18] as const;
export type PgMajor = (typeof PG_MAJORS)[number];

export interface RecordedFrame {
  /** The message type letter. */
  code: string;
  /** The body after the length word. */
  payload: Buffer;
  /** The whole frame as on the wire: code, int32 length, payload. */
  bytes: Buffer;
  /** For reading only: a decoded one-liner (tag, status, SQLSTATE and message…). */
  summary: string;
}

export interface RecordedSegment {
  owner: Owner;
  /** The frontend frames of the segment, as sent. */
  frames: RecordedFrame[];
  /** The same frames as one Buffer. */
  bytes: Buffer;
  /** ReadyForQuery among `replies`. */
  readies: number;
  /** Why `readies` is not the segment's Sync + Query count, when it is not. */
  why?: string;
  cancelAfterMs?: number;
  /** Recorded step by step with a Flush behind it (no Sync or Query ended it); the Flush is not in `frames`. */
  flushed: boolean;
  /** What PostgreSQL sent after this segment was written and before the next one was. */
  replies: RecordedFrame[];
}

export interface RecordedScenario {
  name: string;
  description: string;
  /** Frames run before the segments on the same connection; their replies were not kept. */
  setup: RecordedFrame[];
  /** Frames run on a second connection held open meanwhile. */
  helper: RecordedFrame[];
  segments: RecordedSegment[];
  /** The replies when every segment went in one write (equal to the segments' replies up to `varies`). */
  pipelined: RecordedFrame[];
}

export interface FrameFixture {
  postgres: { major: number; serverVersion: string };
  startup: { parameters: Record<string, string>; replies: RecordedFrame[] };
  /** Values that differ between connections (see comparableReply). */
  varies: string[];
  scenarios: RecordedScenario[];
}

interface StoredFrame {
  code: string;
  payload: string;
  summary: string;
}
interface StoredSegment extends Omit<RecordedSegment, 'frames' | 'bytes' | 'replies'> {
  frames: StoredFrame[];
  replies: StoredFrame[];
}
interface StoredScenario extends Omit<RecordedScenario, 'setup' | 'helper' | 'segments' | 'pipelined'> {
  setup: StoredFrame[];
  helper: StoredFrame[];
  segments: StoredSegment[];
  pipelined: StoredFrame[];
}
interface StoredFixture extends Omit<FrameFixture, 'startup' | 'scenarios'> {
  format: number;
  startup: { parameters: Record<string, string>; replies: StoredFrame[] };
  scenarios: StoredScenario[];
}

const FORMAT = 1;
const cache = new Map<PgMajor, FrameFixture>();

export function fixturePath(major: PgMajor): URL {
  return new URL(`../fixtures/frames/pg${major}.json`, import.meta.url);
}

function toFrame(stored: StoredFrame, where: string): RecordedFrame {
  if (stored.code.length !== 1 || !/^[0-9a-f]*$/.test(stored.payload) || stored.payload.length % 2 !== 0)
    throw new Error(`${where}: malformed frame ${JSON.stringify(stored)}`);
  const payload = Buffer.from(stored.payload, 'hex');
  const bytes = Buffer.alloc(5 + payload.length);
  bytes.write(stored.code, 0, 'latin1');
  bytes.writeInt32BE(4 + payload.length, 1);
  payload.copy(bytes, 5);
  return { code: stored.code, payload, bytes, summary: stored.summary };
}

const toFrames = (stored: StoredFrame[], where: string): RecordedFrame[] => stored.map((f) => toFrame(f, where));

/** The recording for one PostgreSQL major version (read once). */
export function loadFrameFixture(major: PgMajor): FrameFixture {
  const cached = cache.get(major);
  if (cached !== undefined) return cached;
  const stored = JSON.parse(readFileSync(fixturePath(major), 'utf8')) as StoredFixture;
  if (stored.format !== FORMAT) throw new Error(`pg${major}.json: format ${stored.format}, expected ${FORMAT}`);
  const fixture: FrameFixture = {
    postgres: stored.postgres,
    startup: { parameters: stored.startup.parameters, replies: toFrames(stored.startup.replies, 'startup') },
    varies: stored.varies,
    scenarios: stored.scenarios.map((s) => ({
      name: s.name,
      description: s.description,
      setup: toFrames(s.setup, `${s.name} setup`),
      helper: toFrames(s.helper, `${s.name} helper`),
      segments: s.segments.map((seg, i) => {
        const where = `${s.name} segment ${i}`;
        if (!OWNERS.includes(seg.owner)) throw new Error(`${where}: unknown owner ${seg.owner}`);
        const frames = toFrames(seg.frames, where);
        return {
          ...seg,
          frames,
          bytes: Buffer.concat(frames.map((f) => f.bytes)),
          replies: toFrames(seg.replies, where),
        };
      }),
      pipelined: toFrames(s.pipelined, `${s.name} pipelined`),
    })),
  };
  cache.set(major, fixture);
  return fixture;
}

/** One scenario's recording; throws when the fixture lacks it. */
export function loadScenario(major: PgMajor, name: string): RecordedScenario {
  const scenario = loadFrameFixture(major).scenarios.find((s) => s.name === name);
  if (scenario === undefined) throw new Error(`pg${major}.json has no scenario ${name}`);
  return scenario;
}

/** The server's replies to a scenario in order, as one stream (what the proxy reads from its server socket). */
export function replyStream(scenario: RecordedScenario): Buffer {
  return Buffer.concat(scenario.segments.flatMap((s) => s.replies.map((f) => f.bytes)));
}
