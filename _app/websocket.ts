/**
 * WebSocket on a worker: `upgradeWebSocket(request)`, as `Deno.upgradeWebSocket`
 * has it, and the socket the app gets. The main thread speaks RFC 6455 to the
 * client; this side frames the app's messages (the main thread writes the
 * bytes as they are), receives whole, checked messages, and keeps the socket's
 * state and events as the standard `WebSocket` does.
 *
 * The socket lives as its request's job, detached from the worker's
 * concurrency slots once the `101` is sent, until it closes.
 */

import type { JobContext } from "../_worker/jobs.ts";
import { encoder, isomorphicEncode, responseHead } from "../_shared/http.ts";
import type { ResponsePart, SocketPart } from "../_shared/protocol.ts";

/** RFC 6455 §1.3: appended to the client's key, then SHA-1 and base64. */
const ACCEPT_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/** A frame part smaller than this is copied to the main thread rather than moved. */
const TRANSFER_MIN = 16 << 10;

/** A handshake request's job, for `upgradeWebSocket` to take. */
export interface Handshake {
  context: JobContext<ResponsePart>;
  /** Bytes of frames the main thread takes before it credits them. */
  window: number;
  /** Most bytes the app may have sent and the client not yet taken. */
  maxBuffered: number;
}

/** Requests that are valid handshakes (the main thread checked them), until upgraded. */
const handshakes = new WeakMap<Request, Handshake>();
/** The `101` responses `upgradeWebSocket` made, and their sockets. */
const upgrades = new WeakMap<Response, BrigadeWebSocket>();

/** Lets `upgradeWebSocket(request)` upgrade `request`, a valid handshake. */
export function allowUpgrade(request: Request, handshake: Handshake): void {
  handshakes.set(request, handshake);
}

/** The socket behind a handler's response, if it is `upgradeWebSocket`'s `101`. */
export function socketOf(response: Response): BrigadeWebSocket | undefined {
  return upgrades.get(response);
}

/**
 * Upgrades a WebSocket handshake request, as `Deno.upgradeWebSocket` does
 * (brigade installs this function as `Deno.upgradeWebSocket` in its workers):
 * return `response` from the handler, and use `socket` as a standard
 * `WebSocket`. The socket opens once the handler has returned the response.
 *
 * @param request The handler's request; brigade has checked its handshake.
 * @param options `protocol`: the subprotocol to agree to, one the client offered.
 * @returns The socket, and the `101` response to return.
 * @throws {TypeError} If `request` is not a WebSocket handshake, was already
 * upgraded, or `protocol` is not one the client offered.
 */
export function upgradeWebSocket(
  request: Request,
  options: Deno.UpgradeWebSocketOptions = {},
): Deno.WebSocketUpgrade {
  const handshake = handshakes.get(request);
  if (handshake === undefined) {
    throw new TypeError(
      `Cannot upgrade to a WebSocket: not a WebSocket handshake, received ${request.method} ${
        request.headers.get("upgrade") ?? "without Upgrade"
      }`,
    );
  }
  const protocol = options.protocol ?? "";
  if (protocol !== "" && !offered(request).includes(protocol)) {
    throw new TypeError(
      `Cannot upgrade to a WebSocket: the protocol must be one the client offered, received ${protocol}`,
    );
  }
  handshakes.delete(request);
  const url = new URL(request.url);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  const key = request.headers.get("sec-websocket-key")!;
  const socket = new BrigadeWebSocket(handshake, url.href, protocol, key);
  const response = new Response(null, { status: 101 });
  upgrades.set(response, socket);
  return { socket: socket as unknown as WebSocket, response };
}

/** The subprotocols the client offered, in its order. */
function offered(request: Request): string[] {
  const list = request.headers.get("sec-websocket-protocol");
  if (list === null) return [];
  return list.split(",").map((item) => item.trim()).filter((item) => item !== "");
}

