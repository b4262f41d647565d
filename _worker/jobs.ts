/**
 * The worker's side of the pool: receives the `init` message with its
 * `MessagePort`, builds the job handler, then runs every job the pool sends,
 * many at once, each with its own context: a signal, messages and credit in
 * both directions.
 */

import { Channel } from "../_shared/channel.ts";
import {
  type Envelope,
  type FromWorker,
  type InitMessage,
  serializeError,
  type ToWorker,
} from "../_shared/protocol.ts";

/** What a job handler can use besides its data. */
export interface JobContext<Message = unknown> {
  /** The pool's number for this worker, as in "Worker 3 got a job". */
  readonly workerId: number;
  /** Aborts when the pool cancels the job (its caller gave up, or its deadline passed). */
  readonly signal: AbortSignal;
  /**
   * Sends a message to the job's caller. The first one ends the job's
   * deadline: it says the job has answered.
   */
  send(message: Message, transfer?: Transferable[]): void;
  /** Tells the caller that `bytes` of its messages were consumed (flow control). */
  credit(bytes: number): void;
  /** Moves `list` (objects inside the job's result) rather than copying them. */
  transfer(list: Transferable[]): void;
  /**
   * Makes the job a long-lived stream, after its first message: it frees its
   * concurrency slot and has no deadline, while messages and credit go on
   * flowing until it ends. For work that lives on without using the worker
   * much, such as a WebSocket.
   */
  detach(): void;
  /** Receives the caller's messages for this job. */
  onMessage: ((message: unknown) => void) | undefined;
  /** Receives the caller's credit for this job's messages, with buffers moved back for reuse. */
  onCredit: ((bytes: number, buffers: ArrayBuffer[]) => void) | undefined;
}

/** Answers one job; the result goes back to the caller of `run()`. */
export type JobHandler<Data, Result, Message = unknown> = (
  data: Data,
  context: JobContext<Message>,
) => Result | Promise<Result>;

interface WorkerScope {
  onmessage: ((event: MessageEvent) => void) | null;
  close(): void;
}

let blockChannel: Channel<FromWorker, ToWorker> | undefined;

/**
 * Blocks this worker's thread for `ms`, as the Rust Book's `thread::sleep`
 * does, after telling the pool, which then sends it nothing new until the
 * block is over. The block starts on the next task, so the jobs that arrived
 * with the caller start first.
 *
 * @param ms How long to block, in milliseconds.
 */
export async function blockThread(ms: number): Promise<void> {
  const channel = blockChannel;
  channel?.send({ type: "block", ms });
  channel?.flush();
  await new Promise((resolve) => setTimeout(resolve, 0));
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
  channel?.send({ type: "unblock" });
}

/**
 * Makes the current module a pool worker. Call it once, at the top level of
 * the module you give to `new WorkerPool(url)`.
 *
 * @param setup Called once with the pool's `workerData` and this worker's id;
 * returns the job handler. If it throws, the worker counts as failed to start.
 *
 * @example A worker that doubles numbers
 * ```ts ignore
 * import { handleJobs } from "./pool.ts";
 *
 * handleJobs(() => (n: number) => n * 2);
 * ```
 */
