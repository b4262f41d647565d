/**
 * What the server's accept loop and its workers send each other, defined
 * once. One pool job carries a batch of framed requests; the worker answers
 * with batches of responses, as progress for the ones ready early (so a
 * /sleep in the batch never holds back its neighbours) and as the result for
 * the rest. Bytes travel in one `ArrayBuffer` per message with a `Uint32Array`
 * index into it: responses are transferred; requests are copied, so that the
 * main thread still has them if the worker dies.
 */

/** Settings every server worker starts with. */
export interface WorkerConfig {
  /** Directory served by the static handler. */
  root: string;
  /** How long `GET /sleep` takes, in milliseconds. */
  sleepMs: number;
  /** URL of a module whose default export has `fetch(request)`; replaces the static handler. */
  handler?: string;
  /** Largest buffered response body from a handler, in bytes. */
  maxResponseBody: number;
}

/** Main → worker: framed requests. */
export interface RequestBatch {
  /** Each request's head (no final empty line) then its decoded body. */
  bytes: Uint8Array<ArrayBuffer>;
  /** Per request, {@linkcode REQUEST_FIELDS} numbers: offset, head length, body length, flags. */
  index: Uint32Array<ArrayBuffer>;
}

/** Numbers per request in {@linkcode RequestBatch.index}. */
export const REQUEST_FIELDS = 4;
/** Request flag: the connection's last allowed request; answer with `connection: close`. */
export const REQUEST_LAST = 1;

/** Worker → main: serialized responses. */
export interface ResponseBatch {
  /** Response bytes, head and (unless streamed from a file) body. */
  bytes: Uint8Array<ArrayBuffer>;
  /** Per response, {@linkcode RESPONSE_FIELDS} numbers: request number, offset, length, status, flags, body bytes. */
  index: Uint32Array<ArrayBuffer>;
  /** Bodies the main thread streams from disk after the head, by request number. */
  files: FileBody[];
  /** Which worker answered, for the access log. */
  workerId: number;
}

/** Numbers per response in {@linkcode ResponseBatch.index}. */
export const RESPONSE_FIELDS = 6;
/** Response flag: close the connection after this response. */
export const RESPONSE_CLOSE = 1;
/** Response flag: the body follows from a file; see {@linkcode ResponseBatch.files}. */
export const RESPONSE_FILE = 2;

/** A body too large to pass through memory: the main thread streams it. */
export interface FileBody {
  request: number;
  path: string;
  offset: number;
  length: number;
}
