/**
 * The framer's cost is linear in the bytes received, however they are split:
 * counted here in bytes read, not in time.
 */
import assert from "node:assert/strict";
import { type FrameEvent, Framer } from "../_server/framing.ts";

const LIMITS = { maxRequestLine: 8192, maxHead: 16384, maxBody: 1 << 20 };

/**
 * A buffer that counts the bytes the framer reads from it: each index read,
 * and the length of each view it takes (decoding a view reads all of it).
 */
function countingBuffer(size: number): { buf: Uint8Array; reads: () => number } {
  const target = new Uint8Array(size);
  let reads = 0;
  const buf = new Proxy(target, {
    get(bytes, key) {
      if (typeof key === "string" && key.charCodeAt(0) <= 0x39) {
        reads++;
        return bytes[Number(key)];
      }
      if (key === "subarray") {
        return (from: number, to: number) => {
          const view = bytes.subarray(from, to);
          reads += view.length;
          return view;
        };
      }
      if (key === "indexOf") {
        return (value: number, from = 0) => {
          const found = bytes.indexOf(value, from);
          // A search reads up to its match, or to the end of the buffer.
          reads += (found === -1 ? bytes.length : found + 1) - from;
          return found;
        };
      }
      const value = Reflect.get(bytes, key);
      return typeof value === "function" ? value.bind(bytes) : value;
    },
    set(bytes, key, value) {
      bytes[Number(key as string)] = value;
      return true;
    },
  });
  return { buf, reads: () => reads };
}

/** Feeds `text` one byte per read, as a connection would, and returns the first event. */
function trickle(text: string): { event: FrameEvent | null; reads: number } {
  const bytes = new TextEncoder().encode(text);
  // Room to spare, as a connection's buffer has: no search may run into it.
  const { buf, reads } = countingBuffer(bytes.length + 32768);
  const framer = new Framer(LIMITS);
  let event: FrameEvent | null = null;
  for (let end = 1; end <= bytes.length && event === null; end++) {
    buf[end - 1] = bytes[end - 1];
    event = framer.next(buf, 0, end);
  }
  return { event, reads: reads() };
}

Deno.test("a head trickled one byte per read is read a few times in all, not once per read", () => {
  const value = "a" + " ".repeat(12000) + "b";
  const head = `GET / HTTP/1.1\r\nHost: x\r\nX-Long: ${value}\r\n\r\n`;
  const { event, reads } = trickle(head);
  assert.equal(event?.type, "head");
  // A few passes over each byte, whatever the reads: the search for the
  // line's end, then the parse (checks, trimming, decoding).
  assert.ok(reads <= 5 * head.length, `read ${reads} bytes of ${head.length}`);
});

Deno.test("a chunk-size line trickled one byte per read is read a few times in all", () => {
  const extension = ";x=" + "y".repeat(4000);
  const request = `POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n`;
  const body = `1${extension}\r\n`;
  const bytes = new TextEncoder().encode(request + body);
  const { buf, reads } = countingBuffer(bytes.length + 32768);
  for (let i = 0; i < request.length; i++) buf[i] = bytes[i];
  const framer = new Framer(LIMITS);
  assert.equal(framer.next(buf, 0, request.length)?.type, "head");
  const start = framer.consumed;
  const before = reads();
  let event: FrameEvent | null = null;
  let from = start;
  for (let end = start + 1; end <= bytes.length && event === null; end++) {
    buf[end - 1] = bytes[end - 1];
    event = framer.next(buf, from, end);
    from += framer.consumed;
  }
  // The size line is complete; the chunk's data has not arrived yet.
  assert.equal(event, null);
  assert.equal(from, bytes.length);
  const read = reads() - before;
  assert.ok(read <= 5 * body.length, `read ${read} bytes of ${body.length}`);
});

/** The first event for `bytes` fed whole. */
function frame(bytes: Uint8Array): FrameEvent | null {
  return new Framer(LIMITS).next(bytes, 0, bytes.length);
}

/** Latin-1 text to bytes, one byte per character (so "\xa0" is the single byte 0xa0). */
function latin1(text: string): Uint8Array {
  return Uint8Array.from(text, (c) => c.charCodeAt(0));
}

Deno.test("Transfer-Encoding: chunked followed by a no-break space byte is not chunked (400)", () => {
  for (const value of ["chunked\xa0", "\xa0chunked"]) {
    const event = frame(
      latin1(`POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: ${value}\r\n\r\n`),
    );
    assert.deepEqual(event && event.type === "error" ? event.status : event?.type, 400, value);
  }
});

Deno.test("control bytes in a chunk extension or a trailer value are refused (400)", () => {
  const head = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (const body of ["1;a=\x01\r\nx\r\n0\r\n\r\n", "0\r\nX-T: a\x00b\r\n\r\n"]) {
    const bytes = latin1(head + body);
    const framer = new Framer(LIMITS);
    let start = 0;
    let event: FrameEvent | null;
    do {
      event = framer.next(bytes, start, bytes.length);
      start += framer.consumed;
    } while (event !== null && event.type !== "error" && event.type !== "end");
    assert.equal(event?.type === "error" ? event.status : event?.type, 400, JSON.stringify(body));
  }
});

Deno.test("a bad Host is refused every time, even right after a good one or itself", () => {
  const status = (host: string) => {
    const event = frame(latin1(`GET / HTTP/1.1\r\nHost: ${host}\r\n\r\n`));
    return event?.type === "error" ? event.status : event?.type;
  };
  // The framer remembers the last Host that passed: only a good one may be skipped.
  assert.deepEqual(
    ["a b", "a b", "ok.example", "a b", "ok.example", "ok.example:99999", "ok.example:99999", ""]
      .map(status),
    [400, 400, "head", 400, "head", 400, 400, "head"],
  );
});