type Handler = ((event: Event) => unknown) | null;

/**
 * The app's end of a WebSocket, with the standard `WebSocket`'s API:
 * `send`, `close`, `readyState`, `binaryType`, `bufferedAmount`, `protocol`,
 * `url`, the `on…` handlers and events (`open`, `message`, `error`, `close`).
 *
 * `bufferedAmount` counts frame bytes the app has sent that the main thread
 * has not yet written to the client. The app may send ahead of a slow
 * client up to the server's limit; a send past it closes the socket with
 * 1008, and the message is dropped.
 */
export class BrigadeWebSocket extends EventTarget {
  static readonly CONNECTING = 0;
  static readonly OPEN = 1;
  static readonly CLOSING = 2;
  static readonly CLOSED = 3;
  readonly CONNECTING = 0;
  readonly OPEN = 1;
  readonly CLOSING = 2;
  readonly CLOSED = 3;
  readonly url: string;
  readonly protocol: string;
  readonly extensions = "";
  #origin: string;

  #context: JobContext<ResponsePart>;
  #maxBuffered: number;
  #key: string;
  #state = 0;
  #binaryType: BinaryType = "arraybuffer";
  #handlers = new Map<string, Handler>();
  /** Frames waiting for credit, in order (a Blob until it is read); the first may be partly sent. */
  #queue: (Uint8Array<ArrayBuffer> | Blob)[] = [];
  /** Bytes in `#queue` (a Blob's size until it is read). */
  #queued = 0;
  /** The Blob at the head of the queue being read. */
  #reading: Blob | undefined;
  /** Bytes sent to the main thread and not yet written to the client. */
  #unwritten = 0;
  #credit: number;
  /** The app's close, sent once the frames before it are. */
  #closing: { code: number; reason: string } | undefined;
  #ended = Promise.withResolvers<void>();

  constructor(handshake: Handshake, url: string, protocol: string, key: string) {
    super();
    this.#context = handshake.context;
    this.#maxBuffered = handshake.maxBuffered;
    this.#credit = handshake.window;
    this.url = url;
    this.#origin = new URL(url).origin;
    this.protocol = protocol;
    this.#key = key;
  }

  get readyState(): number {
    return this.#state;
  }

  get bufferedAmount(): number {
    return this.#queued + this.#unwritten;
  }

  get binaryType(): BinaryType {
    return this.#binaryType;
  }

  set binaryType(value: BinaryType) {
    // As the standard has it: other values are ignored.
    if (value === "arraybuffer" || value === "blob") this.#binaryType = value;
  }

  get onopen(): Handler {
    return this.#handler("open");
  }
  set onopen(handler: Handler) {
    this.#setHandler("open", handler);
  }
  get onmessage(): Handler {
    return this.#handler("message");
  }
  set onmessage(handler: Handler) {
    this.#setHandler("message", handler);
  }
  get onerror(): Handler {
    return this.#handler("error");
  }
  set onerror(handler: Handler) {
    this.#setHandler("error", handler);
  }
  get onclose(): Handler {
    return this.#handler("close");
  }
  set onclose(handler: Handler) {
    this.#setHandler("close", handler);
  }

