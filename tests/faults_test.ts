/** Worker faults, deadlines, aborts and overload: the pool and the server end to end. */
import assert from "node:assert/strict";
import { serve } from "../main.ts";
import { WorkerPool, WorkerPoolError } from "../pool.ts";
import { until } from "./_process.ts";
import { exchange } from "./_http_client.ts";
import type { FaultCommand } from "./fixtures/fault_worker.ts";

const FAULT_WORKER = new URL("./fixtures/fault_worker.ts", import.meta.url);
const HANDLER = new URL("./fixtures/fault_handler.ts", import.meta.url);
const BROKEN_HANDLER = new URL("./fixtures/broken_handler.ts", import.meta.url);
const BROKEN_WORKER = new URL("./fixtures/broken_worker.ts", import.meta.url);

function start(options: Parameters<typeof serve>[0] = {}) {
  return serve({ port: 0, workers: 2, handler: HANDLER, logLevel: "error", ...options });
}

async function status(url: string | URL): Promise<{ status: number; body: string }> {
  const response = await fetch(url);
  return { status: response.status, body: await response.text() };
}

for (const fault of ["crash", "reject", "close", "exit"]) {
  Deno.test(`a worker that dies (${fault}) fails only its request with 500 and is replaced`, async () => {
    await using server = await start();
    const base = server.url;
    const slow = status(new URL("/sleep?ms=400", base));
    await until(() => server.stats().busy === 1);
    // The other worker takes the fault; the slow request is untouched.
    const failed = await status(new URL(`/${fault}`, base));
    assert.equal(failed.status, 500);
    assert.deepEqual(await slow, { status: 200, body: "slept" });
    assert.deepEqual(await status(new URL("/ok", base)), { status: 200, body: "ok" });
    const stats = server.stats();
    assert.equal(stats.replaced, 1);
    assert.equal(stats.workers, 2);
  });
}

Deno.test("a request that kills its worker fails alone: idempotent neighbours on that worker run again, with their bodies", async () => {
  await using server = await start({ workers: 1 });
  await status(new URL("/ok", server.url)); // the worker is up
  // Four clients on one worker: three awaiting neighbours, then the killer.
  const send = (method: string, body?: string) =>
    fetch(new URL("/sleep?ms=400", server.url), { method, body })
      .then(async (r) => ({ status: r.status, body: await r.text() }));
  const get = send("GET");
  const put = send("PUT", "the PUT's body");
  const post = send("POST", "");
  await until(() => server.stats().running === 3);
  const crash = await status(new URL("/crash", server.url));
  assert.deepEqual(
    [await get, await put, await post, crash].map((r) => [r.status, r.body.trim()]),
    [
      [200, "slept"], // run again, alone on a fresh worker
      [200, "the PUT's body"], // run again with the body it had sent
      [500, "The worker handling this request crashed"], // POST: not run again
      [500, "The worker handling this request crashed"], // the culprit, alone too
    ],
  );
  assert.equal(server.stats().replaced, 2); // the first death, and the culprit's own
});

Deno.test("a request that makes its worker stuck fails alone: its stalled neighbour runs again", async () => {
  await using server = await start({ workers: 1, timeout: 300 });
  await status(new URL("/ok", server.url)); // the worker is up
  const sleeper = status(new URL("/sleep?ms=100", server.url));
  await until(() => server.stats().running === 1);
  // The spin blocks the worker's event loop, so the sleep cannot finish there.
  const spun = await status(new URL("/spin", server.url));
  assert.equal(spun.status, 504);
  assert.deepEqual(await sleeper, { status: 200, body: "slept" });
});

Deno.test("a handler that throws gets 500 and its worker is kept", async () => {
  await using server = await start();
  assert.equal((await status(new URL("/throw", server.url))).status, 500);
  assert.equal((await status(new URL("/ok", server.url))).status, 200);
  assert.equal(server.stats().replaced, 0);
});

Deno.test("a request past --timeout gets 504 and its spinning worker is replaced", async () => {
  await using server = await start({ timeout: 300 });
  const spun = await status(new URL("/spin", server.url));
  assert.equal(spun.status, 504);
  assert.deepEqual(await status(new URL("/ok", server.url)), { status: 200, body: "ok" });
  // The worker is found stuck once its ping goes unanswered for another --timeout.
  await until(() => server.stats().replaced === 1);
});

