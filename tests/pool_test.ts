import assert from "node:assert/strict";
import { WorkerPool, WorkerPoolError } from "../pool.ts";
import type { FaultCommand } from "./fixtures/fault_worker.ts";
import { until } from "./_process.ts";

const FAULT = new URL("./fixtures/fault_worker.ts", import.meta.url);
const ECHO = new URL("./fixtures/echo_worker.ts", import.meta.url);

function faultPool(options: ConstructorParameters<typeof WorkerPool>[1] = {}) {
  return new WorkerPool<FaultCommand, unknown, number>(FAULT, options);
}

/** A gate that jobs block on until the test opens it. */
function gate() {
  const shared = new SharedArrayBuffer(8);
  const cells = new Int32Array(shared);
  return {
    shared,
    open() {
      Atomics.store(cells, 0, 1);
      Atomics.notify(cells, 0);
    },
    /** How many gated jobs have started. */
    started: () => Atomics.load(cells, 1),
  };
}

Deno.test("new WorkerPool() rejects a size of 0, negative or fractional with a RangeError", () => {
  for (const size of [0, -1, 1.5, Number.NaN]) {
    assert.throws(() => new WorkerPool(ECHO, { size }), (error: unknown) => {
      assert.ok(error instanceof RangeError);
      assert.match(error.message, /^Cannot create WorkerPool: size must be a positive integer/);
      assert.ok(error.message.endsWith(`received ${size}`), error.message);
      return true;
    });
  }
});

Deno.test("new WorkerPool() rejects a relative worker URL with a TypeError", () => {
  assert.throws(() => new WorkerPool("./worker.ts", { size: 1 }), TypeError);
});

Deno.test("WorkerPool.run() returns the worker's result", async () => {
  await using pool = new WorkerPool<number, number>(ECHO, { size: 2 });
  assert.deepEqual(await Promise.all([1, 2, 3, 4].map((n) => pool.run(n))), [1, 4, 9, 16]);
});

Deno.test("WorkerPool.run() runs N jobs on N workers at the same time", async () => {
  const size = 3;
  await using pool = faultPool({ size });
  const shared = new SharedArrayBuffer(4);
  // Each job waits until all three have arrived; one-at-a-time would time out.
  const results = await Promise.all(
    Array.from({ length: size }, () => pool.run({ op: "barrier", shared, parties: size })),
  );
  assert.deepEqual(results, [true, true, true]);
});

Deno.test("WorkerPool.run() queues when all workers are busy and runs the queue in FIFO order", async () => {
  await using pool = faultPool({ size: 1 });
  const g = gate();
  const jobs = [0, 1, 2, 3].map((tag) => pool.run({ op: "gate", shared: g.shared, tag }));
  // Only the first job can have started; the rest wait in the queue.
  assert.equal(pool.stats().queued, 3);
  assert.equal(pool.stats().busy, 1);
  g.open();
  const results = (await Promise.all(jobs)) as { tag: number; order: number; workerId: number }[];
  assert.deepEqual(results.map((r) => r.order), [0, 1, 2, 3]);
  assert.deepEqual(results.map((r) => r.tag), [0, 1, 2, 3]);
});

Deno.test("WorkerPool.run() gives a job to the longest-idle worker and reuses workers", async () => {
  await using pool = faultPool({ size: 2 });
  const ids: unknown[] = [];
  for (let i = 0; i < 6; i++) ids.push(await pool.run({ op: "whoami" }));
  // The worker that just finished goes to the back of the idle queue.
  assert.deepEqual(ids, [0, 1, 0, 1, 0, 1]);
  assert.equal(pool.stats().replaced, 0);
});

Deno.test("WorkerPool.run() moves transferred buffers instead of copying them", async () => {
  await using pool = faultPool({ size: 1 });
  const bytes = new Uint8Array([1, 2, 3, 4]);
  let reversed: unknown;
  const received = await pool.run({ op: "bytes", bytes }, [bytes.buffer], {
    onMessage: (message) => reversed = message,
  });
  assert.equal(bytes.byteLength, 0, "the sender's buffer is detached after transfer");
  assert.equal(received, 4);
  assert.deepEqual([...(reversed as Uint8Array)], [4, 3, 2, 1]);
});

Deno.test("WorkerPool.run() delivers a job's messages before its result", async () => {
  await using pool = faultPool({ size: 1 });
  const seen: number[] = [];
  const result = await pool.run({ op: "progress", count: 3 }, [], {
    onMessage: (n) => seen.push(n),
  });
  assert.deepEqual(seen, [1, 2, 3]);
  assert.equal(result, 3);
});

