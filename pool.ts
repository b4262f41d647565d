/**
 * A fixed-size pool of module Web Workers, the Rust Book's `ThreadPool` for
 * Deno. It knows nothing of HTTP: a job is any structured-cloneable value,
 * and a worker module answers it through {@linkcode handleJobs}.
 *
 * Each worker talks to the pool over its own `MessagePort`, and runs up to
 * `concurrency` jobs at once. A job is a stream: besides its data and its
 * result, either side may send messages and flow-control credit while it
 * runs. Workers with nothing to do wait in one FIFO idle queue, and a job
 * goes to the longest-idle worker first; otherwise to the least-loaded
 * worker whose event loop has caught up with what it was given; otherwise it
 * waits in a FIFO job queue.
 *
 * @module
 */

import { Channel } from "./_shared/channel.ts";
import { Queue } from "./_pool/queue.ts";
import {
  deserializeError,
  type Envelope,
  type FromWorker,
  type InitMessage,
  type ToWorker,
} from "./_shared/protocol.ts";

export { blockThread, handleJobs, type JobContext, type JobHandler } from "./_worker/jobs.ts";

/** Why the pool refused or lost a job; see {@linkcode WorkerPoolError.code}. */
export type WorkerPoolErrorCode =
  | "closed"
  | "queue-full"
  | "queue-timeout"
  | "timeout"
  | "worker-exited"
  | "startup-failed";

/**
 * The one error callers of {@linkcode WorkerPool.run} are expected to catch:
 * the job did not get an answer from a worker, and `code` says why. An error
 * thrown by the job itself is rethrown as the worker's own error instead.
 *
 * @example Telling overload from a job's own failure
 * ```ts
 * import assert from "node:assert/strict";
 * import { WorkerPoolError } from "./pool.ts";
 *
 * const error = new WorkerPoolError("queue-full", "Cannot run a job: the queue is full");
 * assert.equal(error.code, "queue-full");
 * assert.equal(error.shared, false);
 * ```
 */
export class WorkerPoolError extends Error {
  /** What went wrong, for callers that branch on it. */
  readonly code: WorkerPoolErrorCode;
  /**
   * For `"worker-exited"`: the worker was running other jobs too, and this
   * one is, or may be, an innocent neighbour of the one that killed it (the
   * culprit is known when its code was on the worker's stack).
   */
  readonly shared: boolean;

  /**
   * Makes the error; the pool does, callers only catch it.
   *
   * @param code What went wrong.
   * @param message A sentence for people.
   * @param options The underlying cause, and whether the worker was shared.
   */
  constructor(
    code: WorkerPoolErrorCode,
    message: string,
    options?: ErrorOptions & { shared?: boolean },
  ) {
    super(message, options);
    this.name = "WorkerPoolError";
    this.code = code;
    this.shared = options?.shared ?? false;
  }
}

/** Where the pool writes its diagnostics. */
export interface PoolLogger {
  /** The book's "Worker N got a job; executing." lines, with the job's id; leave it out to skip them. */
  debug?(message: string): void;
  /** Shutdown and worker replacement. */
  info(message: string): void;
}

/** Options for {@linkcode WorkerPool}. */
export interface WorkerPoolOptions {
  /**
   * Number of workers, fixed for the pool's life. Must be a positive integer.
   * @default {navigator.hardwareConcurrency}
   */
  size?: number;
  /**
   * Jobs one worker runs at once. Jobs that await interleave on a worker's
   * event loop; 1 gives the book's one-job-per-thread pool.
   * @default {1}
   */
  concurrency?: number;
  /**
   * Structured-cloneable value handed to every worker's setup function.
   * @default {undefined}
   */
  workerData?: unknown;
  /**
   * Most jobs that may wait for a worker; beyond it `run()` rejects at once
   * with code `"queue-full"`.
   * @default {Infinity}
   */
  maxQueue?: number;
  /**
   * Longest time in milliseconds a job may wait in the queue before it is
   * rejected with code `"queue-timeout"`.
   * @default {Infinity}
   */
  queueTimeout?: number;
  /**
   * Milliseconds a started job has to answer: to send its first message or
   * finish. Past it the job is cancelled and rejected with code `"timeout"`:
   * within two of the pool's 100 ms sweeps if it is alone on its worker, and
   * otherwise once the worker answers the pool's ping. Jobs that share a
   * worker whose event loop turns out stuck are rejected then, with code
   * `"worker-exited"` and `shared`, since any of them may be the culprit.
   * It is also how long a worker's event loop may go without answering the
   * pool: a worker that cannot answer a ping within it (outside a declared
   * {@linkcode blockThread}) is stuck, and is terminated and replaced.
   * @default {Infinity}
   */
  timeout?: number;
  /**
   * Consecutive worker deaths before `"ready"` after which the pool stops
   * respawning and rejects every job with code `"startup-failed"`.
   * @default {3}
   */
  maxStartupFailures?: number;
  /**
   * Receives the pool's log lines.
   * @default {a logger that prints nothing}
   */
  logger?: PoolLogger;
}

/** Options for one job, given to {@linkcode WorkerPool.submit} or {@linkcode WorkerPool.run}. */
export interface RunOptions<Message = unknown, Result = unknown> {
  /** Objects in the job's data to move rather than copy. */
  transfer?: Transferable[];
  /** Drops the job if queued; cancels it on its worker if running. */
  signal?: AbortSignal;
  /** Run only on a worker with nothing else to do, and give it nothing else meanwhile. */
  exclusive?: boolean;
  /**
   * A short, non-sensitive description of the job, such as `GET /sleep`,
   * shown by {@linkcode WorkerPool.workers} while it runs.
   */
  label?: string;
  /** Receives each message the job sends before its result. */
  onMessage?: (message: Message) => void;
  /**
   * Receives the job's result, as `result` would, without a promise per job.
   * Like promise callbacks, it runs in a later microtask.
   */
  onResult?: (result: Result) => void;
  /** Receives why the job has no result, in a later microtask. */
  onError?: (error: unknown) => void;
  /** Receives flow-control credit from the job for the messages sent to it. */
  onCredit?: (bytes: number) => void;
}

