/**
 * WebSocket clients for the tests: Deno's built-in `WebSocket` with its events
 * turned into promises, and a raw one over TCP that sends exact frames
 * (fragments, bad ones, unmasked ones) and reads exactly what comes back.
 */

import { within } from "./_process.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The ws: URL of `path` on `server`. */
export function wsUrl(server: { url: string }, path: string): string {
  return new URL(path, server.url.replace(/^http/, "ws")).href;
}

/** Deno's WebSocket, with its messages queued and its close as a promise. */
export class Client {
  readonly socket: WebSocket;
  /** Settles with the close event, whoever closed. */
  readonly closed: Promise<CloseEvent>;
  #messages: unknown[] = [];
  #waiting: ((data: unknown) => void) | undefined;

  private constructor(socket: WebSocket) {
    this.socket = socket;
    socket.binaryType = "arraybuffer";
    socket.onmessage = (event) => {
      if (this.#waiting) {
        this.#waiting(event.data);
        this.#waiting = undefined;
      } else this.#messages.push(event.data);
    };
    this.closed = new Promise((resolve) => socket.onclose = resolve);
  }

  /** Connects; resolves once open, rejects if the handshake fails. */
  static async open(url: string, protocols?: string[]): Promise<Client> {
    const client = new Client(new WebSocket(url, protocols));
    const opened = new Promise<void>((resolve, reject) => {
      client.socket.onopen = () => resolve();
      client.socket.onerror = (event) => reject(new Error((event as ErrorEvent).message));
    });
    await opened;
    return client;
  }

