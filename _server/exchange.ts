/**
 * One request and its response on the main thread: the request's job on the
 * pool, its body flowing to the worker within a credit window, and the
 * response bytes flowing back until the connection writes them. A connection
 * keeps its exchanges in request order and writes from the first.
 *
 * Memory per exchange is bounded by construction: at most one request window
 * of body bytes is unacknowledged, and a worker sends at most one response
 * window before the connection credits what it wrote.
 */

import { encoder, plainResponse } from "../_shared/http.ts";
import type { FileSlice, RequestStart, ResponseEnd, ResponsePart } from "../_shared/protocol.ts";
import { type Job, type WorkerPool, WorkerPoolError } from "../pool.ts";

/** The pool as the server uses it. */
export type HttpPool = WorkerPool<RequestStart, ResponseEnd, ResponsePart>;

/** Bytes of request body sent to a worker before it must credit them. */
export const REQUEST_WINDOW = 64 << 10;
/** Bytes of response a worker may send before the main thread credits them. */
export const RESPONSE_WINDOW = 64 << 10;

/** Server-wide counts the exchanges keep up to date. */
export interface ExchangeCounters {
  /** Requests given to the pool and not yet answered. */
  requests: number;
  /** Open WebSockets. */
  websockets: number;
}

/** Where an upgraded exchange's job reports once it is a WebSocket's stream. */
export interface StreamEvents {
  /** Frames to write, or the app's close. */
  onPart(part: ResponsePart): void;
  /** The worker took message bytes. */
  onCredit(bytes: number): void;
  /** The job ended; `failed` when its worker died or it was cut. */
  onEnd(failed: boolean): void;
}

/** What an exchange tells its connection. */
export interface ExchangeEvents {
  /** Bytes are ready to write, or the exchange is finished. */
  onReady(exchange: Exchange): void;
  /** The worker took request body bytes: reading may resume. */
  onCredit(exchange: Exchange): void;
}

// RFC 9110 §9.2.2: safe to send again after a failure.
const IDEMPOTENT = new Set(["GET", "HEAD", "OPTIONS", "PUT", "DELETE"]);
const OVERLOADED = "The server is overloaded; try again shortly";
const CONTINUE = encoder.encode("HTTP/1.1 100 Continue\r\n\r\n");

/** One request's place in its connection's response order. */
export class Exchange {
  /** Response bytes received and not yet written, in order. */
  chunks: Uint8Array[] = [];
  /** Total of `chunks`. */
  buffered = 0;
  /** Bytes of this response in the connection's current write, to credit once written. */
  written = 0;
  /** A body to stream from disk once `chunks` are written. */
  file: FileSlice | undefined;
  /** `100 Continue`, to write before anything else if no response head came first. */
  interim: Uint8Array | undefined;
  /** Every byte of the response has been received. */
  finished = false;
  /** Close the connection after this response. */
  close = false;
  /** The response started and cannot be completed: the connection must be cut. */
  broken = false;
  /**
   * The response is a `101`: once it is written, the connection is the
   * job's WebSocket (see {@linkcode Exchange.upgrade}).
   */
  upgraded = false;
  status = 0;
  bodyBytes = 0;
  workerId = -1;
  /** The request line, for the access log. */
  requestLine = "";
  /** The client, as the access log names it (the proxy's client with --trust-proxy). */
  remote = "";
  /** Referer and User-Agent, kept only for access log formats that show them. */
  referer = "";
  userAgent = "";
  /** When the request was framed, in `performance.now()` time. */
  startedAt = 0;

  #events: ExchangeEvents;
  /** Buffers of body parts taken for writing, to move back to the worker once written. */
  #taken: ArrayBuffer[] | undefined;
  #recyclable: ArrayBuffer[] | undefined;
  #job: Job<ResponseEnd> | undefined;
  #pool: HttpPool | undefined;
  #counters: ExchangeCounters | undefined;
  #start: RequestStart | undefined;
  #headSeen = false;
  /** Body bytes sent and not yet credited by the worker. */
  #inFlight = 0;
  #bodyEnded = false;
  /** Whether the request may run again: idempotent, and its body so far fits one window. */
  #replayable = true;
  /** The body so far, kept while the request is replayable. */
  #replay: Uint8Array[] | undefined;
  #replayBytes = 0;
  #replayed = false;
  #cancelled = false;
  #label: string | undefined;
  /** Where an upgraded job's events go; what comes before it is kept in `#early`. */
  #stream: StreamEvents | undefined;
  #early: ResponsePart[] | undefined;
  #endedEarly: boolean | undefined;

  /** @param events Where to say that bytes are ready or credit arrived. */
  constructor(events: ExchangeEvents) {
    this.#events = events;
  }

  /** Whether the request body may not take more bytes until the worker credits some. */
  get bodyBlocked(): boolean {
    return this.#job !== undefined && !this.finished && this.#inFlight >= REQUEST_WINDOW;
  }

  /** Whether part of the response has come from the worker but not all of it. */
  get responseStarted(): boolean {
    return this.#headSeen && !this.finished;
  }