export function handleJobs<Data, Result, Message = unknown, WorkerData = unknown>(
  setup: (
    workerData: WorkerData,
    workerId: number,
  ) => JobHandler<Data, Result, Message> | Promise<JobHandler<Data, Result, Message>>,
): void {
  const scope = globalThis as unknown as WorkerScope;
  scope.onmessage = async (event: MessageEvent<InitMessage>) => {
    const init = event.data;
    if (init?.type !== "init") return;
    scope.onmessage = null;
    const jobs = new Map<number, JobRun<Message>>();
    const onStack = new Float64Array(init.onStack);
    /** Runs `fn` with job `job` named on the stack, for the pool to find if it never returns. */
    const as = (job: number, fn: () => void): void => {
      const outer = onStack[0];
      onStack[0] = job;
      try {
        fn();
      } finally {
        onStack[0] = outer;
      }
    };
    const app: { handler?: JobHandler<Data, Result, Message> } = {};
    // Envelopes that arrive while setup() is still running wait here.
    const waiting: Envelope<ToWorker>[] = [];

    const channel = new Channel<FromWorker, ToWorker>(init.port, (envelope) => {
      if (app.handler) receive(envelope);
      else waiting.push(envelope);
    });
    blockChannel = channel;

    // A worker that ends itself raises no event in the parent: say so first,
    // so the pool fails its jobs at once instead of waiting forever.
    const close = scope.close.bind(scope);
    scope.close = () => {
      channel.send({ type: "exit", reason: "the worker called self.close()" });
      channel.flush();
      close();
    };
    const exit = Deno.exit;
    Deno.exit = (code?: number): never => {
      channel.send({ type: "exit", reason: `the worker called Deno.exit(${code ?? ""})` });
      channel.flush();
      return exit(code);
    };

    const start = (fn: JobHandler<Data, Result, Message>, job: number, data: unknown) => {
      const run = new JobRun<Message>(job, init.workerId, channel, jobs);
      jobs.set(job, run);
      as(job, () => {
        try {
          const result = fn(data as Data, run);
          if (result instanceof Promise) {
            result.then((value) => run.done(value), (e) => run.fail(e));
          } else run.done(result);
        } catch (error) {
          run.fail(error);
        }
      });
    };

    const receive = (envelope: Envelope<ToWorker>) => {
      let started = false;
      for (const frame of envelope.frames) {
        switch (frame.type) {
          case "run":
            started = true;
            start(app.handler!, frame.job, frame.data);
            break;
          case "message": {
            const run = jobs.get(frame.job);
            if (run?.onMessage) as(frame.job, () => run.onMessage!(frame.data));
            break;
          }
          case "credit": {
            const run = jobs.get(frame.job);
            if (run?.onCredit) as(frame.job, () => run.onCredit!(frame.bytes, frame.buffers ?? []));
            break;
          }
          case "cancel": {
            // The job stays until it ends, so the pool learns when its slot is free.
            const run = jobs.get(frame.job);
            if (run) as(frame.job, () => run.abort(new DOMException(frame.reason, "AbortError")));
            break;
          }
          case "ping":
            channel.acknowledge();
            break;
        }
      }
      // Having started jobs, say so: the pool sends more only to workers
      // whose event loop got through everything it was given.
      if (started) channel.acknowledge();
    };

    try {
      app.handler = await setup(init.workerData as WorkerData, init.workerId);
    } catch (error) {
      // Told to the pool as this worker's end, rather than thrown: the pool
      // reports it once, and the runtime prints no uncaught error with it.
      const { name, message } = serializeError(error);
      channel.send({ type: "exit", reason: `${name}: ${message}` });
      channel.flush();
      close();
      return;
    }
    channel.send({ type: "ready" });
    for (const envelope of waiting) receive(envelope);
  };
}

/**
 * One running job: its context for the handler, and its end. One object per
 * job (methods on the prototype, no closures), since a worker runs many.
 */
class JobRun<Message> implements JobContext<Message> {
  readonly workerId: number;
  onMessage: ((message: unknown) => void) | undefined = undefined;
  onCredit: ((bytes: number, buffers: ArrayBuffer[]) => void) | undefined = undefined;
  #job: number;
  #channel: Channel<FromWorker, ToWorker>;
  #jobs: Map<number, JobRun<Message>>;
  // Most jobs never look at their signal: it is made only when asked for.
  #abort: AbortController | undefined;
  #resultTransfer: Transferable[] | undefined;

  constructor(
    job: number,
    workerId: number,
    channel: Channel<FromWorker, ToWorker>,
    jobs: Map<number, JobRun<Message>>,
  ) {
    this.#job = job;
    this.workerId = workerId;
    this.#channel = channel;
    this.#jobs = jobs;
  }

  get signal(): AbortSignal {
    this.#abort ??= new AbortController();
    return this.#abort.signal;
  }

  send(message: Message, transfer?: Transferable[]): void {
    if (this.#jobs.has(this.#job)) {
      this.#channel.send({ type: "message", job: this.#job, data: message }, transfer);
    }
  }

  credit(bytes: number): void {
    if (this.#jobs.has(this.#job)) this.#channel.send({ type: "credit", job: this.#job, bytes });
  }

  transfer(list: Transferable[]): void {
    this.#resultTransfer = list;
  }

  detach(): void {
    if (this.#jobs.has(this.#job)) this.#channel.send({ type: "detach", job: this.#job });
  }

  abort(reason: unknown): void {
    this.#abort ??= new AbortController();
    this.#abort.abort(reason);
  }

  done(result: unknown): void {
    if (this.#jobs.delete(this.#job)) {
      this.#channel.send({ type: "done", job: this.#job, data: result }, this.#resultTransfer);
    }
  }

  fail(error: unknown): void {
    if (this.#jobs.delete(this.#job)) {
      this.#channel.send({ type: "error", job: this.#job, error: serializeError(error) });
    }
  }
}