Deno.test("a full queue answers 503 with Retry-After at once, and service recovers by itself", async () => {
  await using server = await start({ workers: 1, workerConcurrency: 1, maxQueue: 2 });
  const port = server.addr.port;
  const busy = status(new URL("/sleep?ms=500", server.url));
  await until(() => server.stats().busy === 1);
  const queued = [status(new URL("/ok", server.url)), status(new URL("/ok", server.url))];
  await until(() => server.stats().queued === 2);
  const refused = await exchange(port, "GET /hit HTTP/1.1\r\nHost: x\r\n\r\n");
  assert.equal(refused.responses[0].status, 503);
  assert.equal(refused.responses[0].headers.get("retry-after"), "1");
  assert.equal((await busy).status, 200);
  assert.deepEqual((await Promise.all(queued)).map((r) => r.status), [200, 200]);
  // The refused request never reached a worker.
  assert.equal((await status(new URL("/hits", server.url))).body, "0");
});

Deno.test("a request that waits longer than the queue timeout gets 503", async () => {
  await using server = await start({ workers: 1, workerConcurrency: 1, queueTimeout: 300 });
  const busy = status(new URL("/sleep?ms=1500", server.url));
  await until(() => server.stats().busy === 1);
  const waited = await exchange(server.addr.port, "GET /hit HTTP/1.1\r\nHost: x\r\n\r\n");
  assert.equal(waited.responses[0].status, 503);
  assert.equal((await busy).status, 200);
  assert.equal((await status(new URL("/hits", server.url))).body, "0");
});

Deno.test("a client that disconnects while queued has its request dropped", async () => {
  await using server = await start({ workers: 1, workerConcurrency: 1 });
  const busy = status(new URL("/sleep?ms=400", server.url));
  await until(() => server.stats().busy === 1);
  const conn = await Deno.connect({ port: server.addr.port });
  await conn.write(new TextEncoder().encode("GET /hit HTTP/1.1\r\nHost: x\r\n\r\n"));
  await until(() => server.stats().queued === 1);
  conn.close();
  await until(() => server.connections === 0 || server.connections === 1);
  assert.equal((await busy).status, 200);
  assert.equal((await status(new URL("/hits", server.url))).body, "0");
});

Deno.test("serve() rejects when its workers die while starting, naming the cause, and leaves nothing running", async () => {
  await assert.rejects(
    start({ handler: BROKEN_HANDLER }),
    /^WorkerPoolError: Cannot start worker \d, received .*broken on purpose/,
  );
});

Deno.test("GET /_brigade/stats serves the pool's figures only when --stats is on", async () => {
  await using on = await start({ stats: true });
  await status(new URL("/ok", on.url));
  const { status: code, body } = await status(new URL("/_brigade/stats", on.url));
  assert.equal(code, 200);
  const stats = JSON.parse(body);
  for (const key of ["workers", "idle", "busy", "queued", "completed", "failed", "replaced"]) {
    assert.equal(typeof stats[key], "number", key);
  }
  assert.equal(stats.workers, 2);
  assert.ok(stats.completed >= 1);
  assert.equal(typeof stats.waitTime.p99, "number");
  assert.equal(typeof stats.runTime.p50, "number");
  await using off = await start();
  assert.equal((await status(new URL("/_brigade/stats", off.url))).status, 404);
});

Deno.test("WorkerPool.run() with an aborted signal drops a queued job before it runs", async () => {
  await using pool = new WorkerPool<FaultCommand, unknown>(FAULT_WORKER, { size: 1 });
  const first = pool.run({ op: "sleep", ms: 200 });
  const controller = new AbortController();
  const queued = pool.run({ op: "echo", value: "never" }, [], { signal: controller.signal });
  controller.abort(new Error("client left"));
  await assert.rejects(queued, /client left/);
  assert.equal(pool.stats().queued, 0);
  assert.equal(await first, 200);
  assert.equal(pool.stats().replaced, 0);
});

Deno.test("WorkerPool.run() with an aborted signal cancels a running job: its signal aborts on the worker, which is kept", async () => {
  await using pool = new WorkerPool<FaultCommand, unknown>(FAULT_WORKER, { size: 1 });
  await pool.run({ op: "echo", value: "warm" }); // started: the next job runs at once
  const controller = new AbortController();
  const waiting = pool.run({ op: "signal" }, [], { signal: controller.signal });
  await until(() => pool.stats().running === 1);
  controller.abort(new Error("stop"));
  await assert.rejects(waiting, /stop/);
  assert.equal(await pool.run({ op: "lastAbort" }), "stop", "the job's signal aborted");
  assert.equal(pool.stats().replaced, 0);
});

