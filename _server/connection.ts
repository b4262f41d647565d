/**
 * One client connection on the main thread: reads bytes, frames requests,
 * starts each on the pool as soon as its head is valid, streams its body to
 * the worker, and writes responses back in request order as their bytes
 * arrive.
 *
 * Pipelined requests start one at a time, as `Deno.serve` does: a new head is
 * framed only once every earlier request on the connection has its whole
 * response, so a client that pipelines without reading holds at most one
 * running request, however large its responses. Memory per connection is
 * bounded in bytes: the read buffer holds at most one head plus one read; a
 * request body waits for its worker's credit; and at most `maxPipeline`
 * finished responses, or `maxOutput` bytes, wait to be written.
 *
 * A `101` to a WebSocket handshake turns the connection into that socket
 * (`_server/websocket.ts`) once it is written: from then on its bytes are
 * WebSocket frames, and nothing is framed as HTTP again.
 */

import type { Dashboard } from "./dashboard.ts";
import { forwardedClient } from "./proxy.ts";
import { Exchange, type ExchangeCounters, type HttpPool } from "./exchange.ts";
import {
  Framer,
  type FramingLimits,
  isUnservableMethod,
  loggedRequestLine,
  type RequestHead,
} from "./framing.ts";
import { encoder, plainResponse, textResponse } from "../_shared/http.ts";
import type { RequestStart } from "../_shared/protocol.ts";
import { Queue } from "../_pool/queue.ts";
import { concat, totalOf } from "./bytes.ts";
import { type SocketWire, type WebSocketOptions, WebSocketSession } from "./websocket.ts";

/** Limits and timeouts for every connection. */
export interface ConnectionOptions extends FramingLimits, WebSocketOptions {
  /** Requests served on one connection before it closes. */
  maxRequests: number;
  /** Milliseconds for a whole request head to arrive, from its first byte. */
  headTimeout: number;
  /** Milliseconds a request body may stall between reads. */
  bodyTimeout: number;
  /** Milliseconds an idle keep-alive connection stays open. */
  idleTimeout: number;
  /** Milliseconds one response write may make no progress before the client is dropped. */
  writeTimeout: number;
  /** Responses a connection may owe before it stops reading. */
  maxPipeline: number;
  /** Response bytes a connection may hold unwritten before it stops reading. */
  maxOutput: number;
  /** Whether the server is about to drain: `GET /_brigade/health` then answers 503. */
  draining: () => boolean;
  /** Answers `GET /_brigade/stats` on the main thread, if set. */
  stats: (() => string) | undefined;
  /** Answers `GET /_brigade/metrics` (Prometheus text) on the main thread, if set. */
  metrics: (() => string) | undefined;
  /**
   * Whether a request will block its worker's thread (the static app's
   * `/sleep`): it then runs alone on an idle worker.
   */
  blocks: (head: RequestHead) => boolean;
  /** The live pool page and its events, with --dashboard. */
  dashboard: Dashboard | undefined;
  /** Keep each request's Referer and User-Agent for the access log. */
  logHeaders: boolean;
  /** Take the client's address and scheme from one reverse proxy's forwarding fields. */
  trustProxy: boolean;
  /** Called with each finished exchange, for the access log. */
  onResponse: ((exchange: Exchange, remote: string) => void) | undefined;
}

const READ_SIZE = 16 << 10;
/**
 * The read buffer of a connection between requests: most request heads fit,
 * and an idle keep-alive connection holds no more (a body grows it to
 * `READ_SIZE` while it arrives).
 */
const IDLE_READ = 2 << 10;
const FILE_CHUNK = 64 << 10;
/** Parts smaller than this are gathered into one write; larger ones go as they are. */
const COALESCE_LIMIT = 16 << 10;

const enum Phase {
  /** Nothing owed, nothing partial: the idle timeout runs. */
  Idle,
  /** Part of a head has arrived: the head timeout runs, from its first byte. */
  Head,
  /** A body is arriving: the body timeout runs between reads. */
  Body,
  /** Responses are owed and nothing partial has arrived: no read deadline. */
  Waiting,
}

