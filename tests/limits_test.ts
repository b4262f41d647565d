/** Timeouts, connection limits, slow clients and slow readers. */
import assert from "node:assert/strict";
import { serve } from "../main.ts";
import { until } from "./_process.ts";
import { exchange, readResponses } from "./_http_client.ts";

const ROOT = new URL("../static/", import.meta.url).pathname;
const ECHO_HANDLER = new URL("./fixtures/fault_handler.ts", import.meta.url);
const encoder = new TextEncoder();
const GET = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";

function start(options: Parameters<typeof serve>[0] = {}) {
  return serve({ port: 0, workers: 2, root: ROOT, logLevel: "warn", ...options });
}

Deno.test("a request head that does not arrive in time gets 408 and a close", async () => {
  await using server = await start({ headTimeout: 300 });
  const { responses, closed } = await exchange(server.addr.port, "GET / HTTP/1.1\r\nHo", {
    awaitClose: true,
  });
  assert.deepEqual(responses.map((r) => r.status), [408]);
  assert.equal(closed, true);
});

Deno.test("a request body that stalls while its handler reads it gets 408 and a close", async () => {
  await using server = await start({ bodyTimeout: 300, handler: ECHO_HANDLER });
  const { responses, closed } = await exchange(
    server.addr.port,
    "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc",
    { awaitClose: true },
  );
  assert.deepEqual(responses.map((r) => r.status), [408]);
  assert.equal(closed, true);
});

Deno.test("an idle keep-alive connection is closed without a response", async () => {
  // Long enough that a loaded machine still delivers the request before it.
  await using server = await start({ idleTimeout: 1000 });
  const { responses, closed } = await exchange(server.addr.port, GET, { awaitClose: true });
  assert.deepEqual(responses.map((r) => r.status), [200]);
  assert.equal(responses[0].headers.get("connection"), undefined);
  assert.equal(closed, true);
  assert.equal(server.connections, 0);
});

Deno.test("the last of --max-requests responses says connection: close", async () => {
  await using server = await start({ maxRequests: 2 });
  const { responses, closed } = await exchange(server.addr.port, GET + GET + GET, {
    responses: 3,
    awaitClose: true,
  });
  assert.deepEqual(responses.map((r) => r.status), [200, 200]);
  assert.equal(responses[0].headers.get("connection"), undefined);
  assert.equal(responses[1].headers.get("connection"), "close");
  assert.equal(closed, true);
});

Deno.test("connections beyond --max-connections get 503 when none is idle", async () => {
  await using server = await start({ maxConnections: 2 });
  // Both held connections have a head under way: neither is idle.
  const held = await Promise.all([1, 2].map(() => Deno.connect({ port: server.addr.port })));
  try {
    await Promise.all(held.map((conn) => conn.write(encoder.encode("GET / HTTP/1.1\r\n"))));
    await until(() => server.connections === 2);
    const { responses, closed } = await exchange(server.addr.port, GET, { awaitClose: true });
    assert.deepEqual(responses.map((r) => r.status), [503]);
    assert.equal(responses[0].headers.get("retry-after"), "1");
    assert.equal(closed, true);
  } finally {
    for (const conn of held) conn.close();
  }
  await until(() => server.connections === 0);
  const ok = await exchange(server.addr.port, GET);
  assert.deepEqual(ok.responses.map((r) => r.status), [200]);
});

Deno.test("a full --max-connections closes the longest-idle keep-alive connection to admit a newcomer", async () => {
  await using server = await start({ maxConnections: 2 });
  const idle = await Promise.all([1, 2].map(() => Deno.connect({ port: server.addr.port })));
  try {
    // Each serves one request and then sits idle, kept alive.
    for (const conn of idle) {
      await conn.write(encoder.encode(GET));
      assert.deepEqual((await readResponses(conn)).responses.map((r) => r.status), [200]);
    }
    await until(() => server.connections === 2);
    const { responses } = await exchange(server.addr.port, GET);
    assert.deepEqual(responses.map((r) => r.status), [200]);
    // The first of the two idle connections was closed to make room.
    const first = await readResponses(idle[0], { awaitClose: true, responses: 0 });
    assert.equal(first.closed, true);
  } finally {
    for (const conn of idle) conn.close();
  }
});