  /**
   * Gives up on a response that has begun: its work stops, what arrived is
   * still written, and then the connection closes.
   */
  abandon(): void {
    if (this.finished) return;
    if (this.#job !== undefined) {
      this.#counters!.requests--;
      this.#job.cancel(new DOMException("The request could not be completed", "AbortError"));
    }
    this.#cancelled = true;
    this.broken = true;
    this.finished = true;
    this.#events.onReady(this);
  }

  /**
   * Starts a response the main thread produces over time (server-sent
   * events): `head` now, then {@linkcode Exchange.push}, until
   * {@linkcode Exchange.end}.
   */
  open(head: Uint8Array, status: number, close: boolean): void {
    if (this.finished) return;
    this.status = status;
    this.close = close;
    this.interim = undefined;
    this.chunks.push(head);
    this.buffered += head.length;
    this.#events.onReady(this);
  }

  /** More bytes of a response opened with {@linkcode Exchange.open}; false once it has ended. */
  push(bytes: Uint8Array): boolean {
    if (this.finished) return false;
    this.chunks.push(bytes);
    this.buffered += bytes.length;
    this.#events.onReady(this);
    return true;
  }

  /** Ends a response opened with {@linkcode Exchange.open}, after `last` if given. */
  end(last?: Uint8Array): void {
    if (this.finished) return;
    if (last) {
      this.chunks.push(last);
      this.buffered += last.length;
    }
    this.finished = true;
    this.#events.onReady(this);
  }

  /** Answers from the main thread: `bytes` is the whole response. */
  answer(bytes: Uint8Array, status: number, close: boolean, bodyBytes = 0): void {
    if (this.finished) return;
    this.chunks.push(bytes);
    this.buffered += bytes.length;
    this.status = status;
    this.close = close;
    this.bodyBytes = bodyBytes;
    this.finished = true;
    this.interim = undefined;
    this.#events.onReady(this);
  }