/** One accepted TCP connection. */
export class Connection {
  #conn: Deno.Conn;
  #pool: HttpPool;
  #counters: ExchangeCounters;
  #options: ConnectionOptions;
  #onClose: (connection: Connection) => void;
  #framer: Framer;
  #remote: string;
  #remotePort: number;

  #buf: Uint8Array;
  #start = 0;
  #end = 0;
  #queue = new Queue<Exchange>();
  /** The exchange whose request body is arriving. */
  #receiving: Exchange | undefined;
  /** No more requests are framed after the current one (close, error, drain). */
  #lastRequest = false;
  #requests = 0;
  #reading = true;
  #writing = false;
  #closed = false;
  #framing = false;
  #frameAgain = false;
  /** A read into `#buf` at `#end` is in flight: the buffer must not move. */
  #readPending = false;
  #maxBuffer: number;
  #resumeReading: (() => void) | undefined;
  /** Once a 101 is written: the connection's WebSocket, which reads and writes from then on. */
  #websocket: WebSocketSession | undefined;

  #phase = Phase.Idle;
  #idleSince = 0;
  #readDeadline = Infinity;
  #writeDeadline = Infinity;

  /**
   * @param conn The accepted socket; this object owns and closes it.
   * @param pool Where requests run.
   * @param counters Server-wide request counts.
   * @param options Limits and timeouts.
   * @param onClose Called once, after the socket is closed.
   */
  constructor(
    conn: Deno.Conn,
    pool: HttpPool,
    counters: ExchangeCounters,
    options: ConnectionOptions,
    onClose: (connection: Connection) => void,
  ) {
    this.#conn = conn;
    this.#pool = pool;
    this.#counters = counters;
    this.#options = options;
    this.#onClose = onClose;
    this.#framer = new Framer(options);
    this.#maxBuffer = options.maxHead + READ_SIZE;
    this.#buf = new Uint8Array(Math.min(IDLE_READ, this.#maxBuffer));
    const addr = conn.remoteAddr as Deno.NetAddr;
    this.#remote = addr.hostname ?? "-";
    this.#remotePort = addr.port ?? 0;
    this.#setIdle();
    void this.#readLoop();
  }

  /** Whether responses are still owed to the client, or it is an open WebSocket. */
  get busy(): boolean {
    return this.#queue.length > 0 || this.#websocket !== undefined;
  }