  /** The next message's data. */
  next(): Promise<unknown> {
    if (this.#messages.length > 0) return Promise.resolve(this.#messages.shift());
    return within(new Promise((resolve) => this.#waiting = resolve), "the next message");
  }

  /** Sends `data` and returns the next message (an echo). */
  async echo(data: string | Uint8Array): Promise<unknown> {
    this.socket.send(data);
    return await this.next();
  }

  /** Closes and waits for the close handshake to finish. */
  async close(code?: number, reason?: string): Promise<CloseEvent> {
    this.socket.close(code, reason);
    return await this.closed;
  }
}

/** A frame as the raw client reads it. */
export interface Frame {
  fin: boolean;
  opcode: number;
  payload: Uint8Array;
}

/** Options for {@linkcode frame}. */
export interface FrameOptions {
  fin?: boolean;
  /** Client frames must be masked; false sends one that is not. */
  mask?: boolean;
}

/** A client frame: masked (with a fixed mask) unless asked otherwise. */
export function frame(
  opcode: number,
  payload: string | Uint8Array,
  options: FrameOptions = {},
): Uint8Array {
  const bytes = typeof payload === "string" ? encoder.encode(payload) : payload;
  const mask = options.mask ?? true;
  const size = bytes.length < 126 ? 2 : bytes.length < 65536 ? 4 : 10;
  const out = new Uint8Array(size + (mask ? 4 : 0) + bytes.length);
  out[0] = ((options.fin ?? true) ? 0x80 : 0) | opcode;
  const view = new DataView(out.buffer);
  if (size === 2) out[1] = bytes.length;
  else if (size === 4) {
    out[1] = 126;
    view.setUint16(2, bytes.length);
  } else {
    out[1] = 127;
    view.setBigUint64(2, BigInt(bytes.length));
  }
  if (!mask) {
    out.set(bytes, size);
    return out;
  }
  out[1] |= 0x80;
  const key = [0x12, 0x34, 0x56, 0x78];
  out.set(key, size);
  for (let i = 0; i < bytes.length; i++) out[size + 4 + i] = bytes[i] ^ key[i & 3];
  return out;
}

/** A close frame's payload: code, then reason. */
export function closePayload(code: number, reason = ""): Uint8Array {
  const text = encoder.encode(reason);
  const out = new Uint8Array(2 + text.length);
  new DataView(out.buffer).setUint16(0, code);
  out.set(text, 2);
  return out;
}

/** The code and reason of a close frame. */
export function closeOf(frame: Frame | null): { code: number; reason: string } {
  if (frame === null || frame.opcode !== 0x8) {
    throw new Error(`Expected a close frame, received ${frame ? `opcode ${frame.opcode}` : "EOF"}`);
  }
  const view = new DataView(frame.payload.buffer, frame.payload.byteOffset);
  return { code: view.getUint16(0), reason: decoder.decode(frame.payload.subarray(2)) };
}

/** The standard handshake's header lines (without the request line). */
export const HANDSHAKE = "Host: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";

/**
 * How long {@linkcode RawSocket.closedByServer} waits for the end of the
 * connection: well under the server's 5 s close timeout, so a server that
 * leaves the connection open after its close frame, and only cuts it at that
 * timeout, is caught.
 */
export const CLOSED_WITHIN_MS = 2000;

/** A WebSocket over a raw TCP connection. */
export class RawSocket {
  readonly conn: Deno.Conn;
  /** The 101's head, as text. */
  head = "";
  #buf = new Uint8Array(0);

  private constructor(conn: Deno.Conn) {
    this.conn = conn;
  }

  /** Connects and sends `request` (a handshake by default); reads the response head. */
  static async connect(
    port: number,
    path = "/echo",
    request = `GET ${path} HTTP/1.1\r\n${HANDSHAKE}\r\n`,
  ): Promise<RawSocket> {
    const socket = new RawSocket(await Deno.connect({ hostname: "127.0.0.1", port }));
    await socket.write(encoder.encode(request));
    while (true) {
      const end = decoder.decode(socket.#buf).indexOf("\r\n\r\n");
      if (end !== -1) {
        socket.head = decoder.decode(socket.#buf.subarray(0, end + 4));
        socket.#buf = socket.#buf.subarray(end + 4);
        return socket;
      }
      if (!await socket.#fill()) throw new Error("closed before a response head");
    }
  }

  async write(bytes: Uint8Array): Promise<void> {
    let offset = 0;
    while (offset < bytes.length) offset += await this.conn.write(bytes.subarray(offset));
  }

  /**
   * The next frame, or `null` once the server has closed the connection;
   * rejects if neither comes within `limitMs`.
   */
  read(limitMs?: number): Promise<Frame | null> {
    return within(this.#read(), "the next frame", limitMs);
  }

  async #read(): Promise<Frame | null> {
    while (true) {
      const parsed = this.#parse();
      if (parsed) return parsed;
      if (!await this.#fill()) return null;
    }
  }

  /**
   * Whether the server ends the connection (after any frames, which are
   * skipped) within {@linkcode CLOSED_WITHIN_MS}: false if it is still open
   * then.
   */
  closedByServer(): Promise<boolean> {
    const end = (async () => {
      while (await this.#read() !== null) { /* skip */ }
    })();
    return within(end, "the server's close", CLOSED_WITHIN_MS).then(() => true, () => false);
  }

  close(): void {
    try {
      this.conn.close();
    } catch {
      // closed already
    }
  }

  /** Closes the socket at the end of a `using` scope. */
  [Symbol.dispose](): void {
    this.close();
  }

  async #fill(): Promise<boolean> {
    const chunk = new Uint8Array(65536);
    let n: number | null;
    try {
      n = await this.conn.read(chunk);
    } catch {
      n = null;
    }
    if (n === null) return false;
    const grown = new Uint8Array(this.#buf.length + n);
    grown.set(this.#buf);
    grown.set(chunk.subarray(0, n), this.#buf.length);
    this.#buf = grown;
    return true;
  }

  #parse(): Frame | null {
    const b = this.#buf;
    if (b.length < 2) return null;
    let length = b[1] & 0x7f;
    let at = 2;
    const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
    if (length === 126) {
      if (b.length < 4) return null;
      length = view.getUint16(2);
      at = 4;
    } else if (length === 127) {
      if (b.length < 10) return null;
      length = Number(view.getBigUint64(2));
      at = 10;
    }
    if (b.length < at + length) return null;
    const frame = {
      fin: (b[0] & 0x80) !== 0,
      opcode: b[0] & 0x0f,
      payload: b.slice(at, at + length),
    };
    this.#buf = b.subarray(at + length);
    return frame;
  }
}
