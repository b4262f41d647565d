/**
 * The channel protocol, defined once: every frame that crosses a worker's
 * `MessagePort`, in both directions, and the HTTP payloads they carry.
 *
 * The pool layer knows jobs, not HTTP. A job is a stream with its own id,
 * multiplexed with the worker's other jobs over one port:
 *
 * ```
 *  pool (main thread)                         worker
 *    run {job, data} ───────────────────────────►   handler starts
 *    message {job, data}  (request body) ────────►
 *    ◄──────────────────────── credit {job, bytes}  (body consumed)
 *    ◄─────────────────────── message {job, data}  (response head, body)
 *    credit {job, bytes}  (response written) ───►
 *    cancel {job}  (client left, deadline) ──────►   signal aborts
 *    ◄──────────────────────────── done {job, data}
 * ```
 *
 * A job may outlive its answer as a long-lived stream (a WebSocket): after
 * its first message it says `detach`, and from then on it holds no
 * concurrency slot and has no deadline; messages and credit go on flowing
 * both ways until `done`:
 *
 * ```
 *    ◄─── message {job, data}  (101 head) + detach {job}
 *    message {job, data}  (a client's message, close) ─►
 *    ◄───────────────────────── credit {job, bytes}  (message dispatched)
 *    ◄────────────── message {job, data}  (frames to send, close)
 *    credit {job, bytes}  (frames written) ──────────►
 *    ◄──────────────────────────── done {job, data}  (socket closed)
 * ```
 *
 * Frames of one event-loop turn travel together in one {@linkcode Envelope},
 * so the message count per request stays low under load.
 *
 * @module
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
  /**
   * One float the worker keeps set to the id of the job whose code is on
   * its stack (0 when none is): read by the pool when the worker is stuck or
   * dead, it names the culprit.
   */
  onStack: SharedArrayBuffer;
}

/** What one side posts on the port: the frames of one event-loop turn. */
export interface Envelope<Frame> {
  frames: Frame[];
  /** How many envelopes the sender has received so far (an acknowledgement). */
  seen: number;
}

/** Pool → worker frames. */
export type ToWorker =
  /** Start job `job` with `data`. */
  | { type: "run"; job: number; data: unknown }
  /** A message for a running job. */
  | { type: "message"; job: number; data: unknown }
  /**
   * The pool consumed `bytes` of the job's output: flow-control credit, with
   * the job's buffers that are free again, moved back for reuse.
   */
  | { type: "credit"; job: number; bytes: number; buffers?: ArrayBuffer[] }
  /** Stop job `job`: its signal aborts with `reason`. */
  | { type: "cancel"; job: number; reason: string }
  /** Are you alive? Any envelope back answers. */
  | { type: "ping" };

/** Worker → pool frames. */
export type FromWorker =
  /** Set-up finished; jobs may start. */
  | { type: "ready" }
  /** A message from a job; the first one ends the job's deadline. */
  | { type: "message"; job: number; data: unknown }
  /** The job consumed `bytes` of its input: flow-control credit. */
  | { type: "credit"; job: number; bytes: number }
  /** The job runs on as a long-lived stream: it frees its concurrency slot and has no deadline. */
  | { type: "detach"; job: number }
  /** The job finished with a result. */
  | { type: "done"; job: number; data: unknown }
  /** The job threw. */
  | { type: "error"; job: number; error: SerializedError }
  /** The thread is about to block for `ms` (a deliberate, synchronous wait). */
  | { type: "block"; ms: number }
  /** The block is over. */
  | { type: "unblock" }
  /** The worker is about to end itself (`self.close()` or `Deno.exit()`). */
  | { type: "exit"; reason: string };

// ---------------------------------------------------------------------------
// HTTP payloads, carried as `data` by the frames above.

/** Settings every server worker starts with. */
export interface WorkerConfig {
  /** Directory served by the static handler. */
  root: string;
  /** How long `GET /sleep` blocks its worker, in milliseconds. */
  sleepMs: number;
  /** Sent as `Cache-Control` with static file responses. */
  cacheControl?: string;
  /** `Access-Control-Allow-Origin: *` on static responses, and preflight answers. */
  cors: boolean;
  /** Missing extensionless paths serve the root's `index.html`. */
  spa: boolean;
  /** Directories without `index.html` get a listing. */
  dirListing: boolean;
  /** URL of a module whose default export has `fetch(request)`; replaces the static handler. */
  handler?: string;
  /** Bytes of response body the worker may send before the main thread credits them. */
  window: number;
  /** The listening address, for the handler module's `onListen` (called by worker 0 only). */
  listen: { hostname: string; port: number };
  /** Bytes a WebSocket's app may queue beyond what the client has taken, before it closes with 1008. */
  wsMaxBuffered: number;
}

/** Main → worker, the `run` data: a complete, validated request head. */
export interface RequestStart {
  method: string;
  /** Absolute URL, `http://host/path?query`. */
  url: string;
  /** Field names (lower case) and values, alternating. */
  fields: string[];
  /** Whether a body follows as `message` frames ending with `{ end: true }`. */
  body: boolean;
  /** 0 for HTTP/1.0, 1 for HTTP/1.1: decides close-delimited vs chunked bodies. */
  minor: number;
  /** The connection closes after this response. */
  close: boolean;
  /** The client's address, for the handler's `info.remoteAddr`. */
  remoteHost: string;
  remotePort: number;
  /** A valid WebSocket handshake: the handler may call `upgradeWebSocket`. */
  websocket: boolean;
}

/** Main → worker `message`: request body bytes, and its end. */
export interface RequestPart {
  bytes?: Uint8Array;
  end?: boolean;
}

/** A body the main thread streams from disk after the head. */
export interface FileSlice {
  path: string;
  offset: number;
  length: number;
}

/** Worker → main `message`: response bytes on the wire, head first. */
export type ResponsePart =
  | {
    type: "head";
    status: number;
    /** The head, and possibly the start of the body. */
    bytes: Uint8Array;
    /** Close the connection after this response. */
    close: boolean;
    /** A body for the main thread to stream from disk after `bytes`. */
    file?: FileSlice;
    /** A `101` that turns the connection into a WebSocket: the job goes on as its stream. */
    upgrade?: boolean;
    /** With `upgrade`, the socket's worker, for the access log (the job's end comes at its close). */
    workerId?: number;
  }
  | { type: "data"; bytes: Uint8Array }
  /** WebSocket only: the app closes the socket (after the frames sent before). */
  | { type: "close"; code: number; reason: string };

/**
 * Main → worker `message` on an upgraded job: a client's WebSocket message
 * (text already checked as UTF-8), or the socket's end. `clean` is false
 * when the connection failed (a protocol error, a lost peer): the app then
 * sees an `error` event before `close`.
 */
export type SocketPart =
  | { type: "text"; data: string; bytes: number }
  | { type: "binary"; data: Uint8Array<ArrayBuffer> }
  | { type: "close"; code: number; reason: string; clean: boolean };

/** Worker → main, the `done` data. */
export interface ResponseEnd {
  /** Body bytes sent (for the access log). */
  bodyBytes: number;
  /** The worker that answered (for the access log). */
  workerId: number;
  /**
   * The response's last part, when it travels with the end: a response that
   * fits one message is one frame, not two.
   */
  last?: ResponsePart;
}

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
