/**
 * Batches framed requests into pool jobs. Requests framed during one turn of
 * the event loop travel together, in one buffer, to the
 * longest-idle worker. While every worker is busy they gather in one pending
 * batch (bounded by `maxQueue`), which the next worker to finish takes whole:
 * under load, batches grow and messages per request fall.
 */

import { ByteWriter } from "./_bytes.ts";
import { plainResponse } from "./_http.ts";
import {
  type FileBody,
  REQUEST_FIELDS,
  type RequestBatch,
  RESPONSE_CLOSE,
  RESPONSE_FIELDS,
  RESPONSE_FILE,
  type ResponseBatch,
} from "./_wire.ts";
import { type WorkerPool, WorkerPoolError } from "./pool.ts";

/** One request's place in its connection's response order. */
export class Pending {
  /** Response bytes once known: the head, and the body unless `file` is set. */
  bytes: Uint8Array | null = null;
  /** A body to stream from disk after `bytes`. */
  file: FileBody | undefined = undefined;
  /** Close the connection after writing this response. */
  close = false;
  status = 0;
  bodyBytes = 0;
  workerId = -1;
  /** The request line, kept only when access logging is on. */
  requestLine = "";
  /** Set when the client went away: nobody will write the response. */
  cancelled = false;
  /** When the request was framed, in `performance.now()` time; set only for the access log. */
  startedAt = 0;
  /** When the request joined the queue, by the server's coarse clock. */
  queuedAt = 0;

  /**
   * @param onReady Called once the response bytes are set.
   * @param interim A 1xx response that does not end the exchange.
   */
  constructor(readonly onReady: (pending: Pending) => void, readonly interim = false) {}

  /** Sets the response and tells the connection. */
  answer(bytes: Uint8Array, status: number, close: boolean, bodyBytes = 0): void {
    this.bytes = bytes;
    this.status = status;
    this.close = close;
    this.bodyBytes = bodyBytes;
    this.onReady(this);
  }
}

/** Options for {@linkcode Dispatcher}. */
export interface DispatcherOptions {
  /** Most requests waiting for a worker; beyond it requests get 503. */
  maxQueue: number;
  /** Milliseconds a request may wait for a worker before it gets 503. */
  queueTimeout: number;
  /** The server's coarse clock. */
  clock: { now: number };
}

const OVERLOADED = "The server is overloaded; try again shortly";

/** Answers `pending` with the 503 for a full queue or a wait that ran too long. */
export function answerOverloaded(pending: Pending, close: boolean): void {
  pending.answer(
    plainResponse(503, OVERLOADED, { close, headers: ["retry-after: 1"] }),
    503,
    close,
    OVERLOADED.length + 1,
  );
}

/** Collects requests into batches and runs them on the pool. */
export class Dispatcher {
  #pool: WorkerPool<RequestBatch, ResponseBatch, ResponseBatch>;
  #maxQueue: number;
  #queueTimeout: number;
  #clock: { now: number };
  /** How many of `#waiting`, from the front, already got a 503 for waiting too long. */
  #expired = 0;
  #writer = new ByteWriter(8192);
  #index: number[] = [];
  #waiting: Pending[] = [];
  #scheduled = false;
  #inFlight = 0;
  #outstanding = 0;

  constructor(
    pool: WorkerPool<RequestBatch, ResponseBatch, ResponseBatch>,
    options: DispatcherOptions,
  ) {
    this.#pool = pool;
    this.#maxQueue = options.maxQueue;
    this.#queueTimeout = options.queueTimeout;
    this.#clock = options.clock;
  }

  /** Requests waiting for a worker. */
  get queued(): number {
    return this.#waiting.length - this.#expired;
  }

  /** Batches running on workers. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** Requests accepted and not yet answered, queued or running. */
  get outstanding(): number {
    return this.#outstanding;
  }