Deno.test("WorkerPool.run() rejects only the failing job, with the worker's message and stack", async () => {
  await using pool = faultPool({ size: 1 });
  const [thrown, rejected, fine] = await Promise.allSettled([
    pool.run({ op: "throw", message: "bad input" }),
    pool.run({ op: "reject", message: "no luck" }),
    pool.run({ op: "echo", value: "still here" }),
  ]);
  assert.equal(thrown.status, "rejected");
  const error = (thrown as PromiseRejectedResult).reason as Error;
  assert.equal(error.name, "TypeError");
  assert.equal(error.message, "bad input");
  assert.match(error.stack ?? "", /fault_worker\.ts/);
  assert.equal(rejected.status, "rejected");
  assert.equal(((rejected as PromiseRejectedResult).reason as Error).name, "RangeError");
  assert.deepEqual(fine, { status: "fulfilled", value: "still here" });
  // The same worker answers again: an error inside a job does not kill it.
  assert.equal(await pool.run({ op: "whoami" }), 0);
  assert.equal(pool.stats().replaced, 0);
});

Deno.test("WorkerPool.run() survives an uncaught error in a worker without crashing the main thread", async () => {
  await using pool = faultPool({ size: 1 });
  await pool.run({ op: "echo", value: 1 }); // started and ready
  const error = await pool.run({ op: "crash", message: "boom" }).catch((e) => e);
  assert.ok(error instanceof WorkerPoolError);
  assert.equal(error.code, "worker-exited");
  assert.equal(await pool.run({ op: "echo", value: "after" }), "after");
  assert.equal(pool.stats().replaced, 1);
  assert.equal(pool.stats().workers, 1);
});

Deno.test("WorkerPool.close() lets running and queued jobs finish, then refuses new ones", async () => {
  const pool = faultPool({ size: 1 });
  const g = gate();
  const running = pool.run({ op: "gate", shared: g.shared, tag: 0 });
  const queued = pool.run({ op: "echo", value: "queued" });
  const closed = pool.close();
  const refused = await pool.run({ op: "echo", value: "late" }).catch((e) => e);
  assert.ok(refused instanceof WorkerPoolError);
  assert.equal(refused.code, "closed");
  assert.match(refused.message, /^Cannot run a job: the pool is closed/);
  g.open();
  assert.deepEqual(await running, { tag: 0, order: 0, workerId: 0 });
  assert.equal(await queued, "queued");
  await closed;
  assert.equal(pool.close(), closed, "a second close() returns the same promise");
  assert.deepEqual(
    { workers: pool.stats().busy + pool.stats().idle, queued: pool.stats().queued },
    { workers: 0, queued: 0 },
  );
});

Deno.test("WorkerPool logs the book's lines at debug level", async () => {
  const lines: string[] = [];
  const logger = { debug: (m: string) => lines.push(m), info: (m: string) => lines.push(m) };
  const pool = new WorkerPool<number, number>(ECHO, { size: 2, logger });
  await pool.run(3);
  await pool.close();
  assert.deepEqual(lines, [
    "Worker 0 got a job; executing. (job 1)",
    "Shutting down worker 0",
    "Shutting down worker 1",
  ]);
});

Deno.test("WorkerPool with concurrency 2 runs a second job on a worker whose first one awaits", async () => {
  await using pool = faultPool({ size: 1, concurrency: 2 });
  await pool.run({ op: "echo", value: "warm" });
  const controller = new AbortController();
  const waiting = pool.run({ op: "signal" }, [], { signal: controller.signal });
  await until(() => pool.stats().running === 1);
  assert.equal(await pool.run({ op: "echo", value: "beside it" }), "beside it");
  assert.equal(pool.stats().queued, 0);
  controller.abort(new Error("done"));
  await assert.rejects(waiting, /done/);
});

Deno.test("WorkerPool with concurrency 1 queues a second job behind an awaiting one", async () => {
  await using pool = faultPool({ size: 1, concurrency: 1 });
  await pool.run({ op: "echo", value: "warm" });
  const controller = new AbortController();
  const waiting = pool.run({ op: "signal" }, [], { signal: controller.signal });
  const next = pool.run({ op: "echo", value: "after" });
  assert.equal(pool.stats().queued, 1);
  controller.abort(new Error("done"));
  await assert.rejects(waiting, /done/);
  assert.equal(await next, "after");
});

