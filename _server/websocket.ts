/**
 * A WebSocket (RFC 6455) on the main thread, once a handler's `101` has been
 * written. Frames from the client are parsed, checked and unmasked here, and
 * their messages go to the socket's worker whole (text already checked as
 * UTF-8); frames to the client come from the worker ready to write. Pings,
 * pongs, idle pings and the closing handshake are answered here, so a busy
 * worker never makes a client think the server is gone.
 *
 * The socket lives on the worker that upgraded it. Memory is bounded in
 * bytes: a message being assembled holds at most `maxMessage`; at most one
 * window of messages waits for the worker to take them (reading the socket
 * pauses meanwhile); and at most one window of frames from the worker waits
 * to be written (the worker sends no more until the client takes them).
 *
 * Every scan of client bytes here is linear: each byte is unmasked once and
 * copied once (twice for a message that arrives in several pieces).
 */

import type { Job } from "../pool.ts";
import type { ResponseEnd, ResponsePart, SocketPart } from "../_shared/protocol.ts";
import { encoder } from "../_shared/http.ts";
import { concat } from "./bytes.ts";
import type { ExchangeCounters, StreamEvents } from "./exchange.ts";

/** Limits for every WebSocket. */
export interface WebSocketOptions {
  /** Largest message in bytes, all its fragments together; larger gets close 1009. */
  wsMaxMessage: number;
  /**
   * Milliseconds without a byte from the client before a ping; a client
   * silent as long again after it is cut. 0: no pings.
   */
  wsPingInterval: number;
  /** A clock in milliseconds that the server advances a few times a second. */
  clock: { now: number };
}

/** What the socket needs of its connection. */
export interface SocketWire {
  /** Writes `parts` in order; rejects if the client is gone or stops reading. */
  write(parts: Uint8Array[]): Promise<void>;
  /** The socket may read again: credit arrived, or output drained. */
  wake(): void;
  /** Closes the connection. */
  close(): void;
  /** Closes our direction only: the client reads the end of the stream, and may still send. */
  closeWrite(): void;
}

/** Bytes of messages the worker may have untaken before reading pauses; frames it may send unwritten. */
const SOCKET_WINDOW = 64 << 10;
/** How long the client has to answer our close frame before the connection is cut. */
const CLOSE_TIMEOUT_MS = 5000;

const enum Op {
  Continuation = 0x0,
  Text = 0x1,
  Binary = 0x2,
  Close = 0x8,
  Ping = 0x9,
  Pong = 0xa,
}