  /**
   * Queues one framed request; copies its bytes, so the caller may reuse its buffer.
   * @returns `false` when the queue is full; the caller answers 503.
   */
  submit(pending: Pending, head: Uint8Array, body: Uint8Array, flags: number): boolean {
    if (this.#waiting.length - this.#expired >= this.#maxQueue) return false;
    pending.queuedAt = this.#clock.now;
    const offset = this.#writer.length;
    this.#writer.write(head);
    this.#writer.write(body);
    this.#index.push(offset, head.length, body.length, flags);
    this.#waiting.push(pending);
    this.#outstanding++;
    if (!this.#scheduled) {
      this.#scheduled = true;
      // After every read that completed in this turn has been framed.
      queueMicrotask(this.#flush);
    }
    return true;
  }

  /**
   * Answers 503 to requests that have waited longer than `queueTimeout`.
   * Called by the server a few times a second.
   */
  sweep(now: number): void {
    const waiting = this.#waiting;
    let i = this.#expired;
    for (; i < waiting.length && now - waiting[i].queuedAt > this.#queueTimeout; i++) {
      answerOverloaded(waiting[i], false);
      this.#outstanding--;
    }
    this.#expired = i;
  }

  #flush = (): void => {
    this.#scheduled = false;
    // With nothing in flight, let the pool decide even with no idle worker:
    // it queues, or rejects at once when it is closed or broken.
    if (this.#waiting.length > 0 && (this.#pool.idle > 0 || this.#inFlight === 0)) this.#send();
  };

  #send(): void {
    const pendings = this.#waiting;
    const index = this.#index;
    this.#waiting = [];
    this.#index = [];
    this.#expired = 0;
    // Requests answered while queued (503 for waiting too long) or whose
    // clients left are skipped: the worker ignores an entry with an empty head.
    let live = 0;
    for (let i = 0; i < pendings.length; i++) {
      const pending = pendings[i];
      if (pending.bytes === null && !pending.cancelled) {
        live++;
        continue;
      }
      index[i * REQUEST_FIELDS + 1] = 0;
      if (pending.bytes === null) this.#outstanding--; // nobody is waiting for it
    }
    const bytes = this.#writer.take();
    if (live === 0) return;
    this.#run({ bytes, index: new Uint32Array(index) }, pendings, false);
  }

  /**
   * Runs one batch. It is copied into the message rather than transferred:
   * the main thread keeps the bytes so that, if the worker dies, it can run
   * the innocent neighbours of whichever request killed it again.
   */
  #run(batch: RequestBatch, pendings: Pending[], alone: boolean): void {
    this.#inFlight++;
    this.#pool.run(batch, [], {
      onProgress: (reply) => this.#outstanding -= deliver(pendings, reply),
    }).then(
      (reply) => this.#outstanding -= deliver(pendings, reply),
      (error) => this.#failed(batch, pendings, error, alone),
    ).finally(() => {
      this.#inFlight--;
      this.#flush();
    });
  }

  /**
   * A batch's worker died or overran its deadline, taking every request it
   * had not answered. One of them did it, and nothing says which: when there
   * are several, each idempotent one runs again alone (once), so only the
   * culprit gets the 500 or 504. Non-idempotent ones are not replayed.
   */
  #failed(batch: RequestBatch, pendings: Pending[], error: unknown, alone: boolean): void {
    const unanswered: number[] = [];
    for (let i = 0; i < pendings.length; i++) {
      if (pendings[i].bytes === null && !pendings[i].cancelled) unanswered.push(i);
    }
    const workerFault = error instanceof WorkerPoolError &&
      (error.code === "worker-exited" || error.code === "timeout");
    if (alone || !workerFault || unanswered.length < 2) {
      this.#outstanding -= fail(pendings, error);
      return;
    }
    const { bytes, index } = batch;
    for (const i of unanswered) {
      const at = i * REQUEST_FIELDS;
      const [offset, headLength, bodyLength, flags] = index.subarray(at, at + REQUEST_FIELDS);
      if (!isIdempotent(bytes, offset)) {
        this.#outstanding -= fail([pendings[i]], error);
        continue;
      }
      this.#run(
        {
          bytes: bytes.slice(offset, offset + headLength + bodyLength),
          index: Uint32Array.of(0, headLength, bodyLength, flags),
        },
        [pendings[i]],
        true,
      );
    }
  }
}

// RFC 9110 §9.2.2: safe to send again after a failure.
const IDEMPOTENT = ["GET ", "HEAD ", "OPTIONS ", "PUT ", "DELETE ", "TRACE "].map((method) =>
  new TextEncoder().encode(method)
);

function isIdempotent(bytes: Uint8Array, offset: number): boolean {
  return IDEMPOTENT.some((method) => method.every((b, i) => bytes[offset + i] === b));
}

/** Hands each response to its request; returns how many were answered. */
function deliver(pendings: Pending[], reply: ResponseBatch): number {
  const { bytes, index, files, workerId } = reply;
  for (let i = 0; i < index.length; i += RESPONSE_FIELDS) {
    const pending = pendings[index[i]];
    const flags = index[i + 4];
    pending.workerId = workerId;
    if (flags & RESPONSE_FILE) pending.file = files.find((file) => file.request === index[i]);
    pending.answer(
      bytes.subarray(index[i + 1], index[i + 1] + index[i + 2]),
      index[i + 3],
      (flags & RESPONSE_CLOSE) !== 0,
      index[i + 5],
    );
  }
  return index.length / RESPONSE_FIELDS;
}

/** The job failed as a whole: answer every request it had not answered yet; returns how many. */
function fail(pendings: Pending[], error: unknown): number {
  let status = 500;
  let message = "Internal Server Error";
  if (error instanceof WorkerPoolError) {
    if (error.code === "timeout") {
      status = 504;
      message = "The request handler ran past its deadline";
    } else if (error.code === "closed") {
      status = 503;
      message = "The server is shutting down";
    } else if (error.code === "worker-exited") {
      message = "The worker handling this request crashed";
    } else if (error.code === "startup-failed") {
      status = 503;
      message = "No worker could start";
    }
  } else {
    console.error("A worker job failed:", error);
  }
  const close = status !== 500;
  let answered = 0;
  for (const pending of pendings) {
    if (pending.bytes !== null) continue;
    pending.answer(plainResponse(status, message, { close }), status, close, message.length + 1);
    answered++;
  }
  return answered;
}
