// The client-to-server direction of a link: each frame judged, rewritten where the proxy must, entered in the ledger.
import { FrontendCode } from '../protocol/codes.js';
import { channelPrefix } from '../channels/names.js';
import { catalogFrame } from '../guard/rewrite-frame.js';
import { ProxyError } from '../protocol/errors.js';
import { encodeQuery, encodeUnnamedParse, readCString } from '../protocol/messages.js';
import type { StatementSource } from '../frontend/statement-tracker.js';
import type { LinkHost, LinkParts } from './link.js';
import { REFUSAL_SENTINEL } from './replies.js';
import type { ServerConn } from './server-conn.js';

const REFUSAL_PARSE = encodeUnnamedParse(REFUSAL_SENTINEL);
const REFUSAL_QUERY = encodeQuery(REFUSAL_SENTINEL);
const NO_SOURCE: StatementSource = { analysis: null, text: null };

export class LinkRequests {
  /** The frame the session judged while idle, with its verdict: its replay onto the server is not judged twice. */
  private approved: { frame: Buffer; source: StatementSource | null } | null = null;

  constructor(
    private readonly host: LinkHost,
    private readonly parts: LinkParts,
    private readonly send: (buf: Buffer) => void,
    /** Whether the client is still linked to `server` (the session may fail or close while a frame is handled). */
    private readonly linked: (server: ServerConn) => boolean,
  ) {}

  /** The tenant's channel prefix, for a NOTIFY's rewrite. */
  private get channelPrefix(): string {
    return channelPrefix(this.host.identity.schema);
  }

  approve(frame: Buffer, source: StatementSource | null): void {
    this.approved = { frame, source };
  }

  /** Async continuations replay frames, which may be malformed: failures end this session, nothing else. */
  guarded(step: () => void): void {
    try {
      step();
    } catch (err) {
      this.host.fail(err instanceof ProxyError ? err : ProxyError.internal(err));
    }
  }

  /** The frames in the client's framer go to `server`: runs of unrewritten frames in one write each. */
  forward(server: ServerConn): void {
    const framer = this.host.framer;
    let runBuf: Buffer | null = null;
    let runStart = 0;
    let runEnd = 0;
    while (framer.next()) {
      const { buffer, start, end, code } = framer;
      if (code === FrontendCode.Terminate) {
        // What the client sent before Terminate still reaches the server (a pipelined COMMIT must commit).
        if (runBuf !== null) this.send(runBuf.subarray(runStart, runEnd));
        this.host.close('client terminated', true);
        return;
      }
      const replacement = this.account(server, code, buffer, start, end);
      if (!this.linked(server)) {
        // The frame ended the link (the session failed): nothing further goes to this server.
        if (runBuf !== null) this.send(runBuf.subarray(runStart, runEnd));
        return;
      }
      if (replacement !== null) {
        if (runBuf !== null) this.send(runBuf.subarray(runStart, runEnd));
        runBuf = null;
        this.send(replacement);
      } else if (runBuf === buffer && runEnd === start) {
        runEnd = end;
      } else {
        if (runBuf !== null) this.send(runBuf.subarray(runStart, runEnd));
        runBuf = buffer;
        runStart = start;
        runEnd = end;
      }
    }
    if (runBuf !== null) this.send(runBuf.subarray(runStart, runEnd));
  }

  /** One queued frame (whole, at offset 0) to `server`. */
  frame(server: ServerConn, frame: Buffer): void {
    if (frame[0] === FrontendCode.Terminate) {
      this.host.close('client terminated', true);
      return;
    }
    const replacement = this.account(server, frame[0]!, frame, 0, frame.length);
    if (this.linked(server)) this.send(replacement ?? frame);
  }

  /**
   * Judges and rewrites one client frame headed to `server`, and enters what goes out in its ledger. Returns the frame
   * to send instead, or null to forward it as it is.
   */
  account(server: ServerConn, code: number, buf: Buffer, start: number, end: number): Buffer | null {
    const replacement = this.rewrite(server, code, buf, start, end);
    const replies = server.replies;
    const ended = replacement === null ? replies.request(code) : replies.requests(replacement);
    if (ended) this.parts.prepared.segmentSent(replies.sent);
    // A segment the proxy may have to replay keeps what went out (PreparedStatements.recording).
    if (this.parts.prepared.recording) this.parts.prepared.sent(replacement, buf, start, end);
    return replacement;
  }