  /** Runs the request on the pool. */
  run(
    pool: HttpPool,
    counters: ExchangeCounters,
    start: RequestStart,
    expectContinue: boolean,
    label?: string,
    blocking = false,
  ): void {
    this.#label = label;
    this.#pool = pool;
    this.#counters = counters;
    this.#start = start;
    if (!start.body) this.#bodyEnded = true;
    // Only an idempotent request may run again; others need no copy of their body.
    if (!IDEMPOTENT.has(start.method)) this.#replayable = false;
    counters.requests++;
    // A request known to block its worker's thread gets a worker of its own,
    // so the next one waits in the pool's queue, not behind it in a worker.
    this.#submit(blocking);
    if (expectContinue) {
      this.interim = CONTINUE;
      // After the rest of this read is framed: a body already on its way
      // makes the 100 unnecessary.
      queueMicrotask(() => this.#events.onReady(this));
    }
  }

  /** Request body bytes, a view into the connection's buffer: copied here. */
  body(view: Uint8Array): void {
    if (this.#job === undefined || this.finished || this.#cancelled) return;
    const bytes = view.slice();
    this.#inFlight += bytes.length;
    if (this.#replayable) {
      this.#replayBytes += bytes.length;
      if (this.#replayBytes <= REQUEST_WINDOW) (this.#replay ??= []).push(bytes);
      else {
        this.#replayable = false;
        this.#replay = undefined;
      }
    }
    // A copy kept for a replay is cloned into the message; otherwise it moves.
    this.#job.send({ bytes }, this.#replayable ? undefined : [bytes.buffer]);
  }

  /** The request body is complete. */
  endBody(): void {
    this.#bodyEnded = true;
    if (this.#job === undefined || this.finished || this.#cancelled) return;
    this.#job.send({ end: true });
  }

  /**
   * The connection wrote `bytes` of this response: the worker may send as
   * many more, and gets its body buffers back for reuse.
   */
  wrote(bytes: number): void {
    // Most responses are one message and have no buffers to give back.
    const buffers = this.#taken;
    this.#taken = undefined;
    if (this.#job !== undefined && !this.finished) this.#job.credit(bytes, buffers);
  }

  /**
   * Hands the job of an upgraded exchange, whose `101` is written, to its
   * WebSocket: the job's frames, credit and end go to `stream` from now on,
   * those that came meanwhile first.
   */
  upgrade(stream: StreamEvents): void {
    this.#stream = stream;
    for (const part of this.#early ?? []) stream.onPart(part);
    this.#early = undefined;
    if (this.#endedEarly !== undefined) stream.onEnd(this.#endedEarly);
  }

  /** The request's job; for an upgraded exchange, its WebSocket's stream. */
  get job(): Job<ResponseEnd> | undefined {
    return this.#job;
  }

  /**
   * Stops the request's work and drops whatever of its response is not yet
   * written: the client is gone, or its request turned out malformed. Safe to
   * call twice.
   */
  cancel(): void {
    if (this.#cancelled) return;
    this.#cancelled = true;
    const running = this.#job !== undefined && !this.finished;
    if (running) this.#counters!.requests--;
    // A WebSocket whose 101 was never written: its socket closes on the worker too.
    if (running || (this.upgraded && this.#stream === undefined)) {
      this.#job!.cancel(new DOMException("The client closed the connection", "AbortError"));
    }
    this.chunks = [];
    this.buffered = 0;
    this.file = undefined;
    this.interim = undefined;
    this.finished = true;
    this.#events.onReady(this);
  }

  /** Moves the bytes that are ready to write onto `parts`; returns how many. */
  takeInto(parts: Uint8Array[]): number {
    let bytes = 0;
    for (const chunk of this.chunks) {
      parts.push(chunk);
      bytes += chunk.length;
    }
    this.chunks.length = 0;
    this.buffered = 0;
    if (this.#recyclable !== undefined) {
      this.#taken ??= [];
      for (const buffer of this.#recyclable) this.#taken.push(buffer);
      this.#recyclable = undefined;
    }
    return bytes;
  }

  #submit(exclusive: boolean): void {
    const job = this.#pool!.submit(this.#start!, {
      exclusive,
      label: this.#label,
      onMessage: (part) => this.#onPart(part),
      onCredit: (bytes) => {
        if (this.upgraded) {
          this.#stream?.onCredit(bytes);
          return;
        }
        this.#inFlight -= bytes;
        this.#events.onCredit(this);
      },
      onResult: (end) => this.#done(end),
      onError: (error) => this.#failed(job, error),
    });
    this.#job = job;
    if (this.#replayed) {
      for (const bytes of this.#replay ?? []) job.send({ bytes });
      if (this.#bodyEnded && this.#start!.body) job.send({ end: true });
    }
  }

  #onPart(part: ResponsePart, notify = true): void {
    if (this.upgraded) {
      if (this.#stream) this.#stream.onPart(part);
      else (this.#early ??= []).push(part);
      return;
    }
    if (this.finished || part.type === "close") return;
    if (part.type === "head") {
      this.#headSeen = true;
      this.interim = undefined;
      this.status = part.status;
      this.close = part.close;
      this.file = part.file;
      if (part.upgrade) {
        // The HTTP exchange is over; the job goes on as the WebSocket's stream.
        this.upgraded = true;
        this.finished = true;
        this.workerId = part.workerId ?? -1;
        this.#counters!.requests--;
      }
    }
    this.chunks.push(part.bytes);
    this.buffered += part.bytes.length;
    if (part.type === "data") (this.#recyclable ??= []).push(part.bytes.buffer as ArrayBuffer);
    if (notify) this.#events.onReady(this);
  }

  /** An upgraded job ended: its worker closed the socket, or died. */
  #streamEnded(failed: boolean): void {
    if (this.#stream) this.#stream.onEnd(failed);
    else this.#endedEarly = failed;
  }

  #done(end: ResponseEnd): void {
    if (this.upgraded) {
      this.#streamEnded(false);
      return;
    }
    if (this.finished) return;
    if (end.last) this.#onPart(end.last, false);
    this.#counters!.requests--;
    this.bodyBytes = end.bodyBytes;
    this.workerId = end.workerId;
    this.finished = true;
    this.#events.onReady(this);
  }

  /**
   * The job failed. Before the response started, the client gets a status
   * that says why; after, the connection is cut. A request whose worker died
   * while running others too may be an innocent neighbour of the culprit: if
   * it is idempotent and its whole body is at hand, it runs again once, alone
   * on a worker, so that only the culprit fails.
   */
  #failed(job: Job<ResponseEnd>, error: unknown): void {
    if (this.upgraded) {
      this.#streamEnded(true);
      return;
    }
    if (this.finished || job !== this.#job) return;
    if (this.#headSeen) {
      this.#counters!.requests--;
      this.broken = true;
      this.finished = true;
      this.#events.onReady(this);
      return;
    }
    if (
      error instanceof WorkerPoolError && error.code === "worker-exited" && error.shared &&
      !this.#replayed && this.#replayable
    ) {
      this.#replayed = true;
      // The replay sends the kept body again; the new worker credits it.
      this.#inFlight = this.#replayBytes;
      this.#submit(true);
      return;
    }
    this.#counters!.requests--;
    const { status, message, close } = describeFailure(error);
    // A body still arriving cannot be skipped to the next request: close, and say so.
    const mustClose = close || this.#start!.close || !this.#bodyEnded;
    this.answer(
      plainResponse(status, message, {
        close: mustClose,
        headers: status === 503 ? ["retry-after: 1"] : [],
      }),
      status,
      mustClose,
      message.length + 1,
    );
  }
}

function describeFailure(error: unknown): { status: number; message: string; close: boolean } {
  if (error instanceof WorkerPoolError) {
    switch (error.code) {
      case "timeout":
        return { status: 504, message: "The request handler ran past its deadline", close: true };
      case "closed":
        return { status: 503, message: "The server is shutting down", close: true };
      case "queue-full":
        return { status: 503, message: OVERLOADED, close: true };
      case "queue-timeout":
        return { status: 503, message: OVERLOADED, close: false };
      case "startup-failed":
        return { status: 503, message: "No worker could start", close: true };
      case "worker-exited":
        return { status: 500, message: "The worker handling this request crashed", close: false };
    }
  }
  return { status: 500, message: "Internal Server Error", close: false };
}
