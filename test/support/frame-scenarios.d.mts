// Types of frame-scenarios.mjs (plain JavaScript so that record-frames.mjs runs on node alone).

export type Owner = 'client' | 'pin' | 'reset' | 'snapshot' | 'reprepare' | 'deallocate' | 'refusal';
export const OWNERS: readonly Owner[];

export interface ScenarioSegment {
  owner: Owner;
  /** Whole frontend frames (code, length, body); one Buffer may hold several. */
  frames: Buffer[];
  /** ReadyForQuery count when it is not the segment's Sync + Query count. */
  readies?: number;
  /** Why `readies` differs. */
  why?: string;
  /** Send a CancelRequest for the recorded connection this long after the segment is written. */
  cancelAfterMs?: number;
}

export interface Scenario {
  name: string;
  description: string;
  /** Frames run first on the recorded connection; their replies are not kept. */
  setup?: Buffer[];
  /** Frames run on a second connection held open while the segments run. */
  helper?: Buffer[];
  segments: ScenarioSegment[];
}

export const scenarios: Scenario[];
export const proxyFrames: Record<
  | 'pinTenantA'
  | 'pinTenantARoleSettings'
  | 'pinMissingRole'
  | 'pipelinedReset'
  | 'resetDiscard'
  | 'resetKeepStatements'
  | 'rollback'
  | 'snapshot'
  | 'snapshotCustom'
  | 'restoreApplicationName'
  | 'refusalQuery'
  | 'refusalParse'
  | 'deallocateQuery'
  | 'deallocateParse'
  | 'closeNothingStatement'
  | 'closeNothingPortal',
  Buffer
>;

export function frame(code: string, ...parts: Buffer[]): Buffer;
export function query(sql: string): Buffer;
export function parse(name: string, sql: string, types?: number[]): Buffer;
export function bind(portal: string, statement: string, params?: (string | null)[]): Buffer;
export function describe(kind: 'S' | 'P', name: string): Buffer;
export function execute(portal?: string, maxRows?: number): Buffer;
export function close(kind: 'S' | 'P', name: string): Buffer;
export const sync: Buffer;
export const flush: Buffer;
export function copyData(text: string): Buffer;
export const copyDone: Buffer;
export function copyFail(message: string): Buffer;

export const VARIES: string[];
export function comparableReply(code: string, payload: Buffer): string;