Deno.test("WorkerPool gives no new job to a worker that declared a block", async () => {
  await using pool = faultPool({ size: 2, concurrency: 4 });
  await Promise.all([pool.run({ op: "whoami" }), pool.run({ op: "whoami" })]);
  const blocking = pool.run({ op: "block", ms: 400 });
  await until(() => pool.stats().blocked === 1);
  const ids = await Promise.all([1, 2, 3].map(() => pool.run({ op: "whoami" })));
  const blocker = await blocking;
  assert.deepEqual(ids.map((id) => id === blocker), [false, false, false]);
  assert.equal(pool.stats().blocked, 0);
});

Deno.test("WorkerPool fails a job whose declared block outlasts its deadline, and keeps the worker", async () => {
  await using pool = faultPool({ size: 1, timeout: 300 });
  await pool.run({ op: "echo", value: "warm" });
  const error = await pool.run({ op: "block", ms: 1000 }).catch((e) => e);
  assert.ok(error instanceof WorkerPoolError);
  assert.equal(error.code, "timeout");
  // A declared block is not a stuck worker: once it ends, the worker takes jobs again.
  assert.equal(await pool.run({ op: "echo", value: "after" }), "after");
  assert.deepEqual([pool.stats().replaced, pool.stats().abandoned], [0, 0]);
});

Deno.test("WorkerPool sends a job past a worker busy in CPU work to one whose event loop is free", async () => {
  await using pool = faultPool({ size: 2, concurrency: 4 });
  // Worker A (the first idle one, worker 0) is stuck in synchronous work it
  // did not declare (a gate); worker B is busy too, but only awaiting, so its
  // event loop is free.
  const g = gate();
  const controller = new AbortController();
  const stuck = pool.run({ op: "gate", shared: g.shared, tag: 0 });
  const awaiting = pool.run({ op: "signal" }, [], { signal: controller.signal }).catch(() => {});
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await until(() => g.started() === 1 && pool.stats().running === 2);
    // Both workers have one job; only B has caught up with what it was sent.
    // Least-loaded alone would pick worker 0, the stuck one.
    const chosen = await Promise.race([
      pool.run({ op: "whoami" }),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error("the job waited behind the stuck worker")), 5000);
      }),
    ]);
    assert.equal(g.started(), 1, "answered while A was still stuck");
    g.open();
    const { workerId: stuckWorker } = await stuck as { workerId: number };
    assert.notEqual(chosen, stuckWorker, "the job went to the worker whose loop was free");
  } finally {
    clearTimeout(timer);
    g.open();
    controller.abort(new Error("done"));
    await awaiting;
  }
});

Deno.test("WorkerPool rejects a job past its deadline with code timeout, aborts its signal, and keeps the responsive worker", async () => {
  await using pool = faultPool({ size: 1, concurrency: 2, timeout: 200 });
  await pool.run({ op: "echo", value: "warm" });
  const error = await pool.run({ op: "signal" }).catch((e) => e);
  assert.ok(error instanceof WorkerPoolError);
  assert.equal(error.code, "timeout");
  assert.equal(await pool.run({ op: "lastAbort" }), "deadline");
  assert.equal(pool.stats().replaced, 0);
});

Deno.test("WorkerPool rejects a job alone on a stuck worker at its deadline, before the worker is found stuck and replaced", async () => {
  await using pool = faultPool({ size: 1, timeout: 300 });
  await pool.run({ op: "echo", value: "warm" });
  const error = await pool.run({ op: "spin" }).catch((e) => e);
  assert.ok(error instanceof WorkerPoolError);
  assert.equal(error.code, "timeout");
  // The verdict on the worker comes only after its ping goes unanswered for a whole timeout.
  assert.deepEqual([pool.stats().abandoned, pool.stats().replaced], [0, 0]);
  await until(() => pool.stats().replaced === 1);
  assert.equal(pool.stats().abandoned, 1);
  assert.equal(await pool.run({ op: "echo", value: "after" }), "after");
});

Deno.test("WorkerPool keeps the answer of a lone job that answered before its deadline, though the main thread read it after", async () => {
  await using pool = faultPool({ size: 1, timeout: 1000 });
  await pool.run({ op: "echo", value: "warm" });
  for (let i = 0; i < 3; i++) {
    // Answers at about 500 ms; the main thread is then busy from 400 ms to
    // 1200 ms, so the pool's sweep timer and the answer are both due when it
    // is free again, and the timer may run first.
    const job = pool.run({ op: "sleep", ms: 500 }).catch((e) => e);
    await new Promise((resolve) => setTimeout(resolve, 400));
    stallMainThread(800);
    assert.equal(await job, 500, `round ${i}`);
  }
});