  /** Enforces this connection's deadlines; called a few times a second. */
  sweep(now: number): void {
    if (this.#closed) return;
    this.#websocket?.sweep(now);
    if (now > this.#writeDeadline) {
      // The client stopped reading its responses: drop it.
      this.close();
    } else if (now > this.#readDeadline) {
      if (this.#phase === Phase.Idle || this.#receiving?.finished) {
        // Idle, or the rest of a body nobody waits for any more: just close.
        this.close();
      } else {
        this.#refuse(408, "Request timed out");
      }
    }
  }

  /** Stops taking requests; closes now if idle, else once owed responses are written. */
  drain(): void {
    if (this.#websocket !== undefined) {
      this.#websocket.shutdown();
      return;
    }
    if (this.#receiving !== undefined) {
      // A body is arriving: take the rest of it, then stop.
      this.#lastRequest = true;
      return;
    }
    this.#stopReading();
    if (this.#queue.length === 0 && !this.#writing) this.close();
  }

  /** Closes the socket at once; owed responses are dropped and their work cancelled. Safe to call twice. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#reading = false;
    this.#readDeadline = this.#writeDeadline = Infinity;
    for (const exchange of this.#queue.drain()) exchange.cancel();
    this.#receiving?.cancel();
    this.#websocket?.lost();
    try {
      this.#conn.close();
    } catch {
      // Already closed by the peer.
    }
    this.#resumeReading?.();
    this.#onClose(this);
  }

  #stopReading(): void {
    this.#reading = false;
    this.#lastRequest = true;
    this.#readDeadline = Infinity;
    this.#resumeReading?.();
  }

  #setIdle(): void {
    this.#phase = Phase.Idle;
    this.#idleSince = this.#options.clock.now;
    this.#readDeadline = this.#idleSince + this.#options.idleTimeout;
  }

  /**
   * When the connection became idle (nothing owed, nothing partial), or
   * `Infinity` while it is not: the server closes the longest-idle one to
   * admit a newcomer when it is full.
   */
  get idleSince(): number {
    return this.#phase === Phase.Idle && !this.#closed ? this.#idleSince : Infinity;
  }

  /** Whether to read more bytes from the socket: room to hold them, and no body waiting for credit. */
  #mayRead(): boolean {
    if (this.#receiving?.bodyBlocked || this.#websocket?.mayRead === false) return false;
    return this.#end - this.#start < this.#maxBuffer;
  }

  /**
   * Whether a new request may start: every earlier one has its whole
   * response, and the responses waiting to be written are few and small.
   */
  #mayStart(): boolean {
    if (this.#queue.length >= this.#options.maxPipeline) return false;
    let output = 0;
    for (let i = 0; i < this.#queue.length; i++) {
      const exchange = this.#queue.at(i)!;
      // After a 101, the bytes that follow are WebSocket frames.
      if (!exchange.finished || exchange.upgraded) return false;
      output += exchange.buffered;
    }
    return output <= this.#options.maxOutput;
  }

  /** Frames what is buffered and lets the read loop go on, after anything that may unblock them. */
  #wake(): void {
    if (this.#closed) return;
    this.#frame();
    if (this.#mayRead()) this.#resumeReading?.();
  }

  async #readLoop(): Promise<void> {
    while (this.#reading) {
      if (!this.#mayRead()) {
        // Backpressure: no read deadline while we are the ones waiting.
        if (this.#phase === Phase.Body) this.#readDeadline = Infinity;
        await new Promise<void>((resolve) => this.#resumeReading = resolve);
        this.#resumeReading = undefined;
        if (this.#phase === Phase.Body) {
          this.#readDeadline = this.#options.clock.now + this.#options.bodyTimeout;
        }
        continue;
      }
      if (this.#phase === Phase.Body && this.#buf.length < READ_SIZE) this.#grow(READ_SIZE);
      if (this.#end === this.#buf.length) this.#makeRoom();
      let n: number | null;
      this.#readPending = true;
      try {
        // Usually the buffer is empty: read into it whole, without a view.
        n = await this.#conn.read(this.#end === 0 ? this.#buf : this.#buf.subarray(this.#end));
      } catch {
        n = null;
      } finally {
        this.#readPending = false;
      }
      if (this.#closed || !this.#reading) return;
      if (n === null) {
        // The client has gone (a half-close counts as gone, as in Node's
        // default): its requests are cancelled, not run for nobody.
        this.close();
        return;
      }
      this.#end += n;
      this.#frame();
    }
  }

  /** Makes room at the end of the buffer: compacts, or grows up to one head plus one read. */
  #makeRoom(): void {
    if (this.#start === 0) return this.#grow(this.#buf.length * 2);
    this.#buf.copyWithin(0, this.#start, this.#end);
    this.#end -= this.#start;
    this.#start = 0;
  }

  /** Moves the buffered bytes to the start of a buffer of `size` (at most one head plus one read). */
  #grow(size: number): void {
    const grown = new Uint8Array(Math.min(size, this.#maxBuffer));
    grown.set(this.#buf.subarray(this.#start, this.#end));
    this.#buf = grown;
    this.#end -= this.#start;
    this.#start = 0;
  }

  #frame(): void {
    // Exchanges may call back into the connection while it frames.
    if (this.#framing) {
      this.#frameAgain = true;
      return;
    }
    this.#framing = true;
    try {
      do {
        this.#frameAgain = false;
        this.#frameOnce();
      } while (this.#frameAgain && !this.#closed);
    } finally {
      this.#framing = false;
    }
  }

  #frameOnce(): void {
    if (this.#websocket !== undefined) {
      this.#start += this.#websocket.receive(this.#buf, this.#start, this.#end);
      if (this.#start === this.#end && !this.#readPending) this.#start = this.#end = 0;
      return;
    }
    const framer = this.#framer;
    const options = this.#options;
    while (!this.#closed && this.#reading) {
      const between = framer.inHead && this.#receiving === undefined;
      if (between ? !this.#mayStart() : this.#receiving?.bodyBlocked) break;
      if (this.#lastRequest && this.#receiving === undefined) {
        // RFC 9112 §9.6: nothing after a request that ends the connection runs.
        this.#start = this.#end;
        this.#reading = false;
        this.#readDeadline = Infinity;
        if (this.#queue.length === 0 && !this.#writing) this.close();
        break;
      }
      const event = framer.next(this.#buf, this.#start, this.#end);
      this.#start += framer.consumed;
      if (event === null) break;
      switch (event.type) {
        case "head":
          this.#onHead(event.head);
          break;
        case "body":
          // RFC 9110 §10.1.1: no 100 Continue once the body is on its way.
          if (this.#receiving) this.#receiving.interim = undefined;
          this.#receiving?.body(event.bytes);
          this.#phase = Phase.Body;
          this.#readDeadline = options.clock.now + options.bodyTimeout;
          break;
        case "end":
          this.#receiving?.endBody();
          this.#receiving = undefined;
          this.#phase = Phase.Waiting;
          this.#readDeadline = Infinity;
          break;
        case "error":
          this.#refuse(event.status, event.message, event.headers);
          return;
      }
    }
    if (this.#start === this.#end && !this.#readPending) {
      this.#start = this.#end = 0;
      if (this.#buf.length > IDLE_READ && this.#phase !== Phase.Body) {
        this.#buf = new Uint8Array(IDLE_READ);
      }
    }
    if (this.#closed || !this.#reading) return;
    if (this.#receiving !== undefined) return;
    if (this.#start < this.#end && this.#mayStart()) {
      // Part of a head is here and nothing of ours holds it back: its clock runs.
      if (this.#phase !== Phase.Head) {
        this.#phase = Phase.Head;
        this.#readDeadline = options.clock.now + options.headTimeout;
      }
    } else if (this.#start === this.#end && this.#queue.length === 0 && !this.#writing) {
      if (this.#phase !== Phase.Idle) this.#setIdle();
    } else {
      this.#phase = Phase.Waiting;
      this.#readDeadline = Infinity;
    }
  }

  #onHead(head: RequestHead): void {
    const options = this.#options;
    const close = !head.keepAlive || ++this.#requests >= options.maxRequests;
    // A handshake's answer decides: a 101 needs the connection read on, and
    // any other answer says connection: close itself.
    if (close && !head.websocket) this.#lastRequest = true;
    const exchange = new Exchange(this.#events);
    let remoteHost = this.#remote;
    let remotePort = this.#remotePort;
    let scheme = "http";
    if (options.trustProxy) {
      const client = forwardedClient(head.fields);
      // The proxy does not say its client's port.
      if (client.host !== undefined) [remoteHost, remotePort] = [client.host, 0];
      if (client.proto !== undefined) scheme = client.proto;
    }
    if (options.onResponse) {
      exchange.requestLine = head.requestLine;
      exchange.startedAt = performance.now();
      exchange.remote = remoteHost;
      if (options.logHeaders) {
        const fields = head.fields;
        for (let i = 0; i < fields.length; i += 2) {
          if (fields[i] === "referer") exchange.referer = fields[i + 1];
          else if (fields[i] === "user-agent") exchange.userAgent = fields[i + 1];
        }
      }
    }
    this.#queue.push(exchange);
    if (head.hasBody) {
      this.#receiving = exchange;
      this.#phase = Phase.Body;
      this.#readDeadline = options.clock.now + options.bodyTimeout;
    } else {
      this.#phase = Phase.Waiting;
      this.#readDeadline = Infinity;
    }
    if (isUnservableMethod(head.method)) {
      exchange.answer(
        plainResponse(501, `Method ${head.method} is not implemented`, { close }),
        501,
        close,
      );
      return;
    }
    if (head.path.startsWith("/_brigade/") || (options.dashboard && head.path === "/_brigade")) {
      this.#builtIn(head, exchange, close, scheme === "https");
      return;
    }
    const start: RequestStart = {
      method: head.method,
      url: `${scheme}://${head.host || "localhost"}${head.path === "*" ? "/" : head.path}`,
      fields: head.fields,
      body: head.hasBody,
      minor: head.minor,
      close,
      remoteHost,
      remotePort,
      websocket: head.websocket,
    };
    // With the dashboard on, a running request is shown as its method and path (no query).
    const label = options.dashboard ? `${head.method} ${head.path.split("?", 1)[0]}` : undefined;
    exchange.run(
      this.#pool,
      this.#counters,
      start,
      head.expectContinue,
      label,
      options.blocks(head),
    );
  }

  /**
   * Answers the reserved `/_brigade/` paths on the main thread: `health`
   * always (200, or 503 during `--drain-delay`), `stats` with
   * --stats, `metrics` with --metrics, and
   * 404 for anything else there. None reaches the app.
   */
  #builtIn(head: RequestHead, exchange: Exchange, close: boolean, https: boolean): void {
    const query = head.path.indexOf("?");
    const path = query === -1 ? head.path : head.path.slice(0, query);
    const options = this.#options;
    if (options.dashboard && (path === "/_brigade/" || path === "/_brigade/events")) {
      this.#dashboard(options.dashboard, head, exchange, close, path, query, https);
      return;
    }
    if (path === "/_brigade" && options.dashboard) {
      // The page reads its events relative to its own URL, which ends in a slash.
      this.#answerText(exchange, head, close, 301, "Moved Permanently\n", ["location: /_brigade/"]);
      return;
    }
    let status = 404;
    let body = "Not Found\n";
    let type = "text/plain; charset=utf-8";
    if (path === "/_brigade/health") {
      [status, body] = options.draining() ? [503, "draining\n"] : [200, "serving\n"];
    } else if (path === "/_brigade/stats" && options.stats) {
      [status, body, type] = [200, options.stats(), "application/json"];
    } else if (path === "/_brigade/metrics" && options.metrics) {
      [status, body, type] = [200, options.metrics(), "text/plain; version=0.0.4; charset=utf-8"];
    }
    if (status !== 404 && head.method !== "GET" && head.method !== "HEAD") {
      this.#answerText(exchange, head, close, 405, "Method Not Allowed\n", ["allow: GET, HEAD"]);
      return;
    }
    this.#answerText(exchange, head, close, status, body, [], type);
  }

  /**
   * Answers on the main thread with a text body (only its head for HEAD),
   * never to be cached, and logs the body's size.
   */
  #answerText(
    exchange: Exchange,
    head: RequestHead,
    close: boolean,
    status: number,
    text: string,
    headers: string[],
    type = "text/plain; charset=utf-8",
  ): void {
    const body = encoder.encode(text);
    const headOnly = head.method === "HEAD";
    const bytes = textResponse(status, body, type, {
      close,
      headOnly,
      headers: [...headers, "cache-control: no-store"],
    });
    exchange.answer(bytes, status, close, headOnly ? 0 : body.length);
  }

  #dashboard(
    dashboard: Dashboard,
    head: RequestHead,
    exchange: Exchange,
    close: boolean,
    path: string,
    query: number,
    https: boolean,
  ): void {
    // A token in the query never reaches the access log.
    exchange.requestLine = head.requestLine.replace(/([?&]token=)[^&\s]*/g, "$1[redacted]");
    const access = dashboard.access(
      this.#remote,
      head.fields,
      query === -1 ? "" : head.path.slice(query),
      https,
    );
    if (!access.ok) {
      this.#answerText(exchange, head, close, access.status, `${access.message}\n`, []);
      return;
    }
    const events = path === "/_brigade/events";
    if (head.method !== "GET" && (events || head.method !== "HEAD")) {
      const allow = events ? "allow: GET" : "allow: GET, HEAD";
      this.#answerText(exchange, head, close, 405, "Method Not Allowed\n", [allow]);
      return;
    }
    if (events) {
      dashboard.watch(exchange, head.minor, close, access.cookie);
      return;
    }
    const headOnly = head.method === "HEAD";
    const page = dashboard.page(close, headOnly, access.cookie);
    exchange.answer(page, 200, close, headOnly ? 0 : dashboard.pageSize);
  }

  /** Answers a request the framer refused, and closes after it. */
  #refuse(status: number, message: string, headers?: string[]): void {
    this.#stopReading();
    const receiving = this.#receiving;
    this.#receiving = undefined;
    if (receiving?.responseStarted) {
      // Its response has begun: an answer now would land inside it. Write
      // what it has and close.
      receiving.abandon();
      return;
    }
    // Queue the answer first: dropping the refused request may let the
    // writer move on at once, and it must find the answer there.
    const exchange = new Exchange(this.#events);
    exchange.startedAt = performance.now();
    if (this.#options.onResponse) {
      // What the client sent, as far as it makes a line, for the log.
      exchange.requestLine = receiving?.requestLine ||
        loggedRequestLine(this.#buf, this.#start, this.#end);
    }
    this.#queue.push(exchange);
    exchange.answer(plainResponse(status, message, { close: true, headers }), status, true);
    receiving?.cancel();
  }

  #events = {
    onReady: (exchange: Exchange): void => {
      if (this.#closed) return;
      if (this.#queue.peek() === exchange) {
        // A running writer picks the bytes up; don't start (and allocate) another.
        if (!this.#writing) void this.#pump();
      } else if (exchange.finished) this.#wake();
    },
    onCredit: (exchange: Exchange): void => {
      if (exchange === this.#receiving && !exchange.bodyBlocked) this.#wake();
    },
  };

  /** Writes what is ready, in request order. */
  async #pump(): Promise<void> {
    if (this.#writing) return;
    this.#writing = true;
    try {
      while (!this.#closed) {
        const first = this.#queue.peek();
        if (first === undefined) break;
        if (first.interim !== undefined) {
          const interim = first.interim;
          first.interim = undefined;
          await this.#writeAll(interim);
          continue;
        }
        // Coalesce: this exchange's bytes, and those of finished ones behind it.
        const parts: Uint8Array[] = [];
        // Exchanges finished by this write are the first `done` of the queue.
        let done = 0;
        let taken = 0;
        for (let i = 0; i < this.#queue.length; i++) {
          const exchange = this.#queue.at(i)!;
          if (exchange.interim !== undefined && exchange !== first) break;
          exchange.written = exchange.takeInto(parts);
          taken = i + 1;
          if (!exchange.finished || exchange.file !== undefined) break;
          done++;
          if (exchange.close || exchange.broken) break;
        }
        if (parts.length === 1 || (parts.length > 1 && totalOf(parts) < COALESCE_LIMIT)) {
          // Usually one write takes it all: no #writeAll call (and promise) for it.
          const bytes = concat(parts);
          this.#writeDeadline = this.#options.clock.now + this.#options.writeTimeout;
          const n = await this.#conn.write(bytes);
          if (n < bytes.length) await this.#writeAll(bytes.subarray(n));
          this.#writeDeadline = Infinity;
        } else if (parts.length > 0) {
          await this.#writeParts(parts);
        }
        if (this.#closed) break;
        // Credit only what the client took: a client that does not read
        // holds its worker's stream at one window.
        for (let i = 0; i < taken; i++) {
          const exchange = this.#queue.at(i)!;
          if (exchange.written > 0) exchange.wrote(exchange.written);
          exchange.written = 0;
        }
        if (done === 0) {
          if (first.file !== undefined && first.finished) {
            const file = first.file;
            first.file = undefined;
            await this.#sendFile(file);
            continue;
          }
          if (parts.length === 0) break;
          continue;
        }
        for (let i = 0; i < done; i++) {
          const exchange = this.#queue.shift()!;
          this.#options.onResponse?.(exchange, exchange.remote || this.#remote);
          if (exchange.upgraded) {
            // Its 101 is written, and nothing was framed behind it.
            this.#upgrade(exchange);
            return;
          }
          if (exchange.close || exchange.broken) {
            this.close();
            return;
          }
        }
      }
    } catch {
      this.close();
      return;
    } finally {
      this.#writing = false;
    }
    if (this.#queue.length === 0) {
      if (!this.#reading && this.#receiving === undefined) {
        this.close();
        return;
      }
      if (this.#start === this.#end && this.#receiving === undefined) this.#setIdle();
    }
    this.#wake();
  }

  /** Turns the connection into the WebSocket of `exchange`, whose 101 is written. */
  #upgrade(exchange: Exchange): void {
    this.#phase = Phase.Waiting;
    this.#readDeadline = Infinity;
    const wire: SocketWire = {
      write: (parts) => this.#writeParts(parts),
      wake: () => this.#wake(),
      close: () => this.close(),
      closeWrite: () => {
        try {
          this.#conn.closeWrite();
        } catch {
          // The client is gone already; its read will say so.
        }
      },
    };
    const session = new WebSocketSession(exchange.job!, wire, this.#options, this.#counters);
    this.#websocket = session;
    exchange.upgrade(session.events);
    // Upgraded while the server drains: it goes away at once.
    if (!this.#reading) session.shutdown();
    // Frames the client sent right behind its handshake.
    this.#wake();
  }

  /**
   * Writes `parts` in order: small ones coalesced into one write, large ones
   * as they are, so streamed bodies are not copied once more on their way out.
   */
  async #writeParts(parts: Uint8Array[]): Promise<void> {
    let small: Uint8Array[] = [];
    let smallBytes = 0;
    for (const part of parts) {
      if (part.length >= COALESCE_LIMIT) {
        if (small.length > 0) await this.#writeAll(concat(small));
        small = [];
        smallBytes = 0;
        await this.#writeAll(part);
        continue;
      }
      small.push(part);
      smallBytes += part.length;
      if (smallBytes >= COALESCE_LIMIT) {
        await this.#writeAll(concat(small));
        small = [];
        smallBytes = 0;
      }
    }
    if (small.length > 0) await this.#writeAll(concat(small));
  }

  /** Writes all of `bytes`; a write that makes no progress for `writeTimeout` drops the client. */
  async #writeAll(bytes: Uint8Array): Promise<void> {
    let offset = 0;
    while (offset < bytes.length) {
      this.#writeDeadline = this.#options.clock.now + this.#options.writeTimeout;
      offset += await this.#conn.write(offset === 0 ? bytes : bytes.subarray(offset));
    }
    this.#writeDeadline = Infinity;
  }

  async #sendFile(file: { path: string; offset: number; length: number }): Promise<void> {
    using handle = await Deno.open(file.path, { read: true });
    if (file.offset > 0) await handle.seek(file.offset, Deno.SeekMode.Start);
    const chunk = new Uint8Array(Math.min(FILE_CHUNK, file.length));
    let left = file.length;
    while (left > 0) {
      const n = await handle.read(chunk.subarray(0, Math.min(chunk.length, left)));
      if (n === null) throw new Error(`Cannot send ${file.path}: it shrank while being sent`);
      await this.#writeAll(chunk.subarray(0, n));
      left -= n;
    }
  }
}