  private rewrite(server: ServerConn, code: number, buf: Buffer, start: number, end: number): Buffer | null {
    const { prepared, tracker } = this.parts;
    const replies = server.replies;
    switch (code) {
      case FrontendCode.Query: {
        this.refuseInsideBatch(server, code);
        const verdict = this.judge(code, buf, start, end);
        if (verdict instanceof ProxyError) return this.refuse(server, verdict, REFUSAL_QUERY);
        tracker?.query(verdict ?? NO_SOURCE, replies.sent);
        if (verdict?.analysis?.channels != null) this.parts.channels?.query(verdict.analysis, replies.sent);
        const substitute = this.substitute(server, verdict, 'query');
        if (substitute !== null) return substitute;
        this.trackSessionChanges(server, verdict);
        // Catalog references go to the filtered views, channels to the tenant's (guard/rewrite-frame.ts); null for
        // every other statement.
        return catalogFrame(buf, start, end, verdict, this.channelPrefix);
      }
      case FrontendCode.FunctionCall:
        this.refuseInsideBatch(server, code);
        // A call by function OID skips the parser entirely: refused, answered like a failed Query.
        return this.refuse(server, ProxyError.functionCallRefused(), REFUSAL_QUERY);
      case FrontendCode.Parse: {
        const verdict = this.judge(code, buf, start, end);
        if (verdict instanceof ProxyError) return this.refuse(server, verdict, REFUSAL_PARSE);
        const substitute = buf[start + 5] === 0 ? this.substitute(server, verdict, 'parse') : null;
        const ddl = verdict?.analysis?.changesSchema === true;
        const rewritten = catalogFrame(buf, start, end, verdict, this.channelPrefix);
        const frame =
          substitute ??
          (rewritten === null
            ? prepared.parse(buf, start, end, server, ddl)
            : (prepared.parse(rewritten, 0, rewritten.length, server, ddl) ?? rewritten));
        if (frame instanceof ProxyError) return this.refuse(server, frame, REFUSAL_PARSE);
        // Only a Parse the proxy lets through changes the session or names a statement the tracker must keep.
        if (substitute === null) this.trackSessionChanges(server, verdict);
        tracker?.parsed(readCString(buf, start + 5, end)[0], verdict ?? NO_SOURCE);
        const channels = this.parts.channels;
        if (channels !== null && (verdict?.analysis?.channels != null || channels.mirroring))
          channels.parsed(readCString(buf, start + 5, end)[0], verdict?.analysis);
        return frame;
      }
      case FrontendCode.Bind:
        if (this.parts.channels?.mirroring === true) {
          const [portal, afterPortal] = readCString(buf, start + 5, end);
          this.parts.channels.bound(portal, readCString(buf, afterPortal, end)[0]);
        }
        if (tracker !== null) {
          const [portal, afterPortal] = readCString(buf, start + 5, end);
          tracker.bound(portal, readCString(buf, afterPortal, end)[0]);
        }
        return this.orRefuse(server, prepared.bind(buf, start, end, server));
      case FrontendCode.Describe:
        return this.orRefuse(server, prepared.describe(buf, start, end, server));
      case FrontendCode.Close:
        tracker?.closed(buf[start + 5] === 0x53 ? 'S' : 'P', readCString(buf, start + 6, end)[0]);
        if (this.parts.channels?.mirroring === true)
          this.parts.channels.closedStatement(buf[start + 5] === 0x53 ? 'S' : 'P', readCString(buf, start + 6, end)[0]);
        return prepared.close(buf, start, end);
      case FrontendCode.Execute:
        tracker?.executed(readCString(buf, start + 5, end)[0], replies.sent);
        if (this.parts.channels?.mirroring === true)
          this.parts.channels.executed(readCString(buf, start + 5, end)[0], replies.sent);
        prepared.execute(buf, start, server);
        return null;
      case FrontendCode.Sync:
      case FrontendCode.Flush:
      case FrontendCode.CopyData:
      case FrontendCode.CopyDone:
      case FrontendCode.CopyFail:
        return null;
      default:
        throw ProxyError.protocolViolation(`unexpected message type ${code} from client`);
    }
  }

  /**
   * PostgreSQL skips a Query or FunctionCall that follows an error inside an extended-protocol batch, so whether it
   * will be answered cannot be known when it is sent; no driver does this, so it is refused rather than guessed.
   */
  private refuseInsideBatch(server: ServerConn, code: number): void {
    if (!server.replies.unsynced) return;
    const what = code === FrontendCode.Query ? 'Query' : 'FunctionCall';
    throw ProxyError.protocolViolation(`${what} message inside an unfinished extended-query batch: send Sync first`);
  }

  private orRefuse(server: ServerConn, result: Buffer | null | ProxyError): Buffer | null {
    return result instanceof ProxyError ? this.refuse(server, result, REFUSAL_PARSE) : result;
  }

  /**
   * Refuses a statement on a linked server by sending one that fails to parse, so the server discards the rest of the
   * batch and aborts an open transaction exactly as for a real error; the ledger swaps its error for ours on return.
   */
  private refuse(server: ServerConn, error: ProxyError, sentinel: Buffer): Buffer {
    server.replies.refuse(error);
    return sentinel;
  }

  private judge(code: number, buf: Buffer, start: number, end: number): ProxyError | StatementSource | null {
    const approved = this.approved;
    if (approved !== null) {
      this.approved = null;
      if (approved.frame === buf && start === 0) return approved.source;
    }
    return this.parts.judge(code, buf, start, end);
  }

  /**
   * A Query or unnamed Parse on its way to the server: the no-op to send instead when it is a DEALLOCATE the proxy
   * answers itself (PreparedStatements.deallocate), else null.
   */
  private substitute(server: ServerConn, source: StatementSource | null, via: 'query' | 'parse'): Buffer | null {
    const deallocate = source?.analysis?.deallocate;
    return deallocate == null ? null : this.parts.prepared.deallocate(deallocate.name, via, server);
  }

  /** What a statement bound for the server changes of the session: settings to follow it, the server's statements. */
  private trackSessionChanges(server: ServerConn, source: StatementSource | null): void {
    if (source?.analysis != null) {
      this.parts.settings.noteStatement(source.analysis);
      if (source.analysis.changesSchema) this.parts.prepared.schemaChanged();
    }
    // SQL-level PREPARE/DEALLOCATE changes what the server holds: stop trusting the proxy's cache of it.
    if (source?.analysis?.touchesPrepared === true) server.statements.distrust();
  }
}
