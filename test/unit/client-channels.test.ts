// ClientChannels without PostgreSQL: which LISTEN/UNLISTEN take effect at a transaction's end, what the hub is asked
// to listen on, and when notifications may be written.
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { ClientChannels } from '../../src/channels/client-channels.js';
import type { ChannelHub, ChannelSubscriber } from '../../src/channels/hub.js';
import { channelPrefix } from '../../src/channels/names.js';
import type { ChannelAction } from '../../src/guard/analysis.js';
import type { StatementAnalysis } from '../../src/guard/sql-guard.js';
import { TxStatus } from '../../src/protocol/codes.js';

const PREFIX = channelPrefix('tenant_a');

class FakeHub {
  readonly subscribed = new Map<string, Set<ChannelSubscriber>>();
  fail = false;
  subscribe(channel: string, s: ChannelSubscriber): Promise<void> {
    if (this.fail) return Promise.reject(new Error('down'));
    let set = this.subscribed.get(channel);
    if (set === undefined) this.subscribed.set(channel, (set = new Set()));
    set.add(s);
    return Promise.resolve();
  }
  unsubscribe(channel: string, s: ChannelSubscriber): void {
    const set = this.subscribed.get(channel);
    set?.delete(s);
    if (set?.size === 0) this.subscribed.delete(channel);
  }
  channels(): string[] {
    return [...this.subscribed.keys()].map((c) => c.slice(PREFIX.length)).sort();
  }
}

function setup(): { hub: FakeHub; channels: ClientChannels; written: Buffer[]; client: { busy: boolean } } {
  const hub = new FakeHub();
  const written: Buffer[] = [];
  const client = { busy: false };
  const channels = new ClientChannels(hub as unknown as ChannelHub, 'tenant_a', {
    write: (buf) => written.push(buf),
    get busy() {
      return client.busy;
    },
    log: pino({ level: 'silent' }),
  });
  return { hub, channels, written, client };
}

const listen = (channel: string, index = 0): ChannelAction => ({ listen: true, channel, index });
const analysis = (...actions: ChannelAction[]): StatementAnalysis =>
  ({ channels: { actions, only: false } }) as unknown as StatementAnalysis;

/** Which channels the client hears: a notification on each, and which ones come out. */
function hears(channels: ClientChannels, written: Buffer[], names: string[]): string[] {
  written.length = 0;
  for (const name of names) channels.notify(PREFIX + name, 7, 'p');
  return written.map((b) => b.toString('utf8', 9, b.indexOf(0, 9)));
}

describe('client channels', () => {
  it('answers LISTEN between transactions at once, with the hub listening before the answer', async () => {
    const { hub, channels, written } = setup();
    const reply = await channels.answer([listen('a'), listen('b'), { listen: false, channel: 'a', index: 2 }]);
    expect(reply.toString('latin1')).toContain('LISTEN');
    expect(hub.channels()).toEqual(['b']);
    expect(hears(channels, written, ['a', 'b'])).toEqual(['b']);
    await channels.answer([{ listen: false, channel: null, index: 0 }]);
    expect(hub.channels()).toEqual([]);
  });

  it('applies a LISTEN sent in a transaction at its commit, drops it after an error or ROLLBACK', () => {
    const { hub, channels, written } = setup();
    // Segment 0: BEGIN; segment 1: LISTEN c (pending: the hub listens already); segment 2: COMMIT.
    channels.query(analysis(listen('c')), 1);
    expect(hub.channels()).toEqual(['c']);
    expect(hears(channels, written, ['c'])).toEqual([]);
    channels.ready(2, TxStatus.InTransaction);
    channels.completed('COMMIT', 2);
    channels.ready(3, TxStatus.Idle);
    expect(hears(channels, written, ['c'])).toEqual(['c']);

    channels.query(analysis(listen('r')), 4);
    channels.completed('ROLLBACK', 5);
    channels.ready(6, TxStatus.Idle);
    expect(hub.channels()).toEqual(['c']);

    channels.query(analysis(listen('e')), 6);
    channels.failed(6);
    channels.ready(7, TxStatus.Idle);
    expect(hub.channels()).toEqual(['c']);
    expect(hears(channels, written, ['c', 'r', 'e'])).toEqual(['c']);
  });

  it('a ROLLBACK before the LISTEN in the same Query string does not drop it', () => {
    const { hub, channels } = setup();
    // BEGIN; ROLLBACK; LISTEN late — the LISTEN is statement 2, the ROLLBACK the second completion.
    channels.query(analysis(listen('late', 2)), 0);
    channels.completed('BEGIN', 0);
    channels.completed('ROLLBACK', 0);
    channels.completed('LISTEN', 0);
    channels.ready(1, TxStatus.Idle);
    expect(hub.channels()).toEqual(['late']);
  });

  it('follows named statements and portals to the Execute', () => {
    const { hub, channels } = setup();
    channels.parsed('s1', analysis(listen('named')));
    channels.bound('', 's1');
    channels.executed('', 0);
    expect(channels.awaiting).toBe(true);
    channels.ready(1, TxStatus.Idle);
    expect(hub.channels()).toEqual(['named']);
    // Another statement parsed under the same name is no LISTEN.
    channels.parsed('s1', null);
    channels.bound('', 's1');
    channels.executed('', 1);
    expect(channels.awaiting).toBe(false);
  });

  it('drops what was pending when the server is lost', () => {
    const { hub, channels } = setup();
    channels.query(analysis(listen('lost')), 0);
    channels.serverLost();
    channels.ready(5, TxStatus.Idle);
    expect(hub.channels()).toEqual([]);
  });

  it('holds notifications while the client is busy and writes them in order at flush', async () => {
    const { channels, written, client } = setup();
    await channels.answer([listen('h')]);
    client.busy = true;
    channels.notify(PREFIX + 'h', 1, 'one');
    channels.notify(PREFIX + 'h', 2, 'two');
    channels.notify(`${channelPrefix('tenant_b')}h`, 3, 'not mine');
    expect(written).toHaveLength(0);
    channels.flush();
    expect(written).toHaveLength(0);
    client.busy = false;
    channels.flush();
    expect(written).toHaveLength(1);
    const text = written[0]!.toString('utf8');
    expect(text.indexOf('one')).toBeGreaterThan(0);
    expect(text.indexOf('two')).toBeGreaterThan(text.indexOf('one'));
    expect(text).not.toContain('not mine');
  });

  it('answers an error and listens to nothing when the hub cannot listen', async () => {
    const { hub, channels, written } = setup();
    hub.fail = true;
    const reply = await channels.answer([listen('x')]);
    expect(reply[0]).toBe(0x45); // ErrorResponse
    expect(reply.toString('latin1')).toContain('08001');
    hub.fail = false;
    expect(hears(channels, written, ['x'])).toEqual([]);
  });

  it('unsubscribes everything when the client leaves', async () => {
    const { hub, channels } = setup();
    await channels.answer([listen('p'), listen('q')]);
    channels.query(analysis(listen('pending')), 3);
    channels.close();
    expect(hub.channels()).toEqual([]);
  });
});