/** A submitted job: its result, and the way to talk to it while it runs. */
export interface Job<Result> {
  /** Settles with the job's result, or rejects with why it has none. */
  readonly result: Promise<Result>;
  /** Sends a message to the running job; held until the job starts on a worker. */
  send(message: unknown, transfer?: Transferable[]): void;
  /**
   * Tells the job that `bytes` of its messages were consumed, moving back
   * `buffers` it sent that are free for reuse.
   */
  credit(bytes: number, buffers?: ArrayBuffer[]): void;
  /** Drops the job if queued, cancels it on its worker if running, and rejects it. */
  cancel(reason: unknown): void;
}

/** A snapshot of the pool, from {@linkcode WorkerPool.stats}. */
export interface WorkerPoolStats {
  /** Workers in the pool, the fixed size. */
  workers: number;
  /** Workers with no job. */
  idle: number;
  /** Workers with at least one job. */
  busy: number;
  /** Workers in a declared block (see {@linkcode blockThread}). */
  blocked: number;
  /** Jobs started on workers and not finished (detached ones not counted). */
  running: number;
  /**
   * Detached jobs: long-lived streams (a server's WebSockets) that hold no
   * concurrency slot. See {@linkcode JobContext.detach}.
   */
  streams: number;
  /** Jobs waiting for a worker. */
  queued: number;
  /** Jobs a worker finished. */
  completed: number;
  /** Jobs that ended in an error of any kind. */
  failed: number;
  /** Workers terminated and started anew after a crash or for being stuck. */
  replaced: number;
  /**
   * Workers terminated for being stuck. Their threads may still run: in Deno
   * 2.9, `terminate()` does not stop a thread spinning in a JS loop.
   */
  abandoned: number;
  /** Workers pinged over a second ago that have not answered, outside a declared block. */
  unresponsive: number;
  /** Milliseconds jobs spent queued, over the most recent jobs. */
  waitTime: Percentiles;
  /** Milliseconds jobs spent running, over the most recent jobs. */
  runTime: Percentiles;
  /** Milliseconds jobs waited in the queue, every job since the start, in buckets. */
  waitHistogram: HistogramSnapshot;
  /** Milliseconds jobs ran, every job since the start, in buckets. */
  runHistogram: HistogramSnapshot;
}

/** Counts of samples at or below each bound, as Prometheus histograms have them. */
export interface HistogramSnapshot {
  /** Upper bounds in milliseconds, ascending; the last bucket (`+Inf`) is implied. */
  bounds: number[];
  /** Samples at or below each bound (cumulative), then all samples. */
  counts: number[];
  /** The sum of all samples, in milliseconds. */
  sum: number;
}

/** One worker, as {@linkcode WorkerPool.workers} describes it. */
export interface WorkerSnapshot {
  /** The worker's number, as in "Worker 3 got a job". */
  id: number;
  /** Starting (not ready yet), idle, busy with jobs, or blocked in a declared block. */
  state: "starting" | "idle" | "busy" | "blocked";
  /** Jobs on it now. */
  running: number;
  /** The longest-running of them: its label and how long it has run, in milliseconds. */
  oldest: { label: string; ageMs: number } | null;
  /** Jobs it finished. */
  completed: number;
  /** Jobs of it that ended in an error. */
  failed: number;
}

/** Percentiles of a recent sample, in milliseconds; 0 when empty. */
export interface Percentiles {
  /** The median. */
  p50: number;
  /** The 90th percentile. */
  p90: number;
  /** The 99th percentile. */
  p99: number;
  /** The largest sample. */
  max: number;
}

interface Task {
  id: number;
  label: string;
  data: unknown;
  transfer: Transferable[] | undefined;
  exclusive: boolean;
  onResult: ((value: never) => void) | undefined;
  onError: ((error: unknown) => void) | undefined;
  /** The promise behind `Job.result`, made only if someone asks for it. */
  deferred: PromiseWithResolvers<unknown> | undefined;
  ok: boolean;
  value: unknown;
  /** A long-lived stream now: no slot, no deadline, no run-time sample. */
  detached: boolean;
  error: unknown;
  /** Its callbacks have run (or would have): a `result` asked for now is settled at once. */
  notified: boolean;
  onMessage: ((message: never) => void) | undefined;
  onCredit: ((bytes: number) => void) | undefined;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
  /** Messages and credit sent before the task reached a worker. */
  held: { frame: ToWorker; transfer?: Transferable[] }[] | undefined;
  queuedAt: number;
  startedAt: number;
  answered: boolean;
  /** A sweep found it past its deadline and unanswered (alone on its worker); 0 if none has. */
  lateSince: number;
  slot: Slot | undefined;
  settled: boolean;
}

interface Slot {
  id: number;
  worker: Worker;
  channel: Channel<ToWorker, FromWorker>;
  ready: boolean;
  /** One of the workers the pool started with (not a replacement). */
  firstStart: boolean;
  /** Jobs that hold one of its `concurrency` slots. */
  tasks: Map<number, Task>;
  /** Detached jobs: long-lived streams that hold no slot. */
  streams: Map<number, Task>;
  exclusive: boolean;
  /** Number of the last envelope that carried a run frame. */
  runEnvelope: number;
  /** Envelopes of ours the worker has processed. */
  seen: number;
  lastHeard: number;
  /** When an unanswered ping was sent, and the envelope number it went in. */
  pingAt: number;
  pingEnvelope: number;
  /** When a sweep first found the ping unanswered past `timeout`; 0 if none has. */
  silentSince: number;
  blockedUntil: number;
  /** Jobs this worker finished, and those that ended in an error. */
  completed: number;
  failed: number;
  /** The id of the job whose code is on the worker's stack, 0 if none (see `InitMessage`). */
  onStack: Float64Array;
}

interface JobOps {
  send(task: Task, frame: ToWorker, transfer?: Transferable[]): void;
  cancel(task: Task, reason: unknown): void;
}

