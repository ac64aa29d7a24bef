// How a migrate run shows itself: a redrawn progress line on a terminal, one line per tenant otherwise, and the summary.
import type { MigrateProgress, MigrateReport, TenantFailure } from './runner.js';

/** The part of a stream the progress display needs (process.stdout, or a fake terminal in tests). */
export interface ProgressStream {
  write(text: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

const ERASE_LINE = '\r\x1b[2K';
/** Redraws at most this often: a thousand tenants finishing fast must not flood the terminal. */
const REDRAW_MS = 100;

export function describeFailure(f: TenantFailure): string {
  const where = f.statement === null ? f.file : `${f.file} statement ${f.statement}`;
  return `tenant ${f.tenant}: ${where}: ${f.message}${f.sqlstate === null ? '' : ` (SQLSTATE ${f.sqlstate})`}`;
}

function seconds(ms: number): string {
  if (!Number.isFinite(ms)) return '?';
  const s = Math.round(ms / 1000);
  return s < 60 ? `${s}s` : `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
}

/**
 * On a terminal: one line redrawn in place (carriage return + ANSI erase-line), failures printed above it as they
 * happen. Elsewhere (CI logs, pipes): one line per tenant as it finishes.
 */
export function createProgress(stream: ProgressStream, now: () => number = Date.now): MigrateProgress {
  let total = 0;
  let done = 0;
  let failed = 0;
  let startedAt = 0;
  let lastDraw = 0;
  const tty = stream.isTTY === true;
  const line = (): string => {
    const elapsed = (now() - startedAt) / 1000;
    const rate = elapsed > 0 ? done / elapsed : 0;
    const eta = rate > 0 ? ((total - done) / rate) * 1000 : Infinity;
    const width = 24;
    const filled = total === 0 ? width : Math.round((done / total) * width);
    const text = `migrate [${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${done}/${total} tenants, ${failed} failed, ${rate.toFixed(1)}/s, ETA ${done === total ? '0s' : seconds(eta)}`;
    const columns = stream.columns ?? 0;
    return columns > 1 && text.length >= columns ? text.slice(0, columns - 1) : text;
  };
  const draw = (force: boolean): void => {
    const t = now();
    if (!force && t - lastDraw < REDRAW_MS) return;
    lastDraw = t;
    stream.write(`${ERASE_LINE}${line()}`);
  };
  return {
    start(n) {
      total = n;
      startedAt = now();
      if (tty) draw(true);
    },
    tenantDone(outcome) {
      done++;
      if (!outcome.ok) failed++;
      if (tty) {
        if (!outcome.ok) stream.write(`${ERASE_LINE}FAILED ${describeFailure(outcome)}\n`);
        draw(!outcome.ok || done === total);
        return;
      }
      stream.write(
        outcome.ok
          ? `ok     tenant ${outcome.tenant}: applied ${outcome.applied.join(', ')} (${outcome.durationMs} ms) [${done}/${total}]\n`
          : `FAILED ${describeFailure(outcome)} [${done}/${total}]\n`,
      );
    },
    finish() {
      if (tty && total > 0) {
        draw(true);
        stream.write('\n');
      }
    },
  };
}

/** The human summary printed after a run (the per-tenant lines, if any, came before). */
export function renderSummary(report: MigrateReport): string {
  const lines: string[] = [];
  if (report.dryRun) {
    for (const p of report.plan ?? []) lines.push(`would apply to tenant ${p.tenant}: ${p.migrations.join(', ')}`);
    lines.push(
      `dry run: ${report.plan?.length ?? 0} of ${report.selected} tenants behind, ${report.upToDate.length} up to date; nothing was changed`,
    );
    return `${lines.join('\n')}\n`;
  }
  for (const f of report.failed) lines.push(`failed: ${describeFailure(f)}`);
  for (const s of report.skipped) lines.push(`skipped: tenant ${s.tenant}: ${s.reason}`);
  const applied =
    report.succeeded.reduce((n, s) => n + s.applied.length, 0) +
    report.failed.reduce((n, f) => n + f.applied.length, 0);
  lines.push(
    `migrated ${report.succeeded.length} tenants (${applied} migrations applied), ${report.failed.length} failed, ${report.skipped.length} skipped, ${report.upToDate.length} already up to date, in ${(report.durationMs / 1000).toFixed(1)}s`,
  );
  return `${lines.join('\n')}\n`;
}