Deno.test("WorkerPool.run() aborted while its worker is still starting never reaches the worker", async () => {
  await using pool = new WorkerPool<FaultCommand, unknown>(FAULT_WORKER, { size: 1 });
  const controller = new AbortController();
  const early = pool.run({ op: "echo", value: "early" }, [], { signal: controller.signal });
  controller.abort(new Error("gave up"));
  await assert.rejects(early, /gave up/);
  assert.equal(await pool.run({ op: "whoami" }), 0, "the same worker, never replaced");
  assert.equal(pool.stats().replaced, 0);
});

Deno.test("WorkerPool: poison jobs on freshly replaced workers fail alone and never break the pool", async () => {
  await using pool = new WorkerPool<FaultCommand, unknown>(FAULT_WORKER, { size: 1 });
  // Each crash lands on the worker that replaced the last one, right after
  // it started: more crashes in a row than maxStartupFailures allows.
  for (let i = 0; i < 5; i++) {
    const error = await pool.run({ op: "crash", message: `poison ${i}` }).catch((e) => e);
    assert.ok(error instanceof WorkerPoolError);
    assert.equal(error.code, "worker-exited", error.message);
  }
  assert.equal(await pool.run({ op: "echo", value: "alive" }), "alive");
  assert.equal(pool.stats().replaced, 5);
});

Deno.test("WorkerPool rejects with code startup-failed when workers keep dying at start", async () => {
  await using pool = new WorkerPool(BROKEN_WORKER, { size: 2 });
  const error = await pool.run("anything").catch((e) => e);
  assert.ok(error instanceof WorkerPoolError);
  assert.equal(error.code, "startup-failed");
  assert.match(error.message, /broken on purpose/);
  await assert.rejects(pool.run("again"), WorkerPoolError);
});

Deno.test("WorkerPool with maxQueue rejects with code queue-full at once", async () => {
  await using pool = new WorkerPool<FaultCommand, unknown>(FAULT_WORKER, { size: 1, maxQueue: 1 });
  const running = pool.run({ op: "sleep", ms: 100 });
  const queued = pool.run({ op: "echo", value: 1 });
  const error = await pool.run({ op: "echo", value: 2 }).catch((e) => e);
  assert.ok(error instanceof WorkerPoolError);
  assert.equal(error.code, "queue-full");
  assert.deepEqual(await Promise.all([running, queued]), [100, 1]);
});

Deno.test("WorkerPool with a timeout rejects with code timeout and replaces the worker", async () => {
  await using pool = new WorkerPool<FaultCommand, unknown>(FAULT_WORKER, { size: 1, timeout: 200 });
  const error = await pool.run({ op: "spin" }).catch((e) => e);
  assert.ok(error instanceof WorkerPoolError);
  assert.equal(error.code, "timeout");
  assert.equal(await pool.run({ op: "echo", value: "next" }), "next");
  assert.deepEqual([pool.stats().replaced, pool.stats().failed, pool.stats().completed], [1, 1, 1]);
});

Deno.test("WorkerPool.run() fails only the job of a worker that calls self.close()", async () => {
  await using pool = new WorkerPool<FaultCommand, unknown>(FAULT_WORKER, { size: 1 });
  await pool.run({ op: "echo", value: 0 });
  const error = await pool.run({ op: "exit" }).catch((e) => e);
  assert.ok(error instanceof WorkerPoolError);
  assert.equal(error.code, "worker-exited");
  assert.equal(await pool.run({ op: "echo", value: "after" }), "after");
});

Deno.test("requests pipelined behind one that ends the connection never run", async () => {
  await using server = await start();
  const hit = "POST /hit HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n";
  for (
    const first of [
      "GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
      "GET /ok HTTP/1.0\r\n\r\n",
      "GET /ok HTTP/1.1\r\nHost: a b\r\n\r\n",
      "GET /ok HTTP/2.0\r\nHost: x\r\n\r\n",
    ]
  ) {
    const { closed } = await exchange(server.addr.port, first + hit + hit + hit, {
      awaitClose: true,
    });
    assert.equal(closed, true);
  }
  assert.equal((await status(new URL("/hits", server.url))).body, "0");
});