/** The handle {@linkcode WorkerPool.submit} returns: one object per job, no closures. */
class SubmittedJob<Result> implements Job<Result> {
  #task: Task;
  #ops: JobOps;

  constructor(task: Task, ops: JobOps) {
    this.#task = task;
    this.#ops = ops;
  }

  get result(): Promise<Result> {
    const task = this.#task;
    if (task.deferred === undefined) {
      task.deferred = Promise.withResolvers<unknown>();
      // Already told: settle it now. (Settled but not yet told: #notify will.)
      if (task.notified) {
        if (task.ok) task.deferred.resolve(task.value);
        else task.deferred.reject(task.error);
      }
    }
    return task.deferred.promise as Promise<Result>;
  }

  send(message: unknown, transfer?: Transferable[]): void {
    const task = this.#task;
    this.#ops.send(task, { type: "message", job: task.id, data: message }, transfer);
  }

  credit(bytes: number, buffers?: ArrayBuffer[]): void {
    const task = this.#task;
    this.#ops.send(task, { type: "credit", job: task.id, bytes, buffers }, buffers);
  }

  cancel(reason: unknown): void {
    this.#ops.cancel(this.#task, reason);
  }
}

const SAMPLE_SIZE = 1024;
const SWEEP_MS = 100;

/**
 * A fixed-size pool of module Web Workers, each running up to `concurrency`
 * jobs at once.
 *
 * @typeParam Data What `run()` sends to a worker.
 * @typeParam Result What the worker's handler returns.
 * @typeParam Message What the job may send before its result.
 *
 * @example Squaring numbers on two workers
 * ```ts
 * import assert from "node:assert/strict";
 * import { WorkerPool } from "./pool.ts";
 *
 * const url = new URL("./tests/fixtures/echo_worker.ts", import.meta.url);
 * await using pool = new WorkerPool<number, number>(url, { size: 2 });
 * const squares = await Promise.all([1, 2, 3].map((n) => pool.run(n)));
 * assert.deepEqual(squares, [1, 4, 9]);
 * ```
 */
export class WorkerPool<Data = unknown, Result = unknown, Message = unknown> {
  #url: URL;
  #size: number;
  #concurrency: number;
  #workerData: unknown;
  #maxQueue: number;
  #queueTimeout: number;
  #timeout: number;
  #maxStartupFailures: number;
  #logger: PoolLogger;

  #slots: Slot[] = [];
  #idle = new Queue<Slot>();
  #queue = new Queue<Task>();
  #nextTaskId = 1;
  #nextWorkerId = 0;
  #startupFailures = 0;
  /** Workers of the first start not ready yet; 0 once all were. */
  #unstarted = 0;
  #startError: WorkerPoolError | undefined;
  #readyWaiters: PromiseWithResolvers<void>[] = [];
  #broken: WorkerPoolError | undefined;
  #sweeper: ReturnType<typeof setInterval> | undefined;

  #closing = false;
  #closed: Promise<void> | undefined;
  #resolveClosed: (() => void) | undefined;

