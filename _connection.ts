/**
 * One client connection on the main thread: reads bytes, frames requests,
 * hands complete ones to the dispatcher, and writes responses back in request
 * order. It never waits on a worker while the client is still sending, and it
 * stops reading when too many responses are outstanding, so memory per
 * connection stays bounded.
 */

import { answerOverloaded, type Dispatcher, Pending } from "./_dispatch.ts";
import { Framer, type FramingLimits } from "./_framing.ts";
import { encoder, isomorphicDecode, plainResponse, textResponse } from "./_http.ts";
import { Queue } from "./_queue.ts";
import { REQUEST_LAST } from "./_wire.ts";

/** Limits and timeouts for every connection. */
export interface ConnectionOptions extends FramingLimits {
  /** Requests served on one connection before it closes. */
  maxRequests: number;
  /** Milliseconds for a whole request head to arrive. */
  headTimeout: number;
  /** Milliseconds a request body may stall between reads. */
  bodyTimeout: number;
  /** Milliseconds an idle keep-alive connection stays open. */
  idleTimeout: number;
  /** Milliseconds a response write may stall before the client is dropped. */
  writeTimeout: number;
  /** Responses a connection may have outstanding before it stops reading. */
  maxPipeline: number;
  /** A clock in milliseconds that the server advances a few times a second. */
  clock: { now: number };
  /** Answers `GET /_brigade/stats` on the main thread, if set. */
  stats: (() => string) | undefined;
  /** Called with each finished exchange, for the access log. */
  onResponse: ((pending: Pending, remote: string) => void) | undefined;
}

const STATS_REQUEST = encoder.encode("GET /_brigade/stats HTTP/1.");
const CONTINUE = encoder.encode("HTTP/1.1 100 Continue\r\n\r\n");
const INITIAL_BUFFER = 4096;
const FILE_CHUNK = 64 * 1024;

const enum Phase {
  Idle,
  Head,
  Body,
  Waiting,
}

/** One accepted TCP connection. */
export class Connection {
  #conn: Deno.Conn;
  #dispatcher: Dispatcher;
  #options: ConnectionOptions;
  #onClose: (connection: Connection) => void;
  #framer: Framer;
  #remote: string;

  #buf = new Uint8Array(INITIAL_BUFFER);
  #start = 0;
  #end = 0;
  #queue = new Queue<Pending>();
  #requests = 0;
  #reading = true;
  #writing = false;
  #closed = false;
  #resumeReading: (() => void) | undefined;

  #maxRaw: number;
  #phase = Phase.Idle;
  #readDeadline = Infinity;
  #writeDeadline = Infinity;

  /**
   * @param conn The accepted socket; this object owns and closes it.
   * @param dispatcher Where complete requests go.
   * @param options Limits and timeouts.
   * @param onClose Called once, after the socket is closed.
   */
  constructor(
    conn: Deno.Conn,
    dispatcher: Dispatcher,
    options: ConnectionOptions,
    onClose: (connection: Connection) => void,
  ) {
    this.#conn = conn;
    this.#dispatcher = dispatcher;
    this.#options = options;
    this.#onClose = onClose;
    this.#framer = new Framer(options);
    this.#maxRaw = options.maxHead + 2 * options.maxBody + 65536;
    const addr = conn.remoteAddr as Deno.NetAddr;
    this.#remote = addr.hostname ?? "-";
    this.#setIdle();
    void this.#readLoop();
  }

  /** Whether responses are still owed to the client. */
  get busy(): boolean {
    return this.#queue.length > 0;
  }

