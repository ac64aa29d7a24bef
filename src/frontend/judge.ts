// The verdict on one Query or Parse of a logged-in client: refused (counted, audited), or what the statement is.
import type { Logger } from 'pino';
import type { AuditLog, ConnectionAudit } from '../audit/audit-log.js';
import type { TenantIdentity } from '../auth/identity.js';
import { parameterTypeRefusal } from '../guard/parameter-types.js';
import { isRefusal, type Refusal, type SqlGuard } from '../guard/sql-guard.js';
import type { TenantMeter } from '../metrics/metrics.js';
import { FrontendCode } from '../protocol/codes.js';
import type { ProxyError } from '../protocol/errors.js';
import { queryText } from '../protocol/messages.js';
import type { SessionSettings } from './session-settings.js';
import type { StatementSource } from './statement-tracker.js';

export class StatementJudge {
  /** Whether the guard judges this client's statements (not for a guard-bypass identity, nor with policy.guard off). */
  private readonly guarded: boolean;

  constructor(
    private readonly identity: TenantIdentity,
    private readonly settings: SessionSettings,
    private readonly guard: SqlGuard,
    guardOn: boolean,
    private readonly auditLog: AuditLog,
    private readonly audit: ConnectionAudit,
    private readonly meter: TenantMeter,
    private readonly log: Logger,
    /** Whether the audit or the metrics want to know what each statement is. */
    private readonly recording: boolean,
  ) {
    this.guarded = guardOn && !identity.guardBypass;
  }

  /**
   * A refusal, or what the statement is (null when neither the guard nor the audit needs to know). Parses with a reg*
   * parameter type declared in the message are judged as a cast to it in the text.
   */
  verdict(code: number, buf: Buffer, start: number, end: number): ProxyError | StatementSource | null {
    const blocked = this.auditLog.blockingError();
    if (blocked !== null) {
      this.meter.refusal('audit_unavailable');
      return blocked;
    }
    if (!this.guarded && !this.recording) return null;
    const text = queryText(buf, start, end);
    const keepText = this.audit.textMode === 'full' ? text : null;
    if (!this.guarded) return { analysis: this.guard.describe(text), text: keepText };
    const verdict = this.guard.check(text, this.identity.schema);
    if (isRefusal(verdict)) return this.refused(verdict, keepText);
    const typed = code === FrontendCode.Parse ? parameterTypeRefusal(buf, start, end, verdict) : null;
    if (typed !== null) return this.refused(typed, keepText);
    const overBudget = this.settings.overBudget(verdict);
    if (overBudget === null) return { analysis: verdict, text: keepText };
    return this.refused({ rule: 'session_state', error: overBudget, analysis: verdict }, keepText);
  }

  private refused(refusal: Refusal, keepText: string | null): ProxyError {
    this.meter.refusal(refusal.rule);
    this.audit.refusal({
      rule: refusal.rule,
      sqlstate: refusal.error.sqlstate,
      message: refusal.error.message,
      fingerprint: refusal.analysis?.fingerprint ?? null,
      statement: this.audit.statementText(refusal.analysis ?? null, keepText),
    });
    this.log.debug(
      { tenant: this.identity.tenantId, rule: refusal.rule, sqlstate: refusal.error.sqlstate },
      'statement refused',
    );
    return refusal.error;
  }
}
