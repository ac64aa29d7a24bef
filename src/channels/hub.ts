// One listening server connection per upstream: LISTENs on every channel some client of the proxy listens to, hands
// each notification to those clients, and reconnects (listening again on everything) when the connection is lost.
import pg from 'pg';
import type { Logger } from 'pino';

/** A client of the hub: a session's channels (ClientChannels). */
export interface ChannelSubscriber {
  notify(serverChannel: string, pid: number, payload: string): void;
}

const RECONNECT_MS = 1000;

export class ChannelHub {
  private readonly subscribers = new Map<string, Set<ChannelSubscriber>>();
  /** Channels the connection listens on now (confirmed), and the LISTEN/UNLISTEN in flight. */
  private readonly listening = new Set<string>();
  private client: pg.Client | null = null;
  /** The connection is up and has listened on every channel wanted when it connected. */
  private ready: Promise<pg.Client> | null = null;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private closed = false;
  /** Notifications handed out, and times the connection was (re)established: for tests and the status view. */
  readonly stats = { delivered: 0, connects: 0 };

  constructor(
    private readonly connection: pg.ClientConfig,
    private readonly log: Logger,
  ) {}

  /** Server channels listened on (for tests and the status view). */
  get channels(): ReadonlySet<string> {
    return this.listening;
  }

  /** The pid of the listening connection's backend, or null while it is down. */
  get pid(): number | null {
    return (this.client as unknown as { processID?: number } | null)?.processID ?? null;
  }

  /**
   * `subscriber` hears `serverChannel` from when the returned promise resolves: the connection then listens on it.
   * Rejects when the connection cannot be made or the LISTEN fails.
   */
  async subscribe(serverChannel: string, subscriber: ChannelSubscriber): Promise<void> {
    let set = this.subscribers.get(serverChannel);
    if (set === undefined) this.subscribers.set(serverChannel, (set = new Set()));
    set.add(subscriber);
    const client = await this.connected();
    if (this.listening.has(serverChannel) || this.subscribers.get(serverChannel) !== set) return;
    await client.query(`LISTEN ${quoteChannel(serverChannel)}`);
    // Unsubscribed meanwhile: the UNLISTEN queued behind this LISTEN already ran or will run.
    if (this.subscribers.get(serverChannel) === set) this.listening.add(serverChannel);
  }

  /** `subscriber` no longer hears `serverChannel`; the last one gone, the connection stops listening on it. */
  unsubscribe(serverChannel: string, subscriber: ChannelSubscriber): void {
    const set = this.subscribers.get(serverChannel);
    if (set === undefined || !set.delete(subscriber) || set.size > 0) return;
    this.subscribers.delete(serverChannel);
    const client = this.client;
    if (client === null) return;
    this.listening.delete(serverChannel);
    client.query(`UNLISTEN ${quoteChannel(serverChannel)}`).catch(() => undefined);
  }

  close(): void {
    this.closed = true;
    if (this.reconnectTimer !== null) clearTimeout(this.reconnectTimer);
    const client = this.client;
    this.client = null;
    this.ready = null;
    if (client !== null) void client.end().catch(() => undefined);
  }

  private connected(): Promise<pg.Client> {
    if (this.closed) return Promise.reject(new Error('the proxy is shutting down'));
    this.ready ??= this.connect();
    return this.ready;
  }

  private async connect(): Promise<pg.Client> {
    const client = new pg.Client({ ...this.connection, application_name: 'pg-tenant-proxy channels' });
    let lost = false;
    const onLost = (err?: Error): void => {
      if (lost) return;
      lost = true;
      if (this.client === client) {
        this.client = null;
        this.ready = null;
        this.listening.clear();
      }
      client.removeAllListeners('notification');
      void client.end().catch(() => undefined);
      if (this.closed || this.subscribers.size === 0) return;
      // Notifications sent while nobody listens are lost, as for a client whose connection drops.
      this.log.warn({ err: err?.message }, 'channel listening connection lost; reconnecting');
      this.scheduleReconnect();
    };
    client.on('error', onLost);
    client.on('end', () => onLost());
    client.on('notification', (message) => {
      const set = this.subscribers.get(message.channel);
      if (set === undefined) return;
      for (const subscriber of set) subscriber.notify(message.channel, message.processId, message.payload ?? '');
      this.stats.delivered++;
    });
    try {
      await client.connect();
      const channels = [...this.subscribers.keys()];
      if (channels.length > 0) await client.query(channels.map((c) => `LISTEN ${quoteChannel(c)}`).join('; '));
      if (lost || this.closed) throw new Error('channel listening connection closed while connecting');
      this.client = client;
      for (const c of channels) if (this.subscribers.has(c)) this.listening.add(c);
      this.stats.connects++;
      return client;
    } catch (err) {
      onLost(err as Error);
      if (this.ready !== null && this.client === null) this.ready = null;
      throw err;
    }
  }

  private scheduleReconnect(): void {
    if (this.reconnectTimer !== null) return;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      if (this.closed || this.subscribers.size === 0 || this.ready !== null) return;
      this.connected().catch(() => this.scheduleReconnect());
    }, RECONNECT_MS);
    this.reconnectTimer.unref();
  }
}

function quoteChannel(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}