  #completed = 0;
  #failed = 0;
  #replaced = 0;
  #abandoned = 0;
  #waitTimes: number[] = [];
  #waitHistogram = new Histogram();
  #runHistogram = new Histogram();
  #settledTasks: Task[] = [];
  /** What a job handle may ask of the pool; one object for every job. */
  #jobOps: JobOps = {
    send: (task, frame, transfer) => this.#sendTo(task, frame, transfer),
    cancel: (task, reason) => this.#cancel(task, reason),
  };
  #runTimes: number[] = [];
  #sampleIndex = 0;

  /**
   * Starts `size` module workers from `url` at once.
   *
   * @param url Absolute URL of a worker module that calls {@linkcode handleJobs}.
   * @param options Size, concurrency, limits and logging.
   * @throws {RangeError} If `size`, `concurrency`, `maxQueue`, `timeout`,
   * `queueTimeout` or `maxStartupFailures` is out of range.
   * @throws {TypeError} If `url` is not an absolute URL.
   */
  constructor(url: string | URL, options: WorkerPoolOptions = {}) {
    const size = options.size ?? navigator.hardwareConcurrency;
    if (!Number.isInteger(size) || size < 1) {
      throw new RangeError(
        `Cannot create WorkerPool: size must be a positive integer, received ${String(size)}`,
      );
    }
    const concurrency = options.concurrency ?? 1;
    if (!Number.isInteger(concurrency) || concurrency < 1) {
      throw new RangeError(
        `Cannot create WorkerPool: concurrency must be a positive integer, received ${
          String(concurrency)
        }`,
      );
    }
    this.#maxQueue = checkLimit("maxQueue", options.maxQueue, true);
    this.#queueTimeout = checkLimit("queueTimeout", options.queueTimeout, false);
    this.#timeout = checkLimit("timeout", options.timeout, false);
    this.#maxStartupFailures = checkLimit(
      "maxStartupFailures",
      options.maxStartupFailures ?? 3,
      false,
    );
    try {
      this.#url = new URL(url);
    } catch {
      throw new TypeError(
        `Cannot create WorkerPool: url must be absolute, received ${String(url)}`,
      );
    }
    this.#size = size;
    this.#concurrency = concurrency;
    this.#workerData = options.workerData;
    this.#logger = options.logger ?? { info() {} };
    for (let i = 0; i < size; i++) {
      const slot = this.#spawn(true);
      this.#slots.push(slot);
      this.#idle.push(slot);
    }
    this.#unstarted = size;
  }

  /**
   * Waits for every worker the pool started with to finish its setup. Jobs
   * need not wait for this; a server does, to fail fast at start-up.
   *
   * @returns A promise that resolves once all `size` workers are ready.
   * @throws {WorkerPoolError} With code `"startup-failed"` as soon as any of
   * them dies before it is ready (a bad module, a setup that throws, a
   * missing permission), with that worker's error as the message.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { WorkerPool } from "./pool.ts";
   *
   * const url = new URL("./tests/fixtures/echo_worker.ts", import.meta.url);
   * await using pool = new WorkerPool(url, { size: 2 });
   * await pool.ready();
   * assert.equal(pool.stats().idle, 2);
   * ```
   */
  ready(): Promise<void> {
    if (this.#startError !== undefined) return Promise.reject(this.#startError);
    if (this.#broken !== undefined) return Promise.reject(this.#broken);
    if (this.#unstarted === 0) return Promise.resolve();
    const waiter = Promise.withResolvers<void>();
    this.#readyWaiters.push(waiter);
    return waiter.promise;
  }

  /** The number of workers, fixed at construction. */
  get size(): number {
    return this.#size;
  }

  /**
   * Runs `data` on a worker and resolves with the handler's result.
   *
   * @param data The job, structured-cloned to the worker.
   * @param transfer Objects to move to the worker instead of copying.
   * @param options An abort signal, exclusivity and message callbacks.
   * @returns The worker handler's result.
   * @throws {WorkerPoolError} If the pool is closed, the queue is full, or the
   * job's worker died or the job overran its deadline.
   * @throws {Error} The worker's own error, with its message and stack, if
   * the handler threw.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { WorkerPool } from "./pool.ts";
   *
   * const url = new URL("./tests/fixtures/echo_worker.ts", import.meta.url);
   * await using pool = new WorkerPool<number, number>(url, { size: 1 });
   * assert.equal(await pool.run(2), 4);
   * ```
   */
  run(
    data: Data,
    transfer: Transferable[] = [],
    options: RunOptions<Message, Result> = {},
  ): Promise<Result> {
    return this.submit(data, { ...options, transfer }).result;
  }

  /**
   * Submits a job and returns a handle to talk to it while it runs.
   *
   * @param data The job, structured-cloned to the worker.
   * @param options Transfers, an abort signal, exclusivity and callbacks.
   * @returns The job: its result, and `send`, `credit` and `cancel`.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { WorkerPool } from "./pool.ts";
   *
   * const url = new URL("./tests/fixtures/echo_worker.ts", import.meta.url);
   * await using pool = new WorkerPool<number, number>(url, { size: 1 });
   * const job = pool.submit(3);
   * assert.equal(await job.result, 9);
   * ```
   */
  submit(data: Data, options: RunOptions<Message, Result> = {}): Job<Result> {
    const now = performance.now();
    const task: Task = {
      id: this.#nextTaskId++,
      label: options.label ?? "",
      data,
      transfer: options.transfer,
      exclusive: options.exclusive ?? false,
      onResult: options.onResult as ((value: never) => void) | undefined,
      onError: options.onError,
      deferred: undefined,
      ok: false,
      value: undefined,
      detached: false,
      error: undefined,
      notified: false,
      onMessage: options.onMessage as ((message: never) => void) | undefined,
      onCredit: options.onCredit,
      signal: options.signal,
      onAbort: undefined,
      held: undefined,
      queuedAt: now,
      startedAt: 0,
      answered: false,
      lateSince: 0,
      slot: undefined,
      settled: false,
    };
    const job = new SubmittedJob<Result>(task, this.#jobOps);
    const refusal = this.#refusal(options.signal);
    if (refusal !== undefined) {
      this.#settle(task, refusal, false);
      return job;
    }
    if (options.signal) {
      task.onAbort = () => this.#cancel(task, options.signal!.reason);
      options.signal.addEventListener("abort", task.onAbort, { once: true });
    }
    this.#queue.push(task);
    this.#pump(now);
    if (task.slot === undefined && !task.settled) this.#startSweeper();
    return job;
  }

  /**
   * A snapshot of the workers, the queue and recent timings.
   *
   * @returns Counts since the pool started, and percentiles over recent jobs.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { WorkerPool } from "./pool.ts";
   *
   * const url = new URL("./tests/fixtures/echo_worker.ts", import.meta.url);
   * await using pool = new WorkerPool(url, { size: 2 });
   * const { workers, idle, queued } = pool.stats();
   * assert.deepEqual([workers, idle, queued], [2, 2, 0]);
   * ```
   */
  stats(): WorkerPoolStats {
    const now = performance.now();
    let busy = 0;
    let blocked = 0;
    let running = 0;
    let unresponsive = 0;
    let streams = 0;
    for (const slot of this.#slots) {
      streams += slot.streams.size;
      if (slot.tasks.size > 0) busy++;
      if (slot.blockedUntil > now) blocked++;
      if (slot.pingAt !== 0 && now - Math.max(slot.pingAt, slot.blockedUntil) > 1000) {
        unresponsive++;
      }
      for (const task of slot.tasks.values()) if (task.startedAt > 0) running++;
    }
    return {
      workers: this.#size,
      idle: this.#slots.length - busy,
      busy,
      blocked,
      running,
      streams,
      queued: this.#queue.length,
      completed: this.#completed,
      failed: this.#failed,
      replaced: this.#replaced,
      abandoned: this.#abandoned,
      unresponsive,
      waitTime: percentiles(this.#waitTimes),
      runTime: percentiles(this.#runTimes),
      waitHistogram: this.#waitHistogram.snapshot(),
      runHistogram: this.#runHistogram.snapshot(),
    };
  }

  /**
   * One line per worker: its state, how many jobs it runs, the oldest one's
   * label and age, and its counts. For dashboards; cheap enough to call a
   * few times a second.
   *
   * @returns The workers in the pool's order.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { WorkerPool } from "./pool.ts";
   *
   * const url = new URL("./tests/fixtures/echo_worker.ts", import.meta.url);
   * await using pool = new WorkerPool<number, number>(url, { size: 1 });
   * await pool.run(2, [], { label: "square 2" });
   * assert.deepEqual(pool.workers().map((w) => [w.state, w.completed]), [["idle", 1]]);
   * ```
   */
  workers(): WorkerSnapshot[] {
    const now = performance.now();
    return this.#slots.map((slot) => {
      let oldest: Task | undefined;
      for (const task of slot.tasks.values()) {
        if (task.startedAt > 0 && (oldest === undefined || task.startedAt < oldest.startedAt)) {
          oldest = task;
        }
      }
      const state: WorkerSnapshot["state"] = !slot.ready
        ? "starting"
        : slot.blockedUntil > now
        ? "blocked"
        : slot.tasks.size > 0
        ? "busy"
        : "idle";
      return {
        id: slot.id,
        state,
        running: slot.tasks.size,
        oldest: oldest === undefined
          ? null
          : { label: oldest.label, ageMs: Math.round(now - oldest.startedAt) },
        completed: slot.completed,
        failed: slot.failed,
      };
    });
  }

  /**
   * Refuses new jobs, lets running and queued jobs finish, then terminates
   * every worker at once. Safe to call more than once: every call returns the
   * same promise.
   *
   * @returns A promise that resolves once every worker is terminated.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { WorkerPool } from "./pool.ts";
   *
   * const url = new URL("./tests/fixtures/echo_worker.ts", import.meta.url);
   * const pool = new WorkerPool(url, { size: 2 });
   * const closing = pool.close();
   * assert.equal(pool.close(), closing);
   * await closing;
   * ```
   */
  close(): Promise<void> {
    if (this.#closed) return this.#closed;
    this.#closing = true;
    const { promise, resolve } = Promise.withResolvers<void>();
    this.#closed = promise;
    this.#resolveClosed = resolve;
    this.#maybeShutDown();
    return promise;
  }

  /**
   * Stops at once: rejects every running and queued job with code `"closed"`
   * and terminates every worker. Resolves a pending {@linkcode close} too.
   *
   * @returns How many jobs were cut off.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { WorkerPool } from "./pool.ts";
   *
   * const url = new URL("./tests/fixtures/echo_worker.ts", import.meta.url);
   * const pool = new WorkerPool(url, { size: 1 });
   * assert.equal(pool.terminate(), 0); // nothing was running
   * ```
   */
  terminate(): number {
    void this.close();
    const error = new WorkerPoolError("closed", "Cannot finish the job: the pool was terminated");
    let cut = 0;
    for (const task of this.#queue.drain()) {
      this.#settle(task, error, false);
      cut++;
    }
    for (const slot of this.#slots) {
      for (const task of takeAll(slot)) {
        if (!task.settled) cut++;
        this.#settle(task, error, false);
      }
    }
    this.#maybeShutDown();
    return cut;
  }

  /** Same as {@linkcode close}, for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  #refusal(signal: AbortSignal | undefined): unknown {
    if (this.#closing) {
      return new WorkerPoolError("closed", "Cannot run a job: the pool is closed");
    }
    if (this.#broken) return this.#broken;
    if (signal?.aborted) return signal.reason;
    if (this.#queue.length >= this.#maxQueue && !this.#hasRoom()) {
      return new WorkerPoolError(
        "queue-full",
        `Cannot run a job: the queue is full, received job ${
          this.#queue.length + 1
        } of ${this.#maxQueue}`,
      );
    }
    return undefined;
  }

  #hasRoom(): boolean {
    return this.#idle.length > 0 || this.#slots.some((slot) => this.#canTake(slot));
  }

  #spawn(firstStart = false): Slot {
    const id = this.#nextWorkerId++;
    const worker = new Worker(this.#url, { type: "module", name: `worker-${id}` });
    const { port1, port2 } = new MessageChannel();
    const onStack = new SharedArrayBuffer(Float64Array.BYTES_PER_ELEMENT);
    const slot: Slot = {
      id,
      worker,
      // Assigned right below; the handler needs the slot itself.
      channel: undefined as unknown as Channel<ToWorker, FromWorker>,
      ready: false,
      tasks: new Map(),
      streams: new Map(),
      exclusive: false,
      runEnvelope: 0,
      seen: 0,
      lastHeard: performance.now(),
      pingAt: 0,
      silentSince: 0,
      pingEnvelope: 0,
      blockedUntil: 0,
      firstStart,
      completed: 0,
      failed: 0,
      onStack: new Float64Array(onStack),
    };
    slot.channel = new Channel<ToWorker, FromWorker>(port1, (envelope) => {
      this.#onEnvelope(slot, envelope);
    });
    worker.onerror = (event: ErrorEvent) => {
      // Without this, the error would crash the main thread with
      // "Unhandled error in child worker".
      event.preventDefault();
      this.#onCrash(slot, event.error ?? new Error(event.message));
    };
    worker.onmessageerror = (event: MessageEvent) => {
      event.preventDefault();
      this.#onCrash(slot, new Error("A worker message could not be deserialized"));
    };
    const init: InitMessage = {
      type: "init",
      workerId: id,
      port: port2,
      workerData: this.#workerData,
      onStack,
    };
    worker.postMessage(init, [port2]);
    return slot;
  }

  /**
   * Whether `slot` may take one more job now: ready, not blocked or running
   * an exclusive job, below its concurrency, and caught up, meaning its event
   * loop processed the last envelope that gave it a job (or that envelope is
   * still being filled this turn). A worker stuck in CPU work stops catching
   * up, so new jobs go elsewhere.
   */
  #canTake(slot: Slot): boolean {
    if (!slot.ready || slot.exclusive || slot.tasks.size >= this.#concurrency) return false;
    if (slot.blockedUntil !== 0 && slot.blockedUntil > performance.now()) return false;
    return slot.seen >= slot.runEnvelope || slot.runEnvelope === slot.channel.sent + 1;
  }

  /**
   * Starts queued jobs on workers that can take them, in order. An exclusive
   * job waiting for an idle worker does not hold up the jobs behind it; they
   * leave the idle workers to it.
   */
  #pump(now = performance.now()): void {
    let index = 0;
    let exclusiveWaiting = false;
    while (index < this.#queue.length) {
      const task = this.#queue.at(index)!;
      const slot = this.#pick(task.exclusive, exclusiveWaiting);
      if (slot === undefined) {
        if (!task.exclusive) break;
        exclusiveWaiting = true;
        index++;
        continue;
      }
      if (index === 0) this.#queue.shift();
      else this.#queue.remove(task);
      this.#assign(slot, task, now);
    }
    this.#maybeShutDown();
  }

  /** The longest-idle worker (unless kept for an exclusive job), else the least-loaded one that can take a job. */
  #pick(exclusive: boolean, leaveIdle = false): Slot | undefined {
    const idle = leaveIdle ? undefined : this.#idle.shift();
    if (idle !== undefined || exclusive) return idle;
    let best: Slot | undefined;
    for (const slot of this.#slots) {
      if (this.#canTake(slot) && (best === undefined || slot.tasks.size < best.tasks.size)) {
        best = slot;
      }
    }
    return best;
  }

  #assign(slot: Slot, task: Task, now: number): void {
    task.slot = slot;
    slot.tasks.set(task.id, task);
    if (task.exclusive) slot.exclusive = true;
    if (slot.ready) this.#start(slot, task, now);
    // Otherwise it starts when the worker says it is ready.
  }

  #start(slot: Slot, task: Task, now: number): void {
    task.startedAt = now;
    this.#logger.debug?.(`Worker ${slot.id} got a job; executing. (job ${task.id})`);
    slot.channel.send({ type: "run", job: task.id, data: task.data }, task.transfer);
    slot.runEnvelope = slot.channel.sent + 1;
    task.data = undefined;
    task.transfer = undefined;
    if (task.held !== undefined) {
      for (const { frame, transfer } of task.held) slot.channel.send(frame, transfer);
      task.held = undefined;
    }
    this.#startSweeper();
  }

  #sendTo(task: Task, frame: ToWorker, transfer?: Transferable[]): void {
    if (task.settled) return;
    if (task.slot?.ready && task.startedAt > 0) task.slot.channel.send(frame, transfer);
    else (task.held ??= []).push({ frame, transfer });
  }

  #onEnvelope(slot: Slot, envelope: Envelope<FromWorker>): void {
    if (!this.#slots.includes(slot)) return;
    const now = performance.now();
    slot.lastHeard = now;
    slot.seen = envelope.seen;
    if (slot.pingAt !== 0 && envelope.seen >= slot.pingEnvelope) {
      // Alive: jobs past their deadline are merely slow, not stuck.
      slot.pingAt = 0;
      slot.silentSince = 0;
      this.#expire(slot, now);
    }
    for (const frame of envelope.frames) {
      if (frame.type === "ready") {
        slot.ready = true;
        this.#startupFailures = 0;
        if (slot.firstStart && this.#unstarted > 0 && --this.#unstarted === 0) {
          for (const waiter of this.#readyWaiters.splice(0)) waiter.resolve();
        }
        for (const task of slot.tasks.values()) this.#start(slot, task, now);
        continue;
      }
      if (frame.type === "block") {
        slot.blockedUntil = now + frame.ms;
        continue;
      }
      if (frame.type === "unblock") {
        slot.blockedUntil = 0;
        continue;
      }
      if (frame.type === "exit") {
        this.#onCrash(slot, new Error(frame.reason));
        return;
      }
      const task = slot.tasks.get(frame.job) ?? slot.streams.get(frame.job);
      if (task === undefined) continue;
      if (frame.type === "detach") {
        this.#detach(slot, task);
        continue;
      }
      if (task.settled) {
        // Cancelled, or past its deadline: only its end matters now.
        if (frame.type === "done" || frame.type === "error") this.#release(slot, task);
        continue;
      }
      switch (frame.type) {
        case "message":
          task.answered = true;
          task.onMessage?.(frame.data as never);
          break;
        case "credit":
          task.onCredit?.(frame.bytes);
          break;
        case "done":
          slot.completed++;
          this.#release(slot, task);
          this.#settle(task, undefined, true, frame.data, now);
          break;
        case "error":
          slot.failed++;
          this.#release(slot, task);
          this.#settle(task, deserializeError(frame.error), false, undefined, now);
          break;
      }
    }
    this.#pump(now);
  }

  /** Takes `task` off its worker; the worker may then become idle. */
  #release(slot: Slot, task: Task): void {
    task.slot = undefined;
    if (!slot.tasks.delete(task.id)) {
      slot.streams.delete(task.id);
      return;
    }
    if (task.exclusive) slot.exclusive = false;
    if (slot.tasks.size === 0 && this.#slots.includes(slot)) this.#idle.push(slot);
  }

  /** `task` goes on as a long-lived stream: its slot is free, and the worker may become idle. */
  #detach(slot: Slot, task: Task): void {
    if (!slot.tasks.delete(task.id)) return;
    task.detached = true;
    slot.streams.set(task.id, task);
    if (task.exclusive) slot.exclusive = false;
    if (slot.tasks.size === 0) this.#idle.push(slot);
  }

  /** Resolves or rejects `task` once, and records its timings. */
  #settle(
    task: Task,
    error: unknown,
    ok: boolean,
    value?: unknown,
    now = performance.now(),
  ): void {
    if (task.settled) return;
    task.settled = true;
    task.held = undefined;
    if (task.onAbort) task.signal!.removeEventListener("abort", task.onAbort);
    // A stream's life says nothing about how long jobs take.
    if (task.startedAt !== 0 && !task.detached) {
      const wait = task.startedAt - task.queuedAt;
      const run = now - task.startedAt;
      this.#waitTimes[this.#sampleIndex] = wait;
      this.#runTimes[this.#sampleIndex] = run;
      this.#sampleIndex = (this.#sampleIndex + 1) % SAMPLE_SIZE;
      this.#waitHistogram.add(wait);
      this.#runHistogram.add(run);
    }
    if (ok) this.#completed++;
    else this.#failed++;
    task.ok = ok;
    task.value = value;
    task.error = error;
    // Told in a later microtask, as promise callbacks would be: never in the
    // middle of the pool's own bookkeeping. One microtask for all the jobs
    // settled in this turn.
    this.#settledTasks.push(task);
    if (this.#settledTasks.length === 1) queueMicrotask(this.#notify);
  }

  #notify = (): void => {
    const tasks = this.#settledTasks;
    this.#settledTasks = [];
    for (const task of tasks) {
      task.notified = true;
      if (task.ok) {
        task.onResult?.(task.value as never);
        task.deferred?.resolve(task.value);
      } else {
        task.onError?.(task.error);
        task.deferred?.reject(task.error);
      }
    }
  };

  #cancel(task: Task, reason: unknown): void {
    if (task.settled) return;
    const slot = task.slot;
    if (slot) {
      if (slot.ready && task.startedAt > 0) {
        // Its handler may run on for a while: it keeps its slot until the
        // worker says it ended, so cancelled work cannot pile up on a worker.
        slot.channel.send({ type: "cancel", job: task.id, reason: describe(reason) });
      } else {
        this.#release(slot, task);
      }
    } else {
      this.#queue.remove(task);
    }
    this.#settle(task, reason, false);
    this.#pump();
  }

  #onCrash(slot: Slot, cause: unknown): void {
    if (!this.#slots.includes(slot)) return;
    const tasks = takeAll(slot);
    if (!slot.ready && slot.firstStart && this.#startError === undefined) {
      // The first start failed: whoever waits in ready() hears it now.
      this.#startError = new WorkerPoolError(
        "startup-failed",
        `Cannot start worker ${slot.id}, received ${firstLine(describe(cause))}`,
        { cause },
      );
      if (this.#readyWaiters.length > 0) {
        for (const waiter of this.#readyWaiters.splice(0)) waiter.reject(this.#startError);
        // Whoever waits for the start decides what happens now: no retries.
        this.#break(cause, this.#startError);
        return;
      }
    }
    if (!slot.ready) {
      // Died while starting. Its jobs were held back until "ready", so they
      // certainly never ran: they go back to the front of the queue.
      for (const task of tasks.reverse()) {
        task.slot = undefined;
        this.#queue.unshift(task);
      }
      if (++this.#startupFailures >= this.#maxStartupFailures) {
        this.#break(cause);
        return;
      }
    } else {
      this.#failAll(tasks, slot, "worker-exited", `worker ${slot.id} died`, cause);
    }
    this.#replace(slot, `crashed: ${describe(cause)}`);
  }

  /**
   * Fails the jobs of a worker that died or got stuck. The culprit is the job
   * whose code was on the worker's stack, if one was, or else a lone job;
   * otherwise the jobs that shared the worker are all marked `shared`, since
   * any one of them may have done it. (A job that stalls its worker after an
   * `await` runs in a continuation, with no job named on the stack; code a
   * job runs synchronously for another, such as an event listener, counts as
   * the first job's.)
   */
  #failAll(
    tasks: Task[],
    slot: Slot,
    code: WorkerPoolErrorCode,
    what: string,
    cause?: unknown,
  ): void {
    const onStack = slot.onStack[0];
    const named = onStack !== 0 && tasks.some((task) => task.id === onStack);
    const now = performance.now();
    for (const task of tasks) {
      task.slot = undefined;
      const shared = named ? task.id !== onStack : tasks.length > 1;
      const overdue = !task.answered && this.#overdue(task, now);
      const error = overdue && !shared
        ? new WorkerPoolError(
          "timeout",
          `Cannot finish the job: it ran past its ${this.#timeout} ms deadline`,
        )
        : new WorkerPoolError(code, `Cannot finish the job: ${what}`, { cause, shared });
      this.#settle(task, error, false);
    }
  }

  #overdue(task: Task, now: number): boolean {
    return task.startedAt > 0 && now - task.startedAt > this.#timeout;
  }

  /** Rejects the jobs on a responsive worker that ran past their deadline. */
  #expire(slot: Slot, now: number): void {
    for (const task of [...slot.tasks.values()]) {
      if (task.settled || task.answered || !this.#overdue(task, now)) continue;
      // Like a cancel: the slot stays taken until the worker says the job ended.
      slot.channel.send({ type: "cancel", job: task.id, reason: "deadline" });
      this.#settle(
        task,
        new WorkerPoolError(
          "timeout",
          `Cannot finish the job: it ran past its ${this.#timeout} ms deadline`,
        ),
        false,
      );
    }
  }

  /**
   * Deadlines and stuck workers. A worker with a job past its deadline, or
   * silent for a whole `timeout` with work to do, is pinged; one that does
   * not answer within `timeout` more (not counting a declared block) is
   * stuck: it is terminated and replaced.
   */
  #sweep(): void {
    const now = performance.now();
    const timeout = this.#timeout;
    for (const slot of [...this.#slots]) {
      if (slot.tasks.size === 0 || !slot.ready) continue;
      if (slot.pingAt !== 0) {
        // Stuck only a sweep period after a sweep first found the ping
        // unanswered: an answer may wait in the port behind a stall of the
        // main thread (see #expireAlone).
        if (now - Math.max(slot.pingAt, slot.blockedUntil) > timeout) {
          if (slot.silentSince === 0) slot.silentSince = now;
          else if (now - slot.silentSince >= SWEEP_MS) {
            this.#onStuck(slot);
            continue;
          }
        }
      } else {
        let overdue = now - slot.lastHeard > timeout;
        for (const task of slot.tasks.values()) {
          if (overdue) break;
          overdue = !task.settled && !task.answered && this.#overdue(task, now);
        }
        if (overdue) {
          slot.channel.send({ type: "ping" });
          slot.channel.flush();
          slot.pingAt = now;
          slot.pingEnvelope = slot.channel.sent;
        }
      }
      if (slot.tasks.size === 1 && slot.streams.size === 0) this.#expireAlone(slot, now);
    }
    this.#expireQueued(now);
    if (this.#queue.length === 0 && this.#slots.every((slot) => slot.tasks.size === 0)) {
      this.#stopSweeper();
    }
  }

  /**
   * A job past its deadline alone on its worker is the culprit, whether the
   * worker is stuck or only slow: it fails without waiting for the verdict on
   * the worker, which the ping still decides. (Jobs that share a worker,
   * streams included, wait for that verdict, since any of them may have
   * stalled it.) It fails a sweep period after a sweep first found it late,
   * with the ping still unanswered: after a stall of the main thread, timers
   * (the sweep's too, twice in a row) can run before an answer that already
   * waits in the port, and a period later that answer has been read.
   */
  #expireAlone(slot: Slot, now: number): void {
    const [task] = slot.tasks.values();
    if (task.settled || task.answered || !this.#overdue(task, now)) return;
    if (task.lateSince === 0) task.lateSince = now;
    else if (now - task.lateSince >= SWEEP_MS && slot.pingAt !== 0) this.#expire(slot, now);
  }

  #onStuck(slot: Slot): void {
    const tasks = takeAll(slot);
    this.#failAll(tasks, slot, "worker-exited", `worker ${slot.id} stopped responding`);
    this.#abandoned++;
    this.#replace(slot, "stopped responding");
    this.#pump();
  }

  #expireQueued(now: number): void {
    if (this.#queueTimeout === Infinity) return;
    for (let task = this.#queue.peek(); task; task = this.#queue.peek()) {
      if (now - task.queuedAt < this.#queueTimeout) break;
      this.#queue.shift();
      this.#settle(
        task,
        new WorkerPoolError(
          "queue-timeout",
          `Cannot run the job: it waited ${Math.round(now - task.queuedAt)} ms for a worker`,
        ),
        false,
      );
    }
  }

  #startSweeper(): void {
    if (this.#sweeper !== undefined) return;
    if (this.#timeout === Infinity && this.#queueTimeout === Infinity) return;
    this.#sweeper = setInterval(() => this.#sweep(), SWEEP_MS);
  }

  #stopSweeper(): void {
    if (this.#sweeper === undefined) return;
    clearInterval(this.#sweeper);
    this.#sweeper = undefined;
  }

  /** Terminates `slot`'s worker and starts a fresh one in its place. */
  #replace(slot: Slot, why: string): void {
    slot.worker.terminate();
    slot.channel.close();
    this.#idle.remove(slot);
    const index = this.#slots.indexOf(slot);
    if (this.#resolveClosed && this.#queue.length === 0) {
      // Closing and nothing left to run: no need for a successor.
      this.#slots.splice(index, 1);
      this.#logger.info(`Worker ${slot.id} ${why}; not replaced while shutting down`);
      this.#maybeShutDown();
      return;
    }
    const fresh = this.#spawn();
    this.#slots[index] = fresh;
    this.#idle.push(fresh);
    this.#replaced++;
    this.#logger.info(`Worker ${slot.id} ${why}; replaced by worker ${fresh.id}`);
    this.#pump();
  }

  /** Stops the pool for good; `reported` is an error its caller was already given. */
  #break(cause: unknown, reported?: WorkerPoolError): void {
    this.#broken = reported ?? new WorkerPoolError(
      "startup-failed",
      `Cannot run a job: ${this.#startupFailures} workers in a row died while starting; last error: ${
        describe(cause)
      }`,
      { cause },
    );
    if (reported === undefined) this.#logger.info(this.#broken.message);
    for (const task of this.#queue.drain()) this.#settle(task, this.#broken, false);
    for (const slot of this.#slots) {
      for (const task of takeAll(slot)) this.#settle(task, this.#broken, false);
      slot.worker.terminate();
      slot.channel.close();
    }
    this.#slots = [];
    this.#idle.drain();
    this.#maybeShutDown();
  }

  #maybeShutDown(): void {
    if (!this.#resolveClosed) return;
    if (
      this.#queue.length > 0 ||
      this.#slots.some((slot) => slot.tasks.size > 0 || slot.streams.size > 0)
    ) return;
    const resolve = this.#resolveClosed;
    this.#resolveClosed = undefined;
    this.#stopSweeper();
    for (const waiter of this.#readyWaiters.splice(0)) {
      waiter.reject(new WorkerPoolError("closed", "Cannot start: the pool was closed first"));
    }
    for (const slot of this.#slots) {
      this.#logger.info(`Shutting down worker ${slot.id}`);
      slot.worker.terminate();
      slot.channel.close();
    }
    this.#slots = [];
    this.#idle.drain();
    resolve();
  }
}

