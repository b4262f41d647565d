/**
 * The framer's cost is linear in the bytes received, however they are split:
 * counted here in bytes searched, not in time.
 */
import assert from "node:assert/strict";
import { type FrameEvent, Framer } from "../_server/framing.ts";

const LIMITS = { maxRequestLine: 8192, maxHead: 16384, maxBody: 1 << 20 };

/** A buffer that counts the bytes its views' `indexOf` calls read. */
class CountingBytes extends Uint8Array {
  static searched = 0;
  override indexOf(value: number, from = 0): number {
    const found = super.indexOf(value, from);
    // A search reads up to its match, or to the end of the view.
    CountingBytes.searched += (found === -1 ? this.length : found + 1) - from;
    return found;
  }
}

/** Feeds `text` one byte per read, as a connection would, and returns the first event. */
function trickle(text: string): { event: FrameEvent | null; searched: number } {
  const bytes = new TextEncoder().encode(text);
  // Room to spare, as a connection's buffer has: no search may run into it.
  const buf = new CountingBytes(bytes.length + 32768);
  const framer = new Framer(LIMITS);
  CountingBytes.searched = 0;
  let event: FrameEvent | null = null;
  for (let end = 1; end <= bytes.length && event === null; end++) {
    buf[end - 1] = bytes[end - 1];
    event = framer.next(buf, 0, end);
  }
  return { event, searched: CountingBytes.searched };
}

Deno.test("a head trickled one byte per read is searched about once, not once per read", () => {
  const value = "a" + " ".repeat(12000) + "b";
  const head = `GET / HTTP/1.1\r\nHost: x\r\nX-Long: ${value}\r\n\r\n`;
  const { event, searched } = trickle(head);
  assert.equal(event?.type, "head");
  // Three passes over each line, whatever the reads: the search for its end,
  // the check for a stray CR once it is complete, and the parse.
  assert.ok(searched <= 3 * head.length + 64, `searched ${searched} bytes of ${head.length}`);
});

Deno.test("a chunk-size line trickled one byte per read is searched about once", () => {
  const extension = ";x=" + "y".repeat(4000);
  const request = `POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n`;
  const body = `1${extension}\r\n`;
  const bytes = new TextEncoder().encode(request + body);
  const buf = new CountingBytes(bytes.length + 32768);
  buf.set(bytes.subarray(0, request.length));
  const framer = new Framer(LIMITS);
  assert.equal(framer.next(buf, 0, request.length)?.type, "head");
  const start = framer.consumed;
  CountingBytes.searched = 0;
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
  assert.ok(CountingBytes.searched <= 2 * body.length + 64, `searched ${CountingBytes.searched}`);
});
