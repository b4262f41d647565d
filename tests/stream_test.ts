/**
 * Requests as streams: response bodies and uploads stream, a client that
 * does not read stops costing more than a window, a client that leaves
 * aborts its request's signal, deadlines are per request, and one worker
 * runs many requests at once.
 */
import assert from "node:assert/strict";
import { serve } from "../main.ts";
import { until, within } from "./_process.ts";
import { dechunk, exchange, readResponses as readResponsesOf } from "./_http_client.ts";

const HANDLER = new URL("./fixtures/stream_handler.ts", import.meta.url);
const ROOT = new URL("../static/", import.meta.url).pathname;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

function start(options: Parameters<typeof serve>[0] = {}) {
  return serve({ port: 0, workers: 1, handler: HANDLER, logLevel: "error", ...options });
}

async function text(url: string | URL): Promise<string> {
  const response = await fetch(url);
  return await response.text();
}

/** Reads from `conn` until `done(bytes so far)`; fails after `limitMs`. */
async function readUntil(
  conn: Deno.Conn,
  done: (bytes: Uint8Array) => boolean,
  already: Uint8Array = new Uint8Array(0),
  limitMs = 10_000,
): Promise<Uint8Array> {
  let bytes = already;
  const chunk = new Uint8Array(65536);
  const deadline = Date.now() + limitMs;
  while (!done(bytes)) {
    if (Date.now() > deadline) {
      throw new Error(`not done within ${limitMs} ms: ${decoder.decode(bytes)}`);
    }
    const n = await within(conn.read(chunk), "a read", Math.max(0, deadline - Date.now()));
    if (n === null) throw new Error(`closed early: ${decoder.decode(bytes)}`);
    const grown = new Uint8Array(bytes.length + n);
    grown.set(bytes);
    grown.set(chunk.subarray(0, n), bytes.length);
    bytes = grown;
  }
  return bytes;
}

const contains = (needle: string) => (bytes: Uint8Array) => decoder.decode(bytes).includes(needle);

/** Starts a chunked upload to /echo-stream and waits for its first chunk's echo. */
async function startEchoUpload(conn: Deno.Conn): Promise<Uint8Array> {
  await conn.write(
    encoder.encode(
      "POST /echo-stream HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\none\r\n",
    ),
  );
  // The handler echoes what it has read so far, while the upload is open.
  return await readUntil(conn, contains("one"));
}

/** Reads on from `already` until the chunked response is complete; returns its body. */
async function readChunkedBody(conn: Deno.Conn, already: Uint8Array): Promise<string> {
  const bodyStart = (bytes: Uint8Array) => decoder.decode(bytes).indexOf("\r\n\r\n") + 4;
  const all = await readUntil(
    conn,
    (bytes) => dechunk(bytes, bodyStart(bytes)) !== undefined,
    already,
  );
  return decoder.decode(dechunk(all, bodyStart(all))!.body);
}

Deno.test("a streamed response's first chunk reaches the client before the handler ends the stream", async () => {
  await using server = await start();
  const conn = await Deno.connect({ port: server.addr.port });
  try {
    await conn.write(encoder.encode("GET /stream HTTP/1.1\r\nHost: x\r\n\r\n"));
    const earlyBytes = await readUntil(conn, contains("first\n"));
    const early = decoder.decode(earlyBytes);
    assert.match(early, /^HTTP\/1\.1 200 OK\r\n/);
    assert.match(early, /\r\ntransfer-encoding: chunked\r\n/);
    assert.ok(!early.includes("second"), "the second chunk waits for the test");
    assert.equal(await text(new URL("/release", server.url)), "released");
    assert.equal(await readChunkedBody(conn, earlyBytes), "first\nsecond\n");
  } finally {
    conn.close();
  }
});

Deno.test("an upload reaches the handler as a stream: its echo arrives before the upload ends", async () => {
  await using server = await start();
  const conn = await Deno.connect({ port: server.addr.port });
  try {
    const early = await startEchoUpload(conn);
    await conn.write(encoder.encode("3\r\ntwo\r\n0\r\n\r\n"));
    assert.equal(await readChunkedBody(conn, early), "onetwo");
  } finally {
    conn.close();
  }
});