const enum State {
  Open,
  /** Our close frame is out; waiting for the client's. */
  Closing,
  /** Done with the client: the connection closes once the output is written. */
  Closed,
  /**
   * Failed (a protocol error, a lost worker): our close frame, then the end
   * of our direction. What the client sends is read and dropped until it
   * closes too, so the close frame is not lost to a reset.
   */
  Failed,
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** One upgraded connection's WebSocket. */
export class WebSocketSession {
  #job: Job<ResponseEnd>;
  #wire: SocketWire;
  #options: WebSocketOptions;
  #counters: ExchangeCounters;
  #state = State.Open;
  /** The connection is gone (closed by us or the client). */
  #gone = false;
  /** The worker's socket has been told its end, or its job ended. */
  #workerDone = false;

  // The frame being read.
  #inFrame = false;
  #opcode = 0;
  #fin = false;
  #mask = new Uint8Array(4);
  #maskAt = 0;
  #remaining = 0;
  // The message being assembled from data frames.
  #inMessage = false;
  #text = false;
  #parts: Uint8Array<ArrayBuffer>[] = [];
  #messageBytes = 0;

  /** Message bytes sent to the worker and not yet taken by the app. */
  #inFlight = 0;
  #out: Uint8Array[] = [];
  /** Bytes in `#out`, and those of them that came from the worker (credited once written). */
  #outBytes = 0;
  #outFromWorker = 0;
  #writing = false;

  #lastHeard: number;
  #pingSentAt = 0;
  #closingSince = 0;

  /**
   * @param job The upgraded request's job, now the socket's stream.
   * @param wire The connection's writer.
   * @param options Limits.
   * @param counters Server-wide counts: open sockets.
   */
  constructor(
    job: Job<ResponseEnd>,
    wire: SocketWire,
    options: WebSocketOptions,
    counters: ExchangeCounters,
  ) {
    this.#job = job;
    this.#wire = wire;
    this.#options = options;
    this.#counters = counters;
    this.#lastHeard = options.clock.now;
    counters.websockets++;
  }

  /** Receives the job's events from its exchange. */
  events: StreamEvents = {
    onPart: (part) => this.#fromWorker(part),
    onCredit: (bytes) => {
      this.#inFlight -= bytes;
      if (this.#inFlight < SOCKET_WINDOW) this.#wire.wake();
    },
    onEnd: (failed) => {
      this.#workerDone = true;
      // The worker died: its sockets close with 1011. A socket still open
      // when its job ends (it should not be) is closed the same way.
      if (failed || this.#state === State.Open) this.#fail(1011, "The socket's worker ended");
    },
  };

  /** Whether to read more bytes: the worker keeps up, and our output drains. */
  get mayRead(): boolean {
    if (this.#state === State.Failed) return true;
    return this.#state !== State.Closed && this.#inFlight < SOCKET_WINDOW &&
      this.#outBytes < SOCKET_WINDOW;
  }

  /**
   * Reads frames from `buf[start, end)`, bytes the client sent.
   *
   * @returns How many bytes were consumed; the rest (part of a frame head
   * or of a control frame) is offered again with more.
   */
  receive(buf: Uint8Array, start: number, end: number): number {
    if (end > start) {
      this.#lastHeard = this.#options.clock.now;
      this.#pingSentAt = 0;
    }
    let pos = start;
    // Once failed, the rest is dropped: what follows an error is not frames we can trust.
    while (pos < end && this.#state !== State.Failed && this.mayRead) {
      if (!this.#inFrame) {
        const head = this.#frameHead(buf, pos, end);
        if (head <= 0) break;
        pos += head;
        if (this.#opcode >= Op.Close) {
          // A control frame is whole in the buffer (it is at most 125 bytes).
          const payload = buf.subarray(pos, pos + this.#remaining);
          this.#unmask(payload);
          pos += this.#remaining;
          this.#inFrame = false;
          this.#control(payload);
          continue;
        }
      }
      const n = Math.min(end - pos, this.#remaining);
      const piece = buf.subarray(pos, pos + n);
      this.#unmask(piece);
      pos += n;
      this.#remaining -= n;
      if (this.#state === State.Open && n > 0) {
        this.#parts.push(piece.slice());
        this.#messageBytes += n;
      }
      if (this.#remaining === 0) {
        this.#inFrame = false;
        if (this.#fin) this.#deliver();
      }
    }
    return this.#state === State.Failed ? end - start : pos - start;
  }

  /** Enforces the idle ping and the closing deadline; called a few times a second. */
  sweep(now: number): void {
    if (this.#gone) return;
    const closing = this.#state === State.Closing || this.#state === State.Failed;
    if (closing && now - this.#closingSince > CLOSE_TIMEOUT_MS) {
      this.#wire.close();
      return;
    }
    const interval = this.#options.wsPingInterval;
    if (this.#state !== State.Open || interval === 0 || now - this.#lastHeard < interval) return;
    if (this.#pingSentAt === 0) {
      this.#pingSentAt = now;
      this.#write(controlFrame(Op.Ping, new Uint8Array(0)));
    } else if (now - this.#pingSentAt > interval) {
      // Silent through a whole ping interval after a ping: gone.
      this.#wire.close();
    }
  }

  /** The server is shutting down: close with 1001 (going away). */
  shutdown(): void {
    if (this.#state === State.Open) this.#startClose(1001, "The server is shutting down");
  }

  /** The connection closed: the worker's socket ends with 1006 unless it was told already. */
  lost(): void {
    if (this.#gone) return;
    this.#gone = true;
    this.#state = State.Closed;
    this.#out = [];
    this.#counters.websockets--;
    this.#tellWorker(1006, "", false);
  }

  /**
   * Parses a frame head at `pos`. Returns its length, 0 if it has not all
   * arrived (or a control frame's payload has not), or -1 when the frame is
   * refused (the socket is failing).
   */
  #frameHead(buf: Uint8Array, pos: number, end: number): number {
    if (end - pos < 2) return 0;
    const b0 = buf[pos];
    const b1 = buf[pos + 1];
    const fin = (b0 & 0x80) !== 0;
    const opcode = b0 & 0x0f;
    let length = b1 & 0x7f;
    const size = 2 + (length === 126 ? 2 : length === 127 ? 8 : 0) + 4;
    if (end - pos < size) return 0;
    if ((b0 & 0x70) !== 0) return this.#fail(1002, "Reserved bits set without an extension");
    if ((b1 & 0x80) === 0) return this.#fail(1002, "Client frames must be masked");
    if (length === 126) {
      length = (buf[pos + 2] << 8) | buf[pos + 3];
    } else if (length === 127) {
      // Anything past 2^32 is over every limit: it only needs to be seen as large.
      const high = (buf[pos + 2] << 24 | buf[pos + 3] << 16 | buf[pos + 4] << 8 | buf[pos + 5]) >>>
        0;
      const low = (buf[pos + 6] << 24 | buf[pos + 7] << 16 | buf[pos + 8] << 8 | buf[pos + 9]) >>>
        0;
      length = high > 0 ? Infinity : low;
    }
    if (opcode >= Op.Close) {
      if (opcode > Op.Pong) return this.#fail(1002, `Unknown opcode ${opcode}`);
      if (!fin || length > 125) return this.#fail(1002, "Control frames must be whole and short");
      if (end - pos < size + length) return 0;
    } else if (opcode > Op.Binary) {
      return this.#fail(1002, `Unknown opcode ${opcode}`);
    } else if ((opcode === Op.Continuation) !== this.#inMessage) {
      return this.#fail(
        1002,
        this.#inMessage ? "A new message inside a fragmented one" : "A continuation of nothing",
      );
    } else {
      if (this.#messageBytes + length > this.#options.wsMaxMessage) {
        return this.#fail(1009, `Messages are limited to ${this.#options.wsMaxMessage} bytes`);
      }
      if (opcode !== Op.Continuation) this.#text = opcode === Op.Text;
      this.#inMessage = !fin;
    }
    this.#mask.set(buf.subarray(pos + size - 4, pos + size));
    this.#maskAt = 0;
    this.#opcode = opcode;
    this.#fin = fin;
    this.#remaining = length;
    this.#inFrame = true;
    return size;
  }

  #unmask(bytes: Uint8Array): void {
    const mask = this.#mask;
    let at = this.#maskAt;
    for (let i = 0; i < bytes.length; i++) {
      bytes[i] ^= mask[at];
      at = (at + 1) & 3;
    }
    this.#maskAt = at;
  }

  /** A whole message arrived: to the worker, within the window. */
  #deliver(): void {
    const parts = this.#parts;
    const bytes = this.#messageBytes;
    this.#parts = [];
    this.#messageBytes = 0;
    this.#inMessage = false;
    if (this.#state !== State.Open) return;
    const data = concat(parts);
    this.#inFlight += bytes;
    if (!this.#text) {
      this.#send({ type: "binary", data }, [data.buffer]);
      return;
    }
    let text: string;
    try {
      text = strictUtf8.decode(data);
    } catch {
      this.#fail(1007, "Text messages must be UTF-8");
      return;
    }
    this.#send({ type: "text", data: text, bytes });
  }

  #control(payload: Uint8Array): void {
    switch (this.#opcode) {
      case Op.Ping:
        if (this.#state === State.Open) this.#write(controlFrame(Op.Pong, payload));
        return;
      case Op.Pong:
        return;
    }
    // Close: a code (or none), then a UTF-8 reason.
    let code = 1005;
    let reason = "";
    if (payload.length === 1) {
      this.#fail(1002, "A close frame's code must be two bytes");
      return;
    }
    if (payload.length >= 2) {
      code = (payload[0] << 8) | payload[1];
      if (!isSendableCode(code)) {
        this.#fail(1002, `Invalid close code ${code}`);
        return;
      }
      try {
        reason = strictUtf8.decode(payload.subarray(2));
      } catch {
        this.#fail(1007, "A close reason must be UTF-8");
        return;
      }
    }
    if (this.#state === State.Open) {
      // The client closes first: echo its code, as RFC 6455 §5.5.1 asks.
      this.#write(closeFrame(code, reason));
    }
    this.#state = State.Closed;
    this.#tellWorker(code, reason, true);
    this.#closeWhenWritten();
  }

  /** Starts the closing handshake: our close frame, then wait for the client's. */
  #startClose(code: number, reason: string): void {
    this.#state = State.Closing;
    this.#closingSince = this.#options.clock.now;
    this.#write(closeFrame(code, reason));
  }

  /**
   * Fails the connection (RFC 6455 §7.1.7): a close frame with `code`, the
   * worker's socket told at once, and the connection closed once it is out.
   *
   * @returns -1, for the frame parser to stop.
   */
  #fail(code: number, reason: string): number {
    if (this.#state === State.Closed || this.#state === State.Failed) return -1;
    if (this.#state === State.Open) this.#write(closeFrame(code, reason));
    this.#state = State.Failed;
    this.#closingSince = this.#options.clock.now;
    this.#tellWorker(code, reason, false);
    if (!this.#writing) this.#wire.closeWrite();
    return -1;
  }

  #fromWorker(part: ResponsePart): void {
    if (part.type === "data") {
      // After our close frame, nothing more may go out.
      if (this.#state !== State.Open) return;
      this.#outFromWorker += part.bytes.length;
      this.#write(part.bytes);
    } else if (part.type === "close" && this.#state === State.Open) {
      this.#startClose(part.code, part.reason);
    }
  }

  #send(part: SocketPart, transfer?: Transferable[]): void {
    if (!this.#workerDone) this.#job.send(part, transfer);
  }

  #tellWorker(code: number, reason: string, clean: boolean): void {
    if (this.#workerDone) return;
    this.#send({ type: "close", code, reason, clean });
    this.#workerDone = true;
  }

  #write(bytes: Uint8Array): void {
    if (this.#gone) return;
    this.#out.push(bytes);
    this.#outBytes += bytes.length;
    if (!this.#writing) void this.#flush();
  }

  async #flush(): Promise<void> {
    this.#writing = true;
    try {
      while (this.#out.length > 0 && !this.#gone) {
        const parts = this.#out;
        const written = this.#outBytes;
        const credit = this.#outFromWorker;
        this.#out = [];
        this.#outBytes = this.#outFromWorker = 0;
        await this.#wire.write(parts);
        // Credit only what the client took: a client that does not read
        // holds the app's sends at one window (its bufferedAmount grows).
        if (credit > 0 && !this.#workerDone) this.#job.credit(credit);
        if (written >= SOCKET_WINDOW) this.#wire.wake();
      }
    } catch {
      this.#wire.close();
      return;
    } finally {
      this.#writing = false;
    }
    if (this.#state === State.Closed) this.#wire.close();
    else if (this.#state === State.Failed) this.#wire.closeWrite();
  }

  #closeWhenWritten(): void {
    if (!this.#writing && this.#out.length === 0) this.#wire.close();
  }
}

/** Whether a close frame may carry `code` (RFC 6455 §7.4). */
function isSendableCode(code: number): boolean {
  if (code >= 3000 && code <= 4999) return true;
  return code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006;
}

/** An unmasked server control frame. */
function controlFrame(opcode: Op, payload: Uint8Array): Uint8Array {
  const frame = new Uint8Array(2 + payload.length);
  frame[0] = 0x80 | opcode;
  frame[1] = payload.length;
  frame.set(payload, 2);
  return frame;
}

/** A close frame; code 1005 means none (an empty payload). */
function closeFrame(code: number, reason: string): Uint8Array {
  if (code === 1005) return controlFrame(Op.Close, new Uint8Array(0));
  // A reason is at most 123 bytes: the worker and our own reasons keep to it.
  const text = encoder.encode(reason).subarray(0, 123);
  const payload = new Uint8Array(2 + text.length);
  payload[0] = code >> 8;
  payload[1] = code & 0xff;
  payload.set(text, 2);
  return controlFrame(Op.Close, payload);
}