  /** Sends a text or binary message; a Blob is read first, and what is sent after it waits. */
  send(data: string | ArrayBufferLike | ArrayBufferView | Blob): void {
    if (this.#state === this.CONNECTING) {
      throw new DOMException(
        "Cannot send on a WebSocket before it opens, received readyState 0 (CONNECTING)",
        "InvalidStateError",
      );
    }
    if (this.#state !== this.OPEN) return;
    let frame: Uint8Array<ArrayBuffer> | Blob;
    if (typeof data === "string") frame = dataFrame(0x1, encoder.encode(data));
    else if (data instanceof Blob) frame = data;
    else if (ArrayBuffer.isView(data)) {
      frame = dataFrame(0x2, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    } else if (data instanceof ArrayBuffer || data instanceof SharedArrayBuffer) {
      frame = dataFrame(0x2, new Uint8Array(data));
    } else {
      throw new TypeError(
        `Cannot send on a WebSocket: data must be a string, an ArrayBuffer, a view or a Blob, received ${typeof data}`,
      );
    }
    if (this.bufferedAmount + sizeOf(frame) > this.#maxBuffered) {
      // The client takes less than the app sends: give up on it.
      this.#queue = this.#queue.slice(0, this.#partlySent() ? 1 : 0);
      this.#queued = this.#queue.length > 0 ? sizeOf(this.#queue[0]) : 0;
      this.#close(1008, "The client does not keep up");
      return;
    }
    this.#queue.push(frame);
    this.#queued += sizeOf(frame);
    this.#flush();
  }

  /** Starts the closing handshake; `code` is 1000 or 3000–4999, `reason` at most 123 bytes. */
  close(code?: number, reason = ""): void {
    if (code !== undefined && code !== 1000 && (code < 3000 || code > 4999)) {
      throw new DOMException(
        `Cannot close a WebSocket: the code must be 1000 or 3000-4999, received ${code}`,
        "InvalidAccessError",
      );
    }
    if (encoder.encode(reason).length > 123) {
      throw new DOMException(
        `Cannot close a WebSocket: the reason must be at most 123 bytes, received ${reason.length} characters`,
        "SyntaxError",
      );
    }
    if (this.#state >= this.CLOSING) return;
    this.#close(code ?? 1005, reason);
  }

  /**
   * Sends the `101` and opens the socket: called with the handler's
   * response, once the handler returned it. Settles when the socket closes.
   *
   * @param fields Header lines of the handler's response to send along.
   */
  async accept(fields: string): Promise<void> {
    const context = this.#context;
    const digest = await crypto.subtle.digest("SHA-1", encoder.encode(this.#key + ACCEPT_GUID));
    let lines = `${fields}sec-websocket-accept: ${
      btoa(String.fromCharCode(...new Uint8Array(digest)))
    }\r\n`;
    if (this.protocol !== "") lines += `sec-websocket-protocol: ${this.protocol}\r\n`;
    const head = responseHead({
      status: 101,
      fields: lines,
      framing: "none",
      close: false,
      minor: 1,
      upgrade: "websocket",
    });
    context.send({
      type: "head",
      status: 101,
      bytes: isomorphicEncode(head),
      close: false,
      upgrade: true,
      workerId: context.workerId,
    });
    context.detach();
    context.onMessage = (message) => this.#receive(message as SocketPart);
    context.onCredit = (bytes) => {
      this.#credit += bytes;
      this.#unwritten -= bytes;
      this.#flush();
    };
    // The client left, or the socket's worker is shutting it: it ends abnormally.
    context.signal.addEventListener("abort", () => this.#end(1006, "", false), { once: true });
    if (this.#state === this.CONNECTING) {
      this.#state = this.OPEN;
      this.dispatchEvent(new Event("open"));
    }
    this.#flush();
    await this.#ended.promise;
  }

  #handler(type: string): Handler {
    return this.#handlers.get(type) ?? null;
  }

  /** An `on…` handler: one listener, added the first time, calling whatever is set now. */
  #setHandler(type: string, handler: Handler): void {
    if (!this.#handlers.has(type)) {
      this.addEventListener(type, (event) => this.#handlers.get(type)?.call(this, event));
    }
    this.#handlers.set(type, typeof handler === "function" ? handler : null);
  }

  #close(code: number, reason: string): void {
    this.#state = this.CLOSING;
    this.#closing = { code, reason };
    this.#flush();
  }

  #partlySent(): boolean {
    const first = this.#queue[0];
    return first instanceof Uint8Array && first.byteOffset > 0;
  }

  /** Reads the Blob at the head of the queue into its frame, then goes on sending. */
  #read(blob: Blob): void {
    if (this.#reading === blob) return;
    this.#reading = blob;
    blob.arrayBuffer().then((buffer) => {
      this.#reading = undefined;
      // Closed, or dropped meanwhile: nothing to send.
      if (this.#queue[0] !== blob) return;
      const frame = dataFrame(0x2, new Uint8Array(buffer));
      this.#queue[0] = frame;
      this.#queued += frame.length - blob.size;
      this.#flush();
    }, () => this.#close(1011, "A Blob could not be read"));
  }

  /** Sends what the credit allows, in order, then the close if one waits. */
  #flush(): void {
    if (this.#state === this.CONNECTING || this.#state === this.CLOSED) return;
    while (this.#queue.length > 0 && this.#credit > 0) {
      const frame = this.#queue[0];
      if (frame instanceof Blob) {
        this.#read(frame);
        break;
      }
      let bytes = frame;
      if (frame.length > this.#credit) {
        bytes = frame.slice(0, this.#credit);
        this.#queue[0] = frame.subarray(this.#credit);
      } else {
        this.#queue.shift();
      }
      this.#queued -= bytes.length;
      this.#credit -= bytes.length;
      this.#unwritten += bytes.length;
      const transfer = bytes.length >= TRANSFER_MIN ? [bytes.buffer] : undefined;
      this.#context.send({ type: "data", bytes }, transfer);
    }
    if (this.#queue.length === 0 && this.#closing !== undefined) {
      this.#context.send({ type: "close", ...this.#closing });
      this.#closing = undefined;
    }
  }

  #receive(part: SocketPart): void {
    switch (part.type) {
      case "text":
        if (this.#state === this.OPEN) this.#message(part.data);
        this.#context.credit(part.bytes);
        return;
      case "binary":
        if (this.#state === this.OPEN) {
          const bytes = part.data;
          this.#message(this.#binaryType === "blob" ? new Blob([bytes]) : bufferOf(bytes));
        }
        this.#context.credit(part.data.length);
        return;
      case "close":
        this.#end(part.code, part.reason, part.clean);
    }
  }

  #message(data: string | ArrayBuffer | Blob): void {
    this.dispatchEvent(new MessageEvent("message", { data, origin: this.#origin }));
  }

  /** The socket is closed: `error` first if it failed, then `close`. */
  #end(code: number, reason: string, clean: boolean): void {
    if (this.#state === this.CLOSED) return;
    this.#state = this.CLOSED;
    this.#queue = [];
    this.#queued = 0;
    if (!clean) this.dispatchEvent(new Event("error"));
    this.dispatchEvent(new CloseEvent("close", { code, reason, wasClean: clean }));
    this.#ended.resolve();
  }
}

function sizeOf(frame: Uint8Array | Blob): number {
  return frame instanceof Blob ? frame.size : frame.length;
}

/** The bytes as an `ArrayBuffer` of their own: the main thread moves each message's own buffer. */
function bufferOf(bytes: Uint8Array): ArrayBuffer {
  const buffer = bytes.buffer as ArrayBuffer;
  if (bytes.byteOffset === 0 && bytes.byteLength === buffer.byteLength) return buffer;
  return buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
}

/** An unmasked, unfragmented server frame. */
function dataFrame(opcode: number, payload: Uint8Array): Uint8Array<ArrayBuffer> {
  const length = payload.length;
  const size = length < 126 ? 2 : length < 65536 ? 4 : 10;
  const frame = new Uint8Array(size + length);
  frame[0] = 0x80 | opcode;
  if (size === 2) frame[1] = length;
  else if (size === 4) {
    frame[1] = 126;
    frame[2] = length >> 8;
    frame[3] = length & 0xff;
  } else {
    frame[1] = 127;
    // Lengths stay far below 2^32: the high four bytes are zero.
    new DataView(frame.buffer).setUint32(6, length);
  }
  frame.set(payload, size);
  return frame;
}
