/**
 * The messages that cross between the pool (main thread) and its workers,
 * defined once. Every message after `init` travels over the worker's own
 * `MessagePort`; `init` is the only one posted to the `Worker` itself, and it
 * carries that port.
 */

/** An error flattened for `postMessage`, so its name and stack survive. */
export interface SerializedError {
  name: string;
  message: string;
  stack?: string;
}

/** Pool → worker, posted on the `Worker` itself: here is your port. */
export interface InitMessage {
  type: "init";
  workerId: number;
  port: MessagePort;
  workerData: unknown;
}

/** Pool → worker, over the port. */
export type ToWorker = { type: "run"; id: number; data: unknown };

/** Worker → pool, over the port. */
export type FromWorker =
  | { type: "ready" }
  | { type: "progress"; id: number; data: unknown }
  | { type: "done"; id: number; data: unknown }
  | { type: "error"; id: number; error: SerializedError }
  /** The worker is about to end itself (`self.close()` or `Deno.exit()`). */
  | { type: "exit"; reason: string };

/** Flattens any thrown value into a {@linkcode SerializedError}. */
export function serializeError(error: unknown): SerializedError {
  if (error instanceof Error) {
    return { name: error.name, message: error.message, stack: error.stack };
  }
  return { name: "Error", message: String(error) };
}

/** Rebuilds an `Error` whose name, message and stack are the worker's. */
export function deserializeError(error: SerializedError): Error {
  const result = new Error(error.message);
  result.name = error.name;
  if (error.stack !== undefined) result.stack = error.stack;
  return result;
}