Deno.test("header bytes pass through byte-exact, as Deno.serve sends them (latin1, not re-encoded)", async () => {
  await using server = await start();
  const conn = await Deno.connect({ port: server.addr.port });
  try {
    // "café" in UTF-8 on the way in: the same four bytes must come back.
    const head = "GET /headers HTTP/1.1\r\nHost: x\r\nX-In: caf\xc3\xa9\r\n\r\n";
    await conn.write(Uint8Array.from(head, (c) => c.charCodeAt(0)));
    const bytes: number[] = [];
    const buf = new Uint8Array(4096);
    while (!String.fromCharCode(...bytes).includes("\r\n\r\n")) {
      const n = await conn.read(buf);
      if (n === null) break;
      bytes.push(...buf.subarray(0, n));
    }
    const text = String.fromCharCode(...bytes);
    assert.match(text, /\r\nx-echo: caf\xc3\xa9\r\n/, "the echoed value's bytes are unchanged");
    assert.match(text, /\r\nx-cafe: caf\xe9\r\n/, "U+00E9 goes out as the one byte 0xE9");
  } finally {
    conn.close();
  }
});

Deno.test("GET /_brigade/health answers 200 on the main thread; other /_brigade/ paths are 404 and never reach the app", async () => {
  await using server = await start();
  const jobs = () => server.stats().completed + server.stats().failed;
  const health = await status(new URL("/_brigade/health", server.url));
  assert.deepEqual(health, { status: 200, body: "serving\n" });
  const { responses } = await exchange(
    server.addr.port,
    "HEAD /_brigade/health HTTP/1.1\r\nHost: x\r\n\r\n" +
      "POST /_brigade/health HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    { responses: 2, headRequests: [true, false] },
  );
  assert.deepEqual(responses.map((r) => [r.status, r.body]), [[200, ""], [
    405,
    "Method Not Allowed\n",
  ]]);
  for (const path of ["/_brigade/hit", "/_brigade/stats", "/_brigade/"]) {
    assert.equal((await status(new URL(path, server.url))).status, 404, path);
  }
  // None of them became a job for a worker.
  assert.equal(jobs(), 0);
  assert.equal((await status(new URL("/ok", server.url))).status, 200);
  assert.equal(jobs(), 1);
});

Deno.test("GET /_brigade/metrics serves valid Prometheus text with --metrics, and 404 without", async () => {
  await using server = await start({ metrics: true });
  for (const path of ["/ok", "/ok", "/throw"]) await status(new URL(path, server.url));
  const { status: code, body } = await status(new URL("/_brigade/metrics", server.url));
  assert.equal(code, 200);
  const samples = new Map<string, number>();
  const typed = new Set<string>();
  for (const line of body.trimEnd().split("\n")) {
    const type = /^# TYPE ([a-z_]+) (counter|gauge|histogram)$/.exec(line);
    if (type) {
      typed.add(type[1]);
      continue;
    }
    if (line.startsWith("# HELP ")) continue;
    const sample = /^([a-z_]+)(\{[a-z]+="[^"]*"\})? (-?[0-9.e+]+)$/.exec(line);
    assert.ok(sample, `not a sample line: ${line}`);
    const family = sample[1].replace(/_(bucket|sum|count)$/, "");
    assert.ok(typed.has(sample[1]) || typed.has(family), `no TYPE before ${line}`);
    samples.set(sample[1] + (sample[2] ?? ""), Number(sample[3]));
  }
  assert.equal(samples.get('brigade_responses_total{class="2xx"}'), 2);
  assert.equal(samples.get('brigade_responses_total{class="5xx"}'), 1);
  assert.equal(samples.get("brigade_worker_restarts_total"), 0);
  for (const name of ["brigade_queue_wait_seconds", "brigade_run_seconds"]) {
    const buckets = [...samples].filter(([key]) => key.startsWith(`${name}_bucket`))
      .map(([, value]) => value);
    assert.ok(buckets.every((count, i) => i === 0 || count >= buckets[i - 1]), "cumulative");
    assert.equal(buckets.at(-1), samples.get(`${name}_count`));
    assert.equal(samples.get(`${name}_count`), 3);
  }
  await using plain = await start();
  assert.equal((await status(new URL("/_brigade/metrics", plain.url))).status, 404);
});

Deno.test("a handler that fails before its request body has arrived gets 500 with connection: close, and the connection closes", async () => {
  await using server = await start({ workers: 1 });
  const { responses, closed } = await exchange(
    server.addr.port,
    "POST /throw HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789",
    { awaitClose: true },
  );
  assert.equal(responses[0].status, 500);
  assert.equal(responses[0].headers.get("connection"), "close");
  assert.equal(closed, true);
});
