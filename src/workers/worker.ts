// A worker process's side of the cluster: its index, cancel forwarding, and answers to the primary's questions.
import type { Logger } from 'pino';
import type { CancelPartition } from '../frontend/cancel.js';
import type { Proxy } from '../main.js';
import {
  isMessage,
  WORKER_COUNT_ENV,
  WORKER_INDEX_ENV,
  type Answers,
  type Question,
  type ToPrimary,
  type ToWorker,
} from './messages.js';

export interface WorkerLink {
  index: number;
  count: number;
  partition: CancelPartition;
  /** Answers the primary's questions and takes the cancels it forwards, for this proxy. */
  serve(proxy: Proxy): void;
}

export function workerLink(log: Logger): WorkerLink {
  const index = Number(process.env[WORKER_INDEX_ENV]);
  const count = Number(process.env[WORKER_COUNT_ENV]);
  if (!Number.isInteger(index) || !Number.isInteger(count) || index < 0 || index >= count) {
    throw new Error(`worker started without a valid ${WORKER_INDEX_ENV}/${WORKER_COUNT_ENV}`);
  }
  const send = (message: ToPrimary): void => {
    process.send?.(message, undefined, undefined, (err: Error | null) => {
      if (err !== null) log.warn({ err: err.message }, 'message to the primary process failed');
    });
  };
  return {
    index,
    count,
    partition: { index, count, forward: (pid, secret) => send({ pgtp: 'cancel', pid, secret }) },
    serve(proxy) {
      const answer = (what: Question): Promise<Answers[Question]> | Answers[Question] => {
        switch (what) {
          case 'metrics':
            return proxy.metrics.registry.getMetricsAsJSON();
          case 'status':
            return proxy.status();
          case 'readiness':
            return proxy.readiness();
        }
      };
      process.on('message', (message: unknown) => {
        if (!isMessage<ToWorker>(message)) return;
        if (message.pgtp === 'cancel') {
          proxy.cancel(message.pid, message.secret);
          return;
        }
        if (message.pgtp !== 'ask') return;
        Promise.resolve(answer(message.what)).then(
          (value) => send({ pgtp: 'answer', id: message.id, value }),
          (err: unknown) =>
            log.warn({ err: (err as Error).message, what: message.what }, 'could not answer the primary'),
        );
      });
    },
  };
}
