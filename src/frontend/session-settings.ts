// A client's session settings: what follows it from server to server, and what it has been told of them.
import { planSnapshot, REPORTED } from '../backend/pin.js';
import type { StatementAnalysis } from '../guard/sql-guard.js';
import { SqlState } from '../protocol/codes.js';
import { ProxyError } from '../protocol/errors.js';
import { encodeParameterStatus } from '../protocol/messages.js';

/**
 * Distinct custom settings (app.*) one session may name. Each is tracked, asked back after the transaction that set
 * it and re-applied on every server the client is pinned to, where PostgreSQL keeps its placeholder until the
 * backend ends: without a bound one client could fill every shared backend's settings table.
 */
export const MAX_CUSTOM_SETTINGS = 1000;

/**
 * The settings a client's session holds. The session applies them with each pin, asks the server for them after a
 * transaction that may have changed them (PostgreSQL has then applied rollbacks and SET LOCAL), and puts startup
 * values back after a RESET, as a dedicated connection would behave.
 */
export class SessionSettings {
  /** Canonical values, re-applied on every pin. */
  current: Map<string, string>;
  /** A statement sent since the last snapshot ran SET, RESET or set_config. */
  changed = false;
  /** The settings of the startup packet: what RESET returns to, as on a direct connection. */
  private readonly startup: ReadonlyMap<string, string>;
  /** Custom settings (app.*) the client has named, asked for by name in the snapshot. */
  private readonly custom = new Set<string>();
  /**
   * The ParameterStatus values the client has been told. A server reports a setting when the pin re-applies it there,
   * which the client already knows: like PostgreSQL itself, the client hears a setting only when it changes.
   */
  private readonly told = new Map<string, string>();

  constructor(startup: Map<string, string>) {
    this.current = startup;
    this.startup = new Map(startup);
    // pg_settings does not list custom ones: the snapshot asks for them by name, or would take them for RESET.
    for (const name of startup.keys()) if (name.includes('.')) this.custom.add(name);
  }

  /** A statement that would take the session past MAX_CUSTOM_SETTINGS distinct custom settings: its error. */
  overBudget(analysis: StatementAnalysis): ProxyError | null {
    const names = analysis.customSettings;
    if (this.custom.size + names.length <= MAX_CUSTOM_SETTINGS) return null;
    const added = names.filter((name) => !this.custom.has(name)).length;
    if (this.custom.size + added <= MAX_CUSTOM_SETTINGS) return null;
    return new ProxyError(
      SqlState.PROGRAM_LIMIT_EXCEEDED,
      `a session may set at most ${MAX_CUSTOM_SETTINGS} distinct custom settings through pg-tenant-proxy`,
    );
  }

  /** A statement on its way to the server: whether it may change settings, and which custom ones it names. */
  noteStatement(analysis: StatementAnalysis): void {
    if (!analysis.changesSettings) return;
    this.changed = true;
    for (const name of analysis.customSettings) this.custom.add(name);
  }

  /** The query that reads the session's settings back from its server; `changed` starts over. */
  beginSnapshot(): Buffer {
    this.changed = false;
    return planSnapshot(this.custom);
  }

  /**
   * Takes a snapshot as the session's settings. Returns the startup settings it lacks: they were RESET (or SET TO
   * DEFAULT), which PostgreSQL would return to the startup packet's value that the server never saw (the proxy applied
   * it with SET), so the caller sets them back; they are part of the settings already.
   */
  adopt(snapshot: Map<string, string>): Map<string, string> {
    const restore = new Map([...this.startup].filter(([name]) => !snapshot.has(name)));
    for (const [name, value] of restore) snapshot.set(name, value);
    this.current = snapshot;
    return restore;
  }

  /** A setting the server reported: a client's own SET of a reported setting follows it to its next server. */
  reported(name: string, value: string): void {
    if (REPORTED.has(name)) this.current.set(name, value);
  }

  /** The ParameterStatus frames for those of `values` the client has not been told yet (at login: all). */
  tellAll(values: ReadonlyMap<string, string>): Buffer[] {
    const frames: Buffer[] = [];
    for (const [name, value] of values) if (this.tell(name, value)) frames.push(encodeParameterStatus(name, value));
    return frames;
  }

  /** Whether the client must hear this value: it has not been told it yet. */
  tell(name: string, value: string): boolean {
    if (this.told.get(name) === value) return false;
    this.told.set(name, value);
    return true;
  }
}