Deno.test("slow clients dribbling headers never occupy a worker", async () => {
  await using server = await start({ workers: 1 });
  const head = encoder.encode("GET /hello.html HTTP/1.1\r\nHost: x\r\nX-Slow: yes\r\n\r\n");
  const slow = await Promise.all(
    Array.from({ length: 20 }, () => Deno.connect({ port: server.addr.port })),
  );
  try {
    // Every slow client sends all but the last byte, one byte at a time,
    // while a normal client is served between the rounds.
    for (let i = 0; i < head.length - 1; i++) {
      await Promise.all(slow.map((conn) => conn.write(head.subarray(i, i + 1))));
      if (i % 10 === 0) {
        const { responses } = await exchange(server.addr.port, GET);
        assert.deepEqual(responses.map((r) => r.status), [200]);
        const stats = server.stats();
        assert.equal(stats.busy + stats.queued, 0, "no job is waiting on a slow client");
      }
    }
    // The one worker has only ever run the normal clients' jobs.
    const completedBefore = server.stats().completed;
    await Promise.all(slow.map((conn) => conn.write(head.subarray(head.length - 1))));
    const answers = await Promise.all(slow.map((conn) => readResponses(conn)));
    assert.ok(answers.every((a) => a.responses[0]?.status === 200));
    assert.ok(server.stats().completed > completedBefore);
  } finally {
    for (const conn of slow) conn.close();
  }
});

Deno.test("a client that stops reading is dropped once a write stalls", async () => {
  const root = await Deno.makeTempDir();
  try {
    // Large enough to fill the socket buffers many times over.
    await Deno.writeFile(`${root}/big.bin`, new Uint8Array(8 << 20));
    await using server = await start({ root, writeTimeout: 300 });
    const conn = await Deno.connect({ port: server.addr.port });
    try {
      await conn.write(encoder.encode("GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n".repeat(4)));
      await until(() => server.connections === 0);
    } finally {
      conn.close();
    }
    const { responses } = await exchange(
      server.addr.port,
      "GET /404.html HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert.equal(responses[0].status, 404);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("Expect: 100-continue gets 100 before the body is sent, then the final status", async () => {
  await using server = await start({ handler: ECHO_HANDLER });
  const conn = await Deno.connect({ port: server.addr.port });
  try {
    await conn.write(
      encoder.encode(
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
      ),
    );
    const interim = await readResponses(conn);
    assert.deepEqual(interim.responses.map((r) => r.status), [100]);
    await conn.write(encoder.encode("hello"));
    const final = await readResponses(conn);
    assert.deepEqual(final.responses.map((r) => [r.status, r.body]), [[200, "hello"]]);
  } finally {
    conn.close();
  }
});

Deno.test("empty lines cannot keep a connection alive: they count toward the head's deadline", async () => {
  await using server = await start({ headTimeout: 300, idleTimeout: 300 });
  const conn = await Deno.connect({ port: server.addr.port });
  try {
    let closed = false;
    const reading = readResponses(conn, { awaitClose: true, responses: 0 }).then((r) => {
      closed = r.closed;
      return r;
    });
    // One empty line every 100 ms, well inside any single timeout.
    for (let i = 0; i < 30 && !closed; i++) {
      await conn.write(encoder.encode("\r\n")).catch(() => {});
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const { responses } = await reading;
    assert.equal(closed, true, "the connection was closed");
    assert.deepEqual(responses.map((r) => r.status), [408]);
  } finally {
    conn.close();
  }
});

Deno.test("a 200 KB Expect value under a large --max-head is parsed without blowing the stack", async () => {
  await using server = await start({ maxHead: 262144 });
  const value = "a".repeat(200_000);
  const { responses } = await exchange(
    server.addr.port,
    `GET / HTTP/1.1\r\nHost: x\r\nExpect: ${value}\r\nTransfer-Encoding-X: ${
      value.slice(0, 1000)
    }\r\n\r\n`,
  );
  assert.deepEqual(responses.map((r) => r.status), [200]);
  const after = await exchange(server.addr.port, GET);
  assert.deepEqual(after.responses.map((r) => r.status), [200]);
});
