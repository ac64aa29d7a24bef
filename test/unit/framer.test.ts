import { describe, expect, it } from 'vitest';
import { ProxyError } from '../../src/protocol/errors.js';
import { Framer } from '../../src/protocol/framer.js';
import { encodeQuery } from '../../src/protocol/messages.js';
import { SYNC } from '../../src/protocol/static.js';
import { Writer } from '../../src/protocol/writer.js';

function drain(framer: Framer): Buffer[] {
  const out: Buffer[] = [];
  while (framer.next()) out.push(Buffer.from(framer.buffer.subarray(framer.start, framer.end)));
  return out;
}

function feed(framer: Framer, chunks: Buffer[]): Buffer[] {
  const out: Buffer[] = [];
  for (const chunk of chunks) {
    framer.push(chunk);
    out.push(...drain(framer));
  }
  return out;
}

const frames = [encodeQuery('SELECT 1'), SYNC, encodeQuery('x'.repeat(300)), SYNC];
const stream = Buffer.concat(frames);

describe('Framer', () => {
  it('returns whole frames from one chunk as views', () => {
    const framer = new Framer(1 << 20, true);
    framer.push(stream);
    expect(framer.next()).toBe(true);
    expect(framer.buffer).toBe(stream);
    expect(framer.code).toBe(0x51);
    expect(drain(framer).length).toBe(3);
  });

  it('reassembles frames split at every byte boundary', () => {
    for (let cut = 1; cut < stream.length; cut++) {
      const framer = new Framer(1 << 20, true);
      const out = feed(framer, [stream.subarray(0, cut), stream.subarray(cut)]);
      expect(out, `cut at ${cut}`).toEqual(frames);
    }
  });

  it('reassembles frames fed one byte at a time and in random chunkings', () => {
    const bytes = [...stream].map((b) => Buffer.from([b]));
    expect(feed(new Framer(1 << 20, true), bytes)).toEqual(frames);
    let seed = 7;
    const random = (): number => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
    for (let round = 0; round < 200; round++) {
      const chunks: Buffer[] = [];
      for (let at = 0; at < stream.length;) {
        const size = 1 + Math.floor(random() * 40);
        chunks.push(stream.subarray(at, at + size));
        at += size;
      }
      expect(feed(new Framer(1 << 20, true), chunks)).toEqual(frames);
    }
  });

  it('frames untyped startup packets', () => {
    const startup = new Writer().begin().int32(196608).cstring('user').cstring('u').int8(0).end().flush();
    const framer = new Framer(10_000, false);
    const out = feed(framer, [startup.subarray(0, 3), startup.subarray(3)]);
    expect(out).toEqual([startup]);
    expect(framer.code).toBe(0);
  });

  it('refuses lengths below the minimum and above the limit', () => {
    const tooShort = Buffer.from([0x51, 0, 0, 0, 3]);
    const framer = new Framer(1000, true);
    framer.push(tooShort);
    expect(() => framer.next()).toThrow(ProxyError);
    const tooLong = Buffer.from([0x51, 0, 0, 0x10, 0]);
    const framer2 = new Framer(1000, true);
    framer2.push(tooLong);
    expect(() => framer2.next()).toThrow(/exceeds the limit/);
    const hugeStartup = Buffer.from([0x7f, 0xff, 0xff, 0xff]);
    const framer3 = new Framer(10_000, false);
    framer3.push(hugeStartup);
    expect(() => framer3.next()).toThrow(ProxyError);
  });

  it('reports buffered bytes of a partial frame', () => {
    const framer = new Framer(1 << 20, true);
    framer.push(stream.subarray(0, 3));
    expect(framer.next()).toBe(false);
    expect(framer.buffered).toBe(3);
  });
});

describe('Framer with large frames', () => {
  it('assembles a frame above the preallocation limit from many chunks without trusting the header up front', () => {
    const body = Buffer.alloc(3 * 1024 * 1024, 7);
    const frame = Buffer.concat([Buffer.from([0x64, 0, 0, 0, 0]), body]);
    frame.writeUInt32BE(body.length + 4, 1);
    const framer = new Framer(1 << 30, true);
    const before = process.memoryUsage().arrayBuffers;
    framer.push(frame.subarray(0, 5));
    expect(framer.next()).toBe(false);
    // Only the five header bytes arrived: nothing near 3 MB may have been allocated for them.
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(1024 * 1024);
    let out: Buffer | null = null;
    for (let at = 5; at < frame.length; at += 65536) {
      framer.push(frame.subarray(at, at + 65536));
      if (framer.next()) out = Buffer.from(framer.buffer.subarray(framer.start, framer.end));
    }
    expect(out?.equals(frame)).toBe(true);
  });
});