/** Empties `slot` of its jobs, streams included, and returns them. */
function takeAll(slot: Slot): Task[] {
  const tasks = [...slot.tasks.values(), ...slot.streams.values()];
  slot.tasks.clear();
  slot.streams.clear();
  return tasks;
}

function checkLimit(name: string, value: number | undefined, allowZero: boolean): number {
  if (value === undefined) return Infinity;
  if (Number.isNaN(value) || value < (allowZero ? 0 : 1)) {
    throw new RangeError(
      `Cannot create WorkerPool: ${name} must be ${
        allowZero ? "zero or more" : "one or more"
      }, received ${value}`,
    );
  }
  return value;
}

/** Bucket bounds for job times, in milliseconds. */
const HISTOGRAM_BOUNDS = [1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000];

/** A fixed-bucket histogram of milliseconds. */
class Histogram {
  #counts = new Array<number>(HISTOGRAM_BOUNDS.length + 1).fill(0);
  #sum = 0;

  add(ms: number): void {
    let i = 0;
    while (i < HISTOGRAM_BOUNDS.length && ms > HISTOGRAM_BOUNDS[i]) i++;
    this.#counts[i]++;
    this.#sum += ms;
  }

  snapshot(): HistogramSnapshot {
    let total = 0;
    const counts = this.#counts.map((count) => total += count);
    return { bounds: [...HISTOGRAM_BOUNDS], counts, sum: this.#sum };
  }
}

function describe(cause: unknown): string {
  return cause instanceof Error ? cause.message : String(cause);
}

function firstLine(text: string): string {
  const end = text.indexOf("\n");
  return end === -1 ? text : text.slice(0, end);
}

function percentiles(samples: number[]): Percentiles {
  if (samples.length === 0) return { p50: 0, p90: 0, p99: 0, max: 0 };
  const sorted = samples.toSorted((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
  return { p50: at(0.5), p90: at(0.9), p99: at(0.99), max: sorted[sorted.length - 1] };
}
