// The messages between the primary and its worker processes (over the cluster IPC channel).
import type { StatusSnapshot } from '../admin/status.js';
import type { Readiness } from '../metrics/http.js';

/** The worker's index travels in its environment, so a replacement takes the same share and pid residue. */
export const WORKER_INDEX_ENV = 'PGTP_WORKER_INDEX';
export const WORKER_COUNT_ENV = 'PGTP_WORKER_COUNT';

export interface Answers {
  /** prom-client's getMetricsAsJSON(), for AggregatorRegistry.aggregate. */
  metrics: object[];
  status: StatusSnapshot;
  readiness: Readiness;
}

export type Question = keyof Answers;

export type ToWorker = { pgtp: 'ask'; id: number; what: Question } | { pgtp: 'cancel'; pid: number; secret: number };

export type ToPrimary =
  { pgtp: 'answer'; id: number; value: Answers[Question] } | { pgtp: 'cancel'; pid: number; secret: number };

export function isMessage<T extends { pgtp: string }>(value: unknown): value is T {
  return typeof value === 'object' && value !== null && typeof (value as { pgtp?: unknown }).pgtp === 'string';
}
