// verify-isolation's report: every attempt, counts per category, the summary; as text and as JSON.
import { renderTable } from '../format/table.js';
import { CATEGORIES, CATEGORY_GUARDS, type Attempt, type Category, type Outcome } from './types.js';

export type Counts = Record<Outcome, number>;

export interface VerifyReport {
  reportVersion: 1;
  startedAt: string;
  finishedAt: string;
  proxy: string;
  database: string;
  tenants: { a: string; b: string; throwaway: boolean };
  /** The config's switches, as the run's own config file says (the running proxy's may differ). */
  config: { guard: boolean; roles: boolean; catalogFilter: boolean; checkNames: boolean };
  attempts: Attempt[];
  categories: Record<Category, Counts & { stoppedBy: string }>;
  summary: Counts & { attempts: number };
  /** What could not be removed at the end, if anything. */
  cleanupProblems: string[];
}

export function countAttempts(attempts: readonly Attempt[]): Pick<VerifyReport, 'categories' | 'summary'> {
  const zero = (): Counts => ({ leaked: 0, refused: 0, harmless: 0 });
  const categories = Object.fromEntries(
    CATEGORIES.map((c) => [c, { ...zero(), stoppedBy: CATEGORY_GUARDS[c] }]),
  ) as VerifyReport['categories'];
  const summary = { ...zero(), attempts: attempts.length };
  for (const a of attempts) {
    categories[a.category][a.outcome]++;
    summary[a.outcome]++;
  }
  return { categories, summary };
}

function clip(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max - 3)}...` : text;
}

export function renderReport(report: VerifyReport): string {
  const head =
    `verify-isolation through ${report.proxy} (database ${report.database}): tenant a "${report.tenants.a}" ` +
    `attacks tenant b "${report.tenants.b}"${report.tenants.throwaway ? ' (throwaway tenants)' : ''}\n\n`;
  const attempts = renderTable(
    ['CATEGORY', 'ATTEMPT', 'OUTCOME', 'DETAIL'],
    report.attempts.map((a) => [
      a.category,
      clip(a.name, 60),
      a.outcome === 'leaked' ? 'LEAKED' : a.outcome,
      clip(a.sqlstate !== undefined && a.outcome === 'refused' ? `${a.sqlstate} ${a.detail}` : a.detail, 100),
    ]),
  );
  const categories = renderTable(
    ['CATEGORY', 'LEAKED', 'REFUSED', 'HARMLESS', 'STOPPED BY'],
    CATEGORIES.map((c) => {
      const n = report.categories[c];
      return [c, n.leaked, n.refused, n.harmless, n.stoppedBy];
    }),
  );
  const s = report.summary;
  const verdict =
    s.leaked === 0
      ? `no leaks: ${s.attempts} attempts, ${s.refused} refused, ${s.harmless} harmless`
      : `${s.leaked} LEAKED of ${s.attempts} attempts (${s.refused} refused, ${s.harmless} harmless)`;
  const cleanup =
    report.cleanupProblems.length === 0
      ? ''
      : `\nleft behind (remove by hand):\n${report.cleanupProblems.map((p) => `  ${p}`).join('\n')}\n`;
  return `${head}${attempts}\n\n${categories}\n\nsummary: leaked ${s.leaked}, refused ${s.refused}, harmless ${s.harmless}\n${verdict}\n${cleanup}`;
}