Deno.test("a client that does not read holds the handler's stream near one window, then gets every byte", async () => {
  await using server = await start();
  const total = 64 << 20;
  const conn = await Deno.connect({ port: server.addr.port });
  try {
    await conn.write(encoder.encode("GET /big?mb=64 HTTP/1.1\r\nHost: x\r\n\r\n"));
    // Without reading: the handler produces until the socket buffers and one
    // window are full, then stops, because nothing is credited.
    let last = -1;
    let steady = 0;
    while (steady < 5) {
      const produced = Number(await text(new URL("/produced", server.url)));
      steady = produced === last && produced > 0 ? steady + 1 : 0;
      last = produced;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert.ok(last < 16 << 20, `the handler ran ahead to ${last} bytes`);
    // Now read everything and check each byte.
    const chunk = new Uint8Array(1 << 20);
    let head = "";
    let received = 0;
    let pending = new Uint8Array(0);
    let bad = -1;
    while (received < total && bad === -1) {
      const n = await conn.read(chunk);
      if (n === null) break;
      const joined = new Uint8Array(pending.length + n);
      joined.set(pending);
      joined.set(chunk.subarray(0, n), pending.length);
      let pos = 0;
      if (head === "") {
        const end = decoder.decode(joined.subarray(0, 1024)).indexOf("\r\n\r\n");
        if (end === -1) {
          pending = joined;
          continue;
        }
        head = decoder.decode(joined.subarray(0, end + 4));
        pos = end + 4;
      }
      // Strip the chunk framing as it comes.
      while (true) {
        const lf = joined.indexOf(10, pos);
        if (lf === -1) break;
        const size = parseInt(decoder.decode(joined.subarray(pos, lf - 1)), 16);
        if (size === 0 || joined.length < lf + 1 + size + 2) break;
        for (let i = 0; i < size && bad === -1; i++) {
          if (joined[lf + 1 + i] !== (received + i) % 251) bad = received + i;
        }
        received += size;
        pos = lf + 1 + size + 2;
      }
      pending = joined.slice(pos);
    }
    assert.match(head, /transfer-encoding: chunked/);
    assert.equal(bad, -1, `byte ${bad} is wrong`);
    assert.equal(received, total);
  } finally {
    conn.close();
  }
});

Deno.test("a slow but steady reader gets a whole response that takes longer than --write-timeout", async () => {
  await using server = await start({ writeTimeout: 300 });
  const conn = await Deno.connect({ port: server.addr.port });
  try {
    await conn.write(
      encoder.encode("GET /big?mb=2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    );
    const chunk = new Uint8Array(128 << 10);
    let bytes = 0;
    const started = Date.now();
    while (true) {
      const n = await conn.read(chunk);
      if (n === null) break;
      bytes += n;
      // About 1.3 MiB/s: each write makes progress well within 300 ms.
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assert.ok(Date.now() - started > 300, "the response outlasted one write timeout");
    assert.ok(bytes > 2 << 20, `received ${bytes} bytes`);
  } finally {
    conn.close();
  }
});

Deno.test("closing the connection aborts the request's signal on the worker", async () => {
  await using server = await start();
  assert.equal(await text(new URL("/ok", server.url)), "ok"); // the worker is up
  const conn = await Deno.connect({ port: server.addr.port });
  await conn.write(encoder.encode("GET /wait-abort HTTP/1.1\r\nHost: x\r\n\r\n"));
  await until(() => server.stats().running === 1);
  conn.close();
  let aborted = "";
  await until(async () => (aborted = await text(new URL("/aborted", server.url))) !== "", 5000);
  assert.equal(aborted, "AbortError, copy aborted: true");
  assert.equal(server.stats().requests, 0);
});

Deno.test("a request past --timeout gets 504 and its signal aborts, while its worker stays and serves others", async () => {
  await using server = await start({ timeout: 300 });
  const slow = fetch(new URL("/wait-abort", server.url));
  await until(() => server.stats().running === 1);
  // The same worker answers a quick request meanwhile: its event loop is free.
  assert.equal(await text(new URL("/ok", server.url)), "ok");
  const response = await slow;
  assert.equal(response.status, 504);
  await response.body?.cancel();
  assert.equal(await text(new URL("/aborted", server.url)), "AbortError, copy aborted: true");
  assert.equal(server.stats().replaced, 0);
});

Deno.test("one worker runs an awaiting request and a quick one at the same time", async () => {
  await using server = await start({ workers: 1 });
  let held = false;
  const holding = text(new URL("/hold", server.url)).then((body) => {
    held = true;
    return body;
  });
  await until(() => server.stats().running === 1);
  assert.equal(await text(new URL("/ok", server.url)), "ok");
  assert.equal(held, false, "the quick request did not wait for the awaiting one");
  assert.equal(await text(new URL("/release", server.url)), "released");
  assert.equal(await holding, "held");
});

Deno.test("N /sleeps occupy N workers, and the next one waits in the main thread's queue", async () => {
  await using server = await serve({
    port: 0,
    workers: 2,
    root: ROOT,
    sleepMs: 1500,
    logLevel: "error",
  });
  const sleep = () => fetch(new URL("/sleep", server.url)).then((r) => r.status);
  const first = sleep();
  await until(() => server.stats().blocked === 1);
  const second = sleep();
  await until(() => server.stats().blocked === 2);
  const third = sleep();
  await until(() => server.stats().queued === 1);
  assert.equal(server.stats().running, 2, "one request per blocked worker");
  assert.deepEqual(await Promise.all([first, second, third]), [200, 200, 200]);
});

Deno.test("N+1 /sleeps sent at once: N run, one per worker, and the last waits in the main thread's queue", async () => {
  await using server = await serve({
    port: 0,
    workers: 2,
    root: ROOT,
    sleepMs: 1000,
    logLevel: "error",
  });
  // All at once: no worker has declared its block yet when the third arrives.
  const sleeps = [1, 2, 3].map(() => fetch(new URL("/sleep", server.url)).then((r) => r.status));
  await until(() => server.stats().queued === 1);
  assert.equal(server.stats().running, 2, "one request per worker");
  assert.deepEqual(await Promise.all(sleeps), [200, 200, 200]);
});

Deno.test("GET / on a fresh connection is answered by a worker while the other is blocked by /sleep", async () => {
  await using server = await serve({
    port: 0,
    workers: 2,
    root: ROOT,
    sleepMs: 1500,
    logLevel: "error",
  });
  let slept = false;
  const sleeping = fetch(new URL("/sleep", server.url)).then(async (r) => {
    await r.text();
    slept = true;
  });
  await until(() => server.stats().blocked === 1);
  const { responses } = await exchange(server.addr.port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  assert.equal(responses[0].status, 200);
  assert.equal(slept, false);
  await sleeping;
});

Deno.test("a client that leaves during a silent stream cancels the handler's stream", async () => {
  await using server = await start();
  const conn = await Deno.connect({ port: server.addr.port });
  await conn.write(encoder.encode("GET /hang HTTP/1.1\r\nHost: x\r\n\r\n"));
  await readUntil(conn, contains("tick"));
  conn.close();
  let cancelled = "0";
  await until(
    async () => (cancelled = await text(new URL("/cancelled", server.url))) !== "0",
    5000,
  );
  assert.equal(cancelled, "1");
});

Deno.test("a malformed body after its response began cuts the connection, with no status spliced in", async () => {
  await using server = await start();
  const conn = await Deno.connect({ port: server.addr.port });
  try {
    const early = await startEchoUpload(conn);
    await conn.write(encoder.encode("zz\r\n"));
    let all = early;
    try {
      all = await readUntil(conn, () => false, early, 5000);
    } catch (error) {
      assert.match((error as Error).message, /^closed early/);
    }
    assert.equal(decoder.decode(all).match(/HTTP\/1\.1 /g)?.length, 1, "one status line only");
  } finally {
    conn.close();
  }
});

Deno.test("Server.close() waits for a body still arriving, answers it, and closes cleanly", async () => {
  const server = await serve({
    port: 0,
    workers: 1,
    handler: new URL("./fixtures/fault_handler.ts", import.meta.url),
    logLevel: "error",
  });
  const conn = await Deno.connect({ port: server.addr.port });
  try {
    await conn.write(
      encoder.encode("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nabc"),
    );
    await until(() => server.stats().running === 1);
    const closing = server.close();
    await conn.write(encoder.encode("def"));
    const { responses } = await readResponsesOf(conn);
    assert.deepEqual(responses.map((r) => [r.status, r.body]), [[200, "abcdef"]]);
    assert.deepEqual(await closing, { cut: 0 });
  } finally {
    conn.close();
  }
});