  /** Enforces this connection's deadlines; called a few times a second. */
  sweep(now: number): void {
    if (this.#closed) return;
    if (now > this.#writeDeadline) {
      // The client stopped reading its responses: drop it.
      this.close();
    } else if (now > this.#readDeadline) {
      if (this.#phase === Phase.Idle) {
        this.close();
      } else {
        this.#stopReading();
        this.#enqueueAnswer(plainResponse(408, "Request timed out", { close: true }), 408);
      }
    }
  }

  /**
   * Stops taking requests; closes now if idle, else once owed responses are written.
   */
  drain(): void {
    this.#stopReading();
    if (this.#queue.length === 0 && !this.#writing) this.close();
  }

  /** Closes the socket at once; owed responses are dropped. Safe to call twice. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#reading = false;
    this.#readDeadline = this.#writeDeadline = Infinity;
    for (const pending of this.#queue.drain()) pending.cancelled = true;
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
    this.#readDeadline = Infinity;
  }

  #setIdle(): void {
    this.#phase = Phase.Idle;
    this.#readDeadline = this.#options.clock.now + this.#options.idleTimeout;
  }

  async #readLoop(): Promise<void> {
    while (this.#reading) {
      if (this.#queue.length >= this.#options.maxPipeline) {
        // Backpressure: let the client read what it asked for first.
        await new Promise<void>((resolve) => this.#resumeReading = resolve);
        this.#resumeReading = undefined;
        continue;
      }
      if (this.#end === this.#buf.length) this.#makeRoom();
      let n: number | null;
      try {
        n = await this.#conn.read(this.#buf.subarray(this.#end));
      } catch {
        n = null;
      }
      if (this.#closed || !this.#reading) return;
      if (n === null) {
        // The client has gone (a half-close counts as gone, as in Node's
        // default): its queued requests are dropped, not run for nobody.
        this.close();
        return;
      }
      this.#end += n;
      this.#frame();
    }
  }

  #makeRoom(): void {
    const live = this.#end - this.#start;
    if (this.#start > 0 && live < this.#buf.length / 2) {
      this.#buf.copyWithin(0, this.#start, this.#end);
    } else {
      const grown = new Uint8Array(this.#buf.length * 2);
      grown.set(this.#buf.subarray(this.#start, this.#end));
      this.#buf = grown;
    }
    this.#start = 0;
    this.#end = live;
  }

  #frame(): void {
    const framer = this.#framer;
    const options = this.#options;
    while (this.#reading) {
      if (framer.inHead) this.#start += framer.leadingEmptyLines(this.#buf, this.#start, this.#end);
      if (this.#start === this.#end) {
        this.#start = this.#end = 0;
        if (this.#buf.length > INITIAL_BUFFER * 4) this.#buf = new Uint8Array(INITIAL_BUFFER);
        if (this.#queue.length === 0) {
          this.#setIdle();
        } else {
          this.#phase = Phase.Waiting;
          this.#readDeadline = Infinity;
        }
        return;
      }
      const framed = framer.next(this.#buf, this.#start, this.#end);
      if (framed === null) {
        if (this.#end - this.#start > this.#maxRaw) {
          // Chunk overhead (sizes, extensions) can dwarf the decoded body.
          this.#stopReading();
          this.#enqueueAnswer(plainResponse(413, "Request too large", { close: true }), 413);
          return;
        }
        const now = options.clock.now;
        if (framer.inHead) {
          if (this.#phase !== Phase.Head) {
            this.#phase = Phase.Head;
            this.#readDeadline = now + options.headTimeout;
          }
        } else {
          this.#phase = Phase.Body;
          this.#readDeadline = now + options.bodyTimeout;
        }
        return;
      }
      if (framed.type === "continue") {
        const pending = new Pending(this.#onReady, true);
        this.#queue.push(pending);
        pending.answer(CONTINUE, 100, false);
        continue;
      }
      if (framed.type === "error") {
        this.#stopReading();
        this.#enqueueAnswer(
          plainResponse(framed.status, framed.message, { close: true }),
          framed.status,
        );
        return;
      }
      this.#phase = Phase.Waiting;
      this.#readDeadline = Infinity;
      const last = ++this.#requests >= options.maxRequests;
      const pending = new Pending(this.#onReady);
      if (options.onResponse) {
        pending.requestLine = requestLine(framed.head);
        pending.startedAt = performance.now();
      }
      this.#queue.push(pending);
      if (options.stats && startsWith(framed.head, STATS_REQUEST)) {
        const json = options.stats();
        pending.answer(
          textResponse(200, json, "application/json", { headers: ["cache-control: no-store"] }),
          200,
          false,
          json.length,
        );
        this.#start = framed.next;
        continue;
      }
      if (!this.#dispatcher.submit(pending, framed.head, framed.body, last ? REQUEST_LAST : 0)) {
        answerOverloaded(pending, true);
        this.#stopReading();
        return;
      }
      this.#start = framed.next;
      if (last) this.#stopReading();
    }
  }

  #enqueueAnswer(bytes: Uint8Array, status: number): void {
    const pending = new Pending(this.#onReady);
    this.#queue.push(pending);
    pending.answer(bytes, status, true);
  }

  #onReady = (pending: Pending): void => {
    if (this.#closed || pending.cancelled) return;
    if (this.#queue.peek() === pending) void this.#pump();
  };

  /** Writes every response that is ready, in order. */
  async #pump(): Promise<void> {
    if (this.#writing) return;
    this.#writing = true;
    try {
      while (!this.#closed) {
        const first = this.#queue.peek();
        if (first === undefined || first.bytes === null) break;
        this.#queue.shift();
        // Coalesce responses that are ready back to back into one write.
        let out = first.bytes;
        const batch = [first];
        let last = first;
        while (!last.close && last.file === undefined) {
          const next = this.#queue.peek();
          if (next === undefined || next.bytes === null) break;
          this.#queue.shift();
          batch.push(next);
          last = next;
        }
        if (batch.length > 1) out = concat(batch);
        this.#writeDeadline = this.#options.clock.now + this.#options.writeTimeout;
        const written = await this.#conn.write(out);
        if (written < out.length) await this.#writeAll(out.subarray(written));
        this.#writeDeadline = Infinity;
        if (last.file) await this.#sendFile(last.file);
        if (this.#options.onResponse) {
          for (const pending of batch) {
            if (!pending.interim) this.#options.onResponse(pending, this.#remote);
          }
        }
        if (last.close) {
          this.close();
          return;
        }
      }
    } catch {
      this.close();
      return;
    } finally {
      this.#writing = false;
    }
    if (this.#queue.length === 0) {
      if (!this.#reading) {
        this.close();
        return;
      }
      if (this.#start === this.#end) this.#setIdle();
    }
    if (this.#queue.length < this.#options.maxPipeline) this.#resumeReading?.();
  }

  async #writeAll(bytes: Uint8Array): Promise<void> {
    this.#writeDeadline = this.#options.clock.now + this.#options.writeTimeout;
    let offset = 0;
    while (offset < bytes.length) {
      offset += await this.#conn.write(bytes.subarray(offset));
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
      if (n === null) throw new Error(`File ${file.path} shrank while being sent`);
      await this.#writeAll(chunk.subarray(0, n));
      left -= n;
    }
  }
}

function concat(batch: Pending[]): Uint8Array {
  let length = 0;
  for (const pending of batch) length += pending.bytes!.length;
  const out = new Uint8Array(length);
  let offset = 0;
  for (const pending of batch) {
    out.set(pending.bytes!, offset);
    offset += pending.bytes!.length;
  }
  return out;
}

function startsWith(bytes: Uint8Array, prefix: Uint8Array): boolean {
  if (bytes.length < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (bytes[i] !== prefix[i]) return false;
  return true;
}

function requestLine(head: Uint8Array): string {
  const end = head.indexOf(13);
  return isomorphicDecode(head.subarray(0, end === -1 ? head.length : end));
}