Deno.test("WorkerPool names the job whose code stalled a shared worker: it fails alone, its neighbour as a victim", async () => {
  await using pool = faultPool({ size: 1, concurrency: 2, timeout: 300 });
  await pool.run({ op: "echo", value: "warm" });
  const neighbour = pool.run({ op: "sleep", ms: 60_000 }).catch((e) => e);
  await until(() => pool.stats().running === 1);
  // Given to the worker only once it has started the neighbour.
  const culprit = await pool.run({ op: "spin" }).catch((e) => e);
  assert.ok(culprit instanceof WorkerPoolError);
  assert.deepEqual([culprit.code, culprit.shared], ["timeout", false]);
  const victim = await neighbour;
  assert.ok(victim instanceof WorkerPoolError);
  assert.deepEqual([victim.code, victim.shared], ["worker-exited", true]);
});

Deno.test("WorkerPool does not take a worker for stuck when its answer to the ping waited behind a stalled main thread", async () => {
  await using pool = faultPool({ size: 1, timeout: 300 });
  await pool.run({ op: "echo", value: "warm" });
  // Past its deadline at 300 ms, the job is pinged by 400 ms; the worker
  // answers at 500 ms, while the main thread is busy from 450 ms to 1200 ms.
  const job = pool.run({ op: "busy", ms: 500 }).catch((e) => e);
  await new Promise((resolve) => setTimeout(resolve, 450));
  stallMainThread(750);
  await job;
  assert.equal(await pool.run({ op: "echo", value: "after" }), "after");
  assert.deepEqual([pool.stats().replaced, pool.stats().abandoned], [0, 0]);
});

Deno.test("WorkerPool: a job past its deadline on a worker a stream has stalled fails as a possible victim (shared), not as the culprit", async () => {
  await using pool = faultPool({ size: 1, concurrency: 1, timeout: 300 });
  const answered = Promise.withResolvers<void>();
  const stream = pool.submit({ op: "detach" }, { onMessage: () => answered.resolve() });
  const streamEnd = stream.result.catch((e) => e);
  await answered.promise;
  await until(() => pool.stats().streams === 1);
  const job = pool.run({ op: "sleep", ms: 60_000 }).catch((e) => e);
  await until(() => pool.stats().running === 1);
  stream.send("spin");
  const error = await job;
  assert.ok(error instanceof WorkerPoolError);
  assert.deepEqual([error.code, error.shared], ["worker-exited", true]);
  assert.equal((await streamEnd as WorkerPoolError).code, "worker-exited");
});

Deno.test("WorkerPool holds messages for a job until it starts, then delivers them in order", async () => {
  await using pool = faultPool({ size: 1, concurrency: 1 });
  const replies: unknown[] = [];
  const job = pool.submit({ op: "echoMessages", count: 3 }, {
    onMessage: (message) => replies.push(message),
  });
  for (const n of [1, 2, 3]) job.send(n);
  assert.equal(await job.result, 3);
  assert.deepEqual(replies, [1, 2, 3]);
});

Deno.test("WorkerPool keeps a cancelled job's slot until its handler ends, so cancelled work cannot pile up", async () => {
  await using pool = faultPool({ size: 1, concurrency: 1 });
  await pool.run({ op: "echo", value: "warm" });
  const controller = new AbortController();
  // A sleep that ignores its signal: the work goes on after the cancel.
  const cancelled = pool.run({ op: "sleep", ms: 300 }, [], { signal: controller.signal });
  await until(() => pool.stats().running === 1);
  controller.abort(new Error("gone"));
  await assert.rejects(cancelled, /gone/);
  const next = pool.run({ op: "echo", value: "after" });
  assert.equal(pool.stats().queued, 1, "the slot is still taken");
  assert.equal(pool.stats().running, 1);
  assert.equal(await next, "after");
});

Deno.test("WorkerPool: a detached job frees its slot and its worker for others, has no deadline, and still ends", async () => {
  // A queue timeout, so that a job that never gets the worker fails rather than hangs.
  await using pool = faultPool({ size: 1, concurrency: 1, timeout: 200, queueTimeout: 2000 });
  const answered = Promise.withResolvers<void>();
  const stream = pool.submit({ op: "detach" }, { onMessage: () => answered.resolve() });
  try {
    await answered.promise;
    await until(() => pool.stats().streams === 1);
    assert.deepEqual([pool.stats().running, pool.stats().idle], [0, 1]);
    // Even a job that needs the worker to itself runs now.
    const alone = await pool.run({ op: "echo", value: "alone" }, [], { exclusive: true });
    assert.equal(alone, "alone");
    // Twice the deadline passes: a stream has none.
    await new Promise((resolve) => setTimeout(resolve, 400));
  } finally {
    stream.send("the end");
  }
  assert.equal(await stream.result, "the end");
  assert.equal(pool.stats().streams, 0);
});

