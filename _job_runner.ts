/**
 * The worker's side of the pool: receives the `init` message with its
 * `MessagePort`, builds the handler, then answers `run` messages one job at a
 * time as the pool sends them.
 */

import { Channel } from "./_channel.ts";
import { type FromWorker, type InitMessage, serializeError, type ToWorker } from "./_messages.ts";

/** What a job handler can use besides its data. */
export interface JobContext<Progress> {
  /** The pool's number for this worker, as in "Worker 3 got a job". */
  readonly workerId: number;
  /**
   * Sends a value to the job's `onProgress` callback before the result.
   * @param value Structured-cloneable progress.
   * @param transfer Objects to move rather than copy.
   */
  progress(value: Progress, transfer?: Transferable[]): void;
}

/** Answers one job; may return a {@linkcode transfer} wrapper to move buffers. */
export type JobHandler<Data, Result, Progress> = (
  data: Data,
  context: JobContext<Progress>,
) => Result | Transfer<Result> | Promise<Result | Transfer<Result>>;

/** A result to post with a transfer list; made by {@linkcode transfer}. */
export class Transfer<T> {
  /**
   * @param value The result.
   * @param list Objects inside `value` to move rather than copy.
   */
  constructor(readonly value: T, readonly list: Transferable[]) {}
}

/**
 * Marks a job's result to be moved, not copied, back to the pool.
 *
 * @param value The result.
 * @param list Objects inside `value` to move, usually `ArrayBuffer`s.
 * @returns A wrapper for the handler to return.
 *
 * @example
 * ```ts
 * import { transfer } from "./pool.ts";
 *
 * const bytes = new Uint8Array(1024);
 * const result = transfer(bytes, [bytes.buffer]);
 * ```
 */
export function transfer<T>(value: T, list: Transferable[]): Transfer<T> {
  return new Transfer(value, list);
}

interface WorkerScope {
  onmessage: ((event: MessageEvent) => void) | null;
  close(): void;
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
export function handleJobs<Data, Result, Progress = never, WorkerData = unknown>(
  setup: (
    workerData: WorkerData,
    workerId: number,
  ) => JobHandler<Data, Result, Progress> | Promise<JobHandler<Data, Result, Progress>>,
): void {
  const scope = globalThis as unknown as WorkerScope;
  scope.onmessage = async (event: MessageEvent<InitMessage>) => {
    const init = event.data;
    if (init?.type !== "init") return;
    scope.onmessage = null;
    // Jobs that arrive while setup() is still running wait here.
    const waiting: ToWorker[] = [];
    const state: { handler?: JobHandler<Data, Result, Progress> } = {};
    const channel = new Channel<FromWorker, ToWorker>(init.port, (message) => {
      if (state.handler) run(state.handler, message);
      else waiting.push(message);
    });
    // A worker that ends itself raises no event in the parent: say so first,
    // so the pool fails the running job at once instead of waiting forever.
    const close = scope.close.bind(scope);
    scope.close = () => {
      channel.send({ type: "exit", reason: "the worker called self.close()" });
      close();
    };
    const exit = Deno.exit;
    Deno.exit = (code?: number): never => {
      channel.send({ type: "exit", reason: `the worker called Deno.exit(${code ?? ""})` });
      return exit(code);
    };

    const run = (fn: JobHandler<Data, Result, Progress>, message: ToWorker) => {
      const { id } = message;
      const context: JobContext<Progress> = {
        workerId: init.workerId,
        progress(value, transfer = []) {
          channel.send({ type: "progress", id, data: value }, transfer);
        },
      };
      const done = (result: Result | Transfer<Result>) => {
        if (result instanceof Transfer) {
          channel.send({ type: "done", id, data: result.value }, result.list);
        } else {
          channel.send({ type: "done", id, data: result });
        }
      };
      const fail = (error: unknown) => {
        channel.send({ type: "error", id, error: serializeError(error) });
      };
      try {
        const result = fn(message.data as Data, context);
        if (result instanceof Promise) result.then(done, fail);
        else done(result);
      } catch (error) {
        fail(error);
      }
    };

    const handler = await setup(init.workerData as WorkerData, init.workerId);
    state.handler = handler;
    channel.send({ type: "ready" });
    for (const message of waiting) run(handler, message);
  };
}
