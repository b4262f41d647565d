/**
 * A fixed-size pool of module Web Workers, the Rust Book's `ThreadPool` for
 * Deno. It knows nothing of HTTP: a job is any structured-cloneable message,
 * and a worker module answers it through {@linkcode handleJobs}.
 *
 * Each worker talks to the pool over its own `MessageChannel`. Idle workers
 * wait in one FIFO queue; a job goes to the longest-idle worker, or waits in a
 * FIFO job queue until a worker finishes.
 *
 * @module
 */

import { Channel } from "./_channel.ts";
import { Queue } from "./_queue.ts";
import { deserializeError, type FromWorker, type InitMessage, type ToWorker } from "./_messages.ts";

export {
  handleJobs,
  type JobContext,
  type JobHandler,
  type Transfer,
  transfer,
} from "./_job_runner.ts";

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
 * import { WorkerPool, WorkerPoolError } from "./pool.ts";
 *
 * async function tryRun(pool: WorkerPool<string, string>) {
 *   try {
 *     return await pool.run("job");
 *   } catch (error) {
 *     if (error instanceof WorkerPoolError && error.code === "queue-full") return "busy";
 *     throw error;
 *   }
 * }
 * ```
 */
export class WorkerPoolError extends Error {
  /** What went wrong, for callers that branch on it. */
  readonly code: WorkerPoolErrorCode;

  /**
   * @param code What went wrong.
   * @param message A sentence for people.
   * @param options The underlying cause, if any.
   */
  constructor(code: WorkerPoolErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "WorkerPoolError";
    this.code = code;
  }
}

/** Where the pool writes its diagnostics. */
export interface PoolLogger {
  /** The book's "Worker N got a job; executing." lines. */
  debug(message: string): void;
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
   * Deadline in milliseconds for a job once a worker has started it. Past it
   * the job is rejected with code `"timeout"` and its worker is terminated
   * and replaced, since it may be stuck in a loop.
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

/** Options for one {@linkcode WorkerPool.run} call. */
export interface RunOptions<Progress> {
  /** Drops the job if queued; terminates and replaces its worker if running. */
  signal?: AbortSignal;
  /** Called with each value the worker sends through `context.progress()`. */
  onProgress?: (progress: Progress) => void;
}

/** A snapshot of the pool, from {@linkcode WorkerPool.stats}. */
export interface WorkerPoolStats {
  /** Workers in the pool, the fixed size. */
  workers: number;
  /** Workers waiting for a job. */
  idle: number;
  /** Workers running a job. */
  busy: number;
  /** Jobs waiting for a worker. */
  queued: number;
  /** Jobs a worker answered. */
  completed: number;
  /** Jobs that ended in an error of any kind. */
  failed: number;
  /** Workers terminated and started anew after a crash, deadline or abort. */
  replaced: number;
  /** Milliseconds jobs spent queued, over the most recent jobs. */
  waitTime: Percentiles;
  /** Milliseconds jobs spent running, over the most recent jobs. */
  runTime: Percentiles;
}

/** Percentiles of a recent sample, in milliseconds; 0 when empty. */
export interface Percentiles {
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

interface Job {
  id: number;
  data: unknown;
  transfer: Transferable[];
  resolve(value: unknown): void;
  reject(error: unknown): void;
  onProgress: ((progress: never) => void) | undefined;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
  queuedAt: number;
  startedAt: number;
  timer: ReturnType<typeof setTimeout> | undefined;
  slot: Slot | undefined;
}

interface Slot {
  id: number;
  worker: Worker;
  channel: Channel<ToWorker, FromWorker>;
  ready: boolean;
  job: Job | undefined;
}

const SAMPLE_SIZE = 1024;

/**
 * A fixed-size pool of module Web Workers that run jobs one at a time each.
 *
 * @typeParam Data What `run()` sends to a worker.
 * @typeParam Result What the worker's handler returns.
 * @typeParam Progress What the worker may send before its result.
 *
 * @example Squaring numbers on two workers
 * ```ts
 * import { WorkerPool } from "./pool.ts";
 *
 * const url = new URL("./tests/fixtures/echo_worker.ts", import.meta.url);
 * await using pool = new WorkerPool<number, number>(url, { size: 2 });
 * const squares = await Promise.all([1, 2, 3].map((n) => pool.run(n)));
 * ```
 */
export class WorkerPool<Data = unknown, Result = unknown, Progress = unknown> {
  #url: URL;
  #size: number;
  #workerData: unknown;
  #maxQueue: number;
  #queueTimeout: number;
  #timeout: number;
  #maxStartupFailures: number;
  #logger: PoolLogger;

  #slots: Slot[] = [];
  #idle = new Queue<Slot>();
  #queue = new Queue<Job>();
  #nextJobId = 1;
  #nextWorkerId = 0;
  #startupFailures = 0;
  #broken: WorkerPoolError | undefined;
  #queueTimer: ReturnType<typeof setTimeout> | undefined;

  #closing = false;
  #closed: Promise<void> | undefined;
  #resolveClosed: (() => void) | undefined;

  #completed = 0;
  #failed = 0;
  #replaced = 0;
  #waitTimes: number[] = [];
  #runTimes: number[] = [];
  #sampleIndex = 0;

  /**
   * Starts `size` module workers from `url` at once.
   *
   * @param url Absolute URL of a worker module that calls {@linkcode handleJobs}.
   * @param options Size, limits and logging.
   * @throws {RangeError} If `size`, `maxQueue`, `timeout`, `queueTimeout` or
   * `maxStartupFailures` is out of range.
   * @throws {TypeError} If `url` is not an absolute URL.
   */
  constructor(url: string | URL, options: WorkerPoolOptions = {}) {
    const size = options.size ?? navigator.hardwareConcurrency;
    if (!Number.isInteger(size) || size < 1) {
      throw new RangeError(
        `Cannot create WorkerPool: size must be a positive integer, received ${String(size)}`,
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
    this.#workerData = options.workerData;
    this.#logger = options.logger ?? { debug() {}, info() {} };
    for (let i = 0; i < size; i++) {
      const slot = this.#spawn();
      this.#slots.push(slot);
      this.#idle.push(slot);
    }
  }

  /** The number of workers, fixed at construction. */
  get size(): number {
    return this.#size;
  }

  /** The number of workers waiting for a job right now. */
  get idle(): number {
    return this.#idle.length;
  }

  /**
   * Runs `data` on the longest-idle worker, or queues it until one is free.
   *
   * @param data The job, structured-cloned to the worker.
   * @param transfer Objects to move to the worker instead of copying.
   * @param options An abort signal and a progress callback.
   * @returns The worker handler's result.
   * @throws {WorkerPoolError} If the pool is closed, the queue is full, or the
   * job's worker died or overran its deadline.
   * @throws {Error} The worker's own error, with its message and stack, if
   * the handler threw.
   *
   * @example
   * ```ts
   * import { WorkerPool } from "./pool.ts";
   *
   * const url = new URL("./tests/fixtures/echo_worker.ts", import.meta.url);
   * await using pool = new WorkerPool<number, number>(url, { size: 1 });
   * const four = await pool.run(2);
   * ```
   */
  run(
    data: Data,
    transfer: Transferable[] = [],
    options: RunOptions<Progress> = {},
  ): Promise<Result> {
    if (this.#closing) {
      this.#failed++;
      return Promise.reject(
        new WorkerPoolError("closed", "Cannot run a job: the pool is closed"),
      );
    }
    if (this.#broken) {
      this.#failed++;
      return Promise.reject(this.#broken);
    }
    const { signal, onProgress } = options;
    if (signal?.aborted) {
      this.#failed++;
      return Promise.reject(signal.reason);
    }
    const slot = this.#idle.shift();
    if (slot === undefined && this.#queue.length >= this.#maxQueue) {
      this.#failed++;
      return Promise.reject(
        new WorkerPoolError(
          "queue-full",
          `Cannot run a job: the queue is full, received job ${
            this.#queue.length + 1
          } of ${this.#maxQueue}`,
        ),
      );
    }
    const { promise, resolve, reject } = Promise.withResolvers<Result>();
    const job: Job = {
      id: this.#nextJobId++,
      data,
      transfer,
      resolve: resolve as (value: unknown) => void,
      reject,
      onProgress: onProgress as ((progress: never) => void) | undefined,
      signal,
      onAbort: undefined,
      queuedAt: performance.now(),
      startedAt: 0,
      timer: undefined,
      slot: undefined,
    };
    if (signal) {
      job.onAbort = () => this.#abort(job);
      signal.addEventListener("abort", job.onAbort, { once: true });
    }
    if (slot) {
      this.#dispatch(slot, job);
    } else {
      this.#queue.push(job);
      this.#armQueueTimer();
    }
    return promise;
  }

  /**
   * A snapshot of the workers, the queue and recent timings.
   *
   * @returns Counts since the pool started, and percentiles over recent jobs.
   *
   * @example
   * ```ts
   * import { WorkerPool } from "./pool.ts";
   *
   * const url = new URL("./tests/fixtures/echo_worker.ts", import.meta.url);
   * await using pool = new WorkerPool(url, { size: 2 });
   * const { idle, busy, queued } = pool.stats();
   * ```
   */
  stats(): WorkerPoolStats {
    const idle = this.#idle.length;
    const busy = this.#slots.filter((slot) => slot.job !== undefined).length;
    return {
      workers: this.#size,
      idle,
      busy,
      queued: this.#queue.length,
      completed: this.#completed,
      failed: this.#failed,
      replaced: this.#replaced,
      waitTime: percentiles(this.#waitTimes),
      runTime: percentiles(this.#runTimes),
    };
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
   * import { WorkerPool } from "./pool.ts";
   *
   * const url = new URL("./tests/fixtures/echo_worker.ts", import.meta.url);
   * const pool = new WorkerPool(url, { size: 2 });
   * await pool.close();
   * await pool.close(); // already closed: resolves at once
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
   * import { WorkerPool } from "./pool.ts";
   *
   * const url = new URL("./tests/fixtures/echo_worker.ts", import.meta.url);
   * const pool = new WorkerPool(url, { size: 1 });
   * const cut = pool.terminate(); // 0: nothing was running
   * ```
   */
  terminate(): number {
    void this.close();
    const error = new WorkerPoolError("closed", "Cannot finish the job: the pool was terminated");
    let cut = 0;
    for (const job of this.#queue.drain()) {
      this.#settle(job, error, false);
      cut++;
    }
    for (const slot of this.#slots) {
      if (slot.job) {
        this.#settle(slot.job, error, false);
        slot.job = undefined;
        cut++;
      }
    }
    this.#maybeShutDown();
    return cut;
  }

  /** Same as {@linkcode close}, for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  #spawn(): Slot {
    const id = this.#nextWorkerId++;
    const worker = new Worker(this.#url, { type: "module", name: `worker-${id}` });
    const { port1, port2 } = new MessageChannel();
    const slot: Slot = {
      id,
      worker,
      // Assigned right below; the handler needs the slot itself.
      channel: undefined as unknown as Channel<ToWorker, FromWorker>,
      ready: false,
      job: undefined,
    };
    slot.channel = new Channel<ToWorker, FromWorker>(port1, (message) => {
      this.#onMessage(slot, message);
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
    };
    worker.postMessage(init, [port2]);
    return slot;
  }

  /** Assigns `job` to `slot`; it is posted once the worker is ready. */
  #dispatch(slot: Slot, job: Job): void {
    job.slot = slot;
    slot.job = job;
    if (slot.ready) this.#start(slot, job);
  }

  #start(slot: Slot, job: Job): void {
    job.startedAt = performance.now();
    this.#logger.debug(`Worker ${slot.id} got a job; executing.`);
    if (this.#timeout !== Infinity) {
      job.timer = setTimeout(() => this.#onTimeout(job), this.#timeout);
    }
    const transfer = job.transfer;
    job.transfer = [];
    slot.channel.send({ type: "run", id: job.id, data: job.data }, transfer);
    job.data = undefined;
  }

  #onMessage(slot: Slot, message: FromWorker): void {
    if (message.type === "ready") {
      slot.ready = true;
      this.#startupFailures = 0;
      if (slot.job) this.#start(slot, slot.job);
      return;
    }
    if (message.type === "exit") {
      this.#onCrash(slot, new Error(message.reason));
      return;
    }
    const job = slot.job;
    if (job === undefined || job.id !== message.id) return;
    switch (message.type) {
      case "progress":
        job.onProgress?.(message.data as never);
        return;
      case "done":
        this.#release(slot);
        this.#settle(job, undefined, true, message.data);
        return;
      case "error":
        this.#release(slot);
        this.#settle(job, deserializeError(message.error), false);
        return;
    }
  }

  /** Resolves or rejects `job` once, and records its timings. */
  #settle(job: Job, error: unknown, ok: boolean, value?: unknown): void {
    if (job.timer !== undefined) clearTimeout(job.timer);
    if (job.onAbort) job.signal!.removeEventListener("abort", job.onAbort);
    job.slot = undefined;
    if (job.startedAt !== 0) {
      const now = performance.now();
      this.#waitTimes[this.#sampleIndex] = job.startedAt - job.queuedAt;
      this.#runTimes[this.#sampleIndex] = now - job.startedAt;
      this.#sampleIndex = (this.#sampleIndex + 1) % SAMPLE_SIZE;
    }
    if (ok) {
      this.#completed++;
      job.resolve(value);
    } else {
      this.#failed++;
      job.reject(error);
    }
  }

  /** The slot's job is over: give the worker the next job or make it idle. */
  #release(slot: Slot): void {
    slot.job = undefined;
    const next = this.#queue.shift();
    if (next) {
      this.#dispatch(slot, next);
    } else {
      this.#idle.push(slot);
      this.#maybeShutDown();
    }
  }

  #onCrash(slot: Slot, cause: unknown): void {
    if (!this.#slots.includes(slot)) return;
    const job = slot.job;
    slot.job = undefined;
    if (!slot.ready) {
      // Died while starting. A job assigned to it was held back until
      // "ready", so it certainly never ran: it goes back to the front.
      if (job) {
        job.slot = undefined;
        this.#queue.unshift(job);
      }
      if (++this.#startupFailures >= this.#maxStartupFailures) {
        this.#break(cause);
        return;
      }
    } else if (job) {
      this.#settle(
        job,
        new WorkerPoolError("worker-exited", `Cannot finish the job: worker ${slot.id} died`, {
          cause,
        }),
        false,
      );
    }
    this.#replace(slot, `crashed: ${describe(cause)}`);
  }

  #onTimeout(job: Job): void {
    const slot = job.slot;
    if (!slot) return;
    slot.job = undefined;
    job.timer = undefined;
    this.#settle(
      job,
      new WorkerPoolError(
        "timeout",
        `Cannot finish the job: it ran past its ${this.#timeout} ms deadline`,
      ),
      false,
    );
    this.#replace(slot, "overran its deadline");
  }

  #abort(job: Job): void {
    const reason = job.signal!.reason;
    const slot = job.slot;
    if (slot && !slot.ready) {
      // Assigned but not yet posted: the worker never saw it.
      slot.job = undefined;
      this.#settle(job, reason, false);
      this.#release(slot);
    } else if (slot) {
      slot.job = undefined;
      this.#settle(job, reason, false);
      this.#replace(slot, "its job was aborted");
    } else if (this.#queue.remove(job)) {
      this.#settle(job, reason, false);
      this.#maybeShutDown();
    }
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
    this.#replaced++;
    this.#logger.info(`Worker ${slot.id} ${why}; replaced by worker ${fresh.id}`);
    this.#release(fresh);
  }

  #break(cause: unknown): void {
    this.#broken = new WorkerPoolError(
      "startup-failed",
      `Cannot run a job: ${this.#startupFailures} workers in a row died while starting; last error: ${
        describe(cause)
      }`,
      { cause },
    );
    this.#logger.info(this.#broken.message);
    for (const job of this.#queue.drain()) this.#settle(job, this.#broken, false);
    for (const slot of this.#slots) {
      if (slot.job) this.#settle(slot.job, this.#broken, false);
      slot.job = undefined;
      slot.worker.terminate();
      slot.channel.close();
    }
    this.#slots = [];
    this.#idle.drain();
    this.#maybeShutDown();
  }

  /** Rejects queued jobs that have waited longer than `queueTimeout`. */
  #armQueueTimer(): void {
    if (this.#queueTimeout === Infinity || this.#queueTimer !== undefined) return;
    const oldest = this.#queue.peek();
    if (!oldest) return;
    const due = oldest.queuedAt + this.#queueTimeout - performance.now();
    this.#queueTimer = setTimeout(() => {
      this.#queueTimer = undefined;
      const now = performance.now();
      for (let job = this.#queue.peek(); job; job = this.#queue.peek()) {
        if (now - job.queuedAt < this.#queueTimeout) break;
        this.#queue.shift();
        this.#settle(
          job,
          new WorkerPoolError(
            "queue-timeout",
            `Cannot run the job: it waited ${Math.round(now - job.queuedAt)} ms for a worker`,
          ),
          false,
        );
      }
      this.#armQueueTimer();
      this.#maybeShutDown();
    }, Math.max(0, due));
  }

  #maybeShutDown(): void {
    if (!this.#resolveClosed) return;
    if (this.#queue.length > 0 || this.#slots.some((slot) => slot.job)) return;
    const resolve = this.#resolveClosed;
    this.#resolveClosed = undefined;
    if (this.#queueTimer !== undefined) clearTimeout(this.#queueTimer);
    this.#queueTimer = undefined;
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

function describe(cause: unknown): string {
  return cause instanceof Error ? cause.message : String(cause);
}

function percentiles(samples: number[]): Percentiles {
  if (samples.length === 0) return { p50: 0, p90: 0, p99: 0, max: 0 };
  const sorted = samples.toSorted((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
  return { p50: at(0.5), p90: at(0.9), p99: at(0.99), max: sorted[sorted.length - 1] };
}