Deno.test("WorkerPool.terminate() stops a spinning job's worker, so close() resolves", async () => {
  const pool = faultPool({ size: 1 });
  await pool.run({ op: "echo", value: "warm" });
  const spinning = pool.run({ op: "spin" }).catch((error) => error);
  await until(() => pool.stats().running === 1);
  assert.equal(pool.terminate(), 1);
  assert.ok((await spinning) instanceof WorkerPoolError);
  await pool.close();
  assert.deepEqual([pool.stats().running, pool.stats().busy], [0, 0]);
});

Deno.test("WorkerPool: an exclusive job waiting for an idle worker does not hold up the jobs behind it", async () => {
  await using pool = faultPool({ size: 2, concurrency: 4 });
  const controller = new AbortController();
  // Both workers busy (awaiting), so none is idle for the exclusive job.
  const busy = [0, 1].map(() =>
    pool.run({ op: "signal" }, [], { signal: controller.signal }).catch(() => "stopped")
  );
  await until(() => pool.stats().running === 2 && pool.stats().idle === 0);
  const exclusive = pool.run({ op: "echo", value: "alone" }, [], { exclusive: true });
  assert.equal(await pool.run({ op: "echo", value: "behind it" }), "behind it");
  assert.equal(pool.stats().queued, 1, "the exclusive job still waits");
  controller.abort(new Error("done"));
  assert.equal(await exclusive, "alone");
  await Promise.all(busy);
});

Deno.test("WorkerPool.submit() tells onResult and onError in a later microtask, and result still settles when read late", async () => {
  await using pool = faultPool({ size: 1 });
  const told: string[] = [];
  const results = Promise.withResolvers<void>();
  let pending = 2;
  const settled = () => --pending === 0 && results.resolve();
  const ok = pool.submit({ op: "echo", value: "fine" }, {
    onResult: (value) => {
      told.push(`result ${value}`);
      settled();
    },
  });
  const bad = pool.submit({ op: "throw", message: "bad input" }, {
    onError: (error) => {
      told.push(`error ${(error as Error).message}`);
      settled();
    },
  });
  await results.promise;
  assert.deepEqual(told, ["result fine", "error bad input"]);
  // Asked for only now, after the callbacks ran: the same outcome.
  assert.equal(await ok.result, "fine");
  await assert.rejects(bad.result, /bad input/);
});

Deno.test("WorkerPool.submit() refused at once still tells onError later, not during submit()", async () => {
  await using pool = faultPool({ size: 1, maxQueue: 0 });
  const gated = gate();
  const running = pool.run({ op: "gate", shared: gated.shared, tag: 0 });
  await until(() => gated.started() === 1);
  const told: { error?: Error } = {};
  const job = pool.submit({ op: "echo", value: 1 }, {
    onError: (error) => told.error = error as Error,
  });
  const toldError = () => told.error;
  assert.equal(toldError(), undefined);
  await assert.rejects(job.result, (error: WorkerPoolError) => error.code === "queue-full");
  assert.ok(toldError() instanceof WorkerPoolError);
  gated.open();
  await running;
});

Deno.test("WorkerPool.ready() resolves once every worker has started", async () => {
  await using pool = faultPool({ size: 2 });
  await pool.ready();
  assert.deepEqual([pool.stats().workers, pool.stats().replaced], [2, 0]);
});

Deno.test("WorkerPool.ready() rejects at the first start-up failure, with its error, and the pool stops there", async () => {
  const broken = new URL("./fixtures/broken_worker.ts", import.meta.url);
  await using pool = new WorkerPool(broken, { size: 2 });
  await assert.rejects(pool.ready(), (error: WorkerPoolError) => {
    assert.equal(error.code, "startup-failed");
    assert.match(error.message, /^Cannot start worker \d, received .*broken on purpose/);
    return true;
  });
  // No retries once the start has been reported: jobs are refused at once.
  await assert.rejects(pool.run(1), (error: WorkerPoolError) => error.code === "startup-failed");
  assert.equal(pool.stats().replaced, 0);
});

/** Keeps this (the main) thread busy for `ms`, as a long GC or a heavy turn would. */
function stallMainThread(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) { /* busy */ }
}
