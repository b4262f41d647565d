/**
 * The request wire grammar (RFC 9112, RFC 9110), checked in this one place, on
 * the main thread: where each request's head ends, whether it is valid, and
 * where its body ends. A connection feeds bytes to a {@linkcode Framer} and
 * gets events back: a complete, validated head; body bytes as they arrive
 * (decoded when chunked); the end of the body; or an error to answer before
 * closing. Only valid heads ever reach a worker, and a head is validated
 * before any of its body is read.
 *
 * Every scan here is linear in the bytes received: a line that arrives one
 * byte at a time is searched once (each search starts where the last one
 * stopped, and stops at the bytes received), and each complete line is
 * checked once.
 */

import { isomorphicDecode, trimOWS } from "../_shared/http.ts";

/** Size limits for one request. */
export interface FramingLimits {
  /** Longest request line in bytes, CRLF included; longer gets 414. */
  maxRequestLine: number;
  /** Longest head (request line and fields) in bytes; longer gets 431. */
  maxHead: number;
  /** Largest body in bytes, after chunked decoding; larger gets 413. */
  maxBody: number;
}

/** A validated request head. */
export interface RequestHead {
  method: string;
  /** The path and query: from origin-form or absolute-form; `*` for asterisk-form. */
  path: string;
  /** From the absolute-form target, else from the Host field; may be empty for HTTP/1.0. */
  host: string;
  /** 0 for HTTP/1.0, 1 for HTTP/1.1 and later 1.x. */
  minor: number;
  /** Field names lower-cased and values trimmed: [name, value, name, value, …]. */
  fields: string[];
  /** Whether the connection may stay open after this exchange. */
  keepAlive: boolean;
  /** Whether a body follows. */
  hasBody: boolean;
  /** Whether the client waits for `100 Continue` before sending the body. */
  expectContinue: boolean;
  /** The request line as received, for the log. */
  requestLine: string;
  /** A valid WebSocket opening handshake (RFC 6455 §4.2.1). */
  websocket: boolean;
}

/** What {@linkcode Framer.next} found. */
export type FrameEvent =
  | { type: "head"; head: RequestHead }
  /** Body bytes: a view into the caller's buffer, valid until it is reused. */
  | { type: "body"; bytes: Uint8Array }
  | { type: "end" }
  /** A request to refuse, then close the connection; `headers` go with the answer. */
  | { type: "error"; status: number; message: string; headers?: string[] };

const CR = 13;
const LF = 10;
const COLON = 58;
const SP = 0x20;
const HTAB = 0x09;
const MAX_CHUNK_LINE = 4096;
/** What a line search returns for a CR not followed by LF. */
const BARE_CR = -2;
/** Largest request line kept for the log of a refused request. */
const LOGGED_LINE = 256;

/** 1 for tchar bytes (RFC 9110 §5.6.2). */
const TCHAR = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") {
  TCHAR[c.charCodeAt(0)] = 1;
}
/** 1 for bytes allowed in a request-target: visible ASCII but `#`. */
const TARGET = new Uint8Array(256);
for (let b = 0x21; b <= 0x7e; b++) TARGET[b] = b === 0x23 ? 0 : 1;
/** 1 for bytes allowed in a field value: HTAB, SP, VCHAR, obs-text. */
const FIELD_VALUE = new Uint8Array(256);
FIELD_VALUE[HTAB] = 1;
for (let b = 0x20; b <= 0xff; b++) FIELD_VALUE[b] = b === 0x7f ? 0 : 1;
/** 1 for bytes of a host name we accept: unreserved characters (no `%`). */
const HOST_CHAR = new Uint8Array(256);
for (const c of "-._~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") {
  HOST_CHAR[c.charCodeAt(0)] = 1;
}
const HEX = new Int8Array(256).fill(-1);
for (let i = 0; i < 16; i++) {
  HEX["0123456789abcdef".charCodeAt(i)] = i;
  HEX["0123456789ABCDEF".charCodeAt(i)] = i;
}
/** A `Sec-WebSocket-Key`: 16 bytes in base64, 24 characters ending in `==`. */
const WEBSOCKET_KEY = /^[A-Za-z0-9+/]{21}[AQgw]==$/;
/** Methods the Fetch standard upper-cases in `new Request()`. */
const FETCH_NORMALIZED = new Set(["DELETE", "GET", "HEAD", "OPTIONS", "POST", "PUT"]);

const enum State {
  Head,
  Length,
  /** The Content-Length body is complete: report its end. */
  LengthEnd,
  ChunkSize,
  ChunkData,
  ChunkDataEnd,
  Trailer,
}

/**
 * Incremental framer for one connection. Call {@linkcode Framer.next} with the
 * unconsumed bytes each time more arrive, and advance past
 * {@linkcode Framer.consumed} bytes after each event.
 */
export class Framer {
  #limits: FramingLimits;
  #state = State.Head;
  /** Bytes the last call to next() consumed. */
  consumed = 0;

  // Head scanning, relative to the start of the unconsumed bytes.
  #scanned = 0;
  #lines = 0;
  /** Bytes after the current line's start already searched for its LF. */
  #searched = 0;

  // Body state.
  #remaining = 0;
  #decoded = 0;
  #overhead = 0;
  #maxOverhead: number;

  /** @param limits Size limits applied to every request. */
  constructor(limits: FramingLimits) {
    this.#limits = limits;
    // Chunk sizes, extensions and trailers are bounded apart from the payload,
    // generously enough for tiny chunks with extensions.
    this.#maxOverhead = 2 * limits.maxBody + 65536;
  }

  /** Whether the framer is between requests or inside a head. */
  get inHead(): boolean {
    return this.#state === State.Head;
  }

  /**
   * Looks for the next event in `buf[start, end)`.
   *
   * @returns An event, or `null` when more bytes are needed. After an event,
   * {@linkcode Framer.consumed} says how many bytes it used.
   */
  next(buf: Uint8Array, start: number, end: number): FrameEvent | null {
    this.consumed = 0;
    switch (this.#state) {
      case State.Head:
        return this.#head(buf, start, end);
      case State.Length: {
        const n = Math.min(end - start, this.#remaining);
        if (n === 0) return null;
        this.#remaining -= n;
        this.consumed = n;
        if (this.#remaining === 0) this.#state = State.LengthEnd;
        return { type: "body", bytes: buf.subarray(start, start + n) };
      }
      case State.LengthEnd:
        this.#reset();
        return { type: "end" };
      default:
        return this.#chunked(buf, start, end);
    }
  }

  #reset(): void {
    this.#state = State.Head;
    this.#scanned = 0;
    this.#lines = 0;
    this.#searched = 0;
    this.#remaining = 0;
    this.#decoded = 0;
    this.#overhead = 0;
  }

  #head(buf: Uint8Array, start: number, end: number): FrameEvent | null {
    const limits = this.#limits;
    // Empty lines before a request line are allowed (RFC 9112 §2.2), but
    // count toward the head: they cannot keep a connection alive forever.
    let lineStart = start + this.#scanned;
    while (true) {
      const lf = this.#lineEnd(buf, lineStart, end);
      if (lf === BARE_CR) return refuse(400, "Bare CR in request head");
      if (lf === -1) {
        this.#scanned = lineStart - start;
        if (this.#lines === 0 && end - lineStart >= limits.maxRequestLine) {
          return refuse(414, "Request line too long");
        }
        if (end - start > limits.maxHead) return refuse(431, "Request header section too large");
        return null;
      }
      if (lf === lineStart || buf[lf - 1] !== CR) return refuse(400, "Bare LF in request head");
      if (lf + 1 - start > limits.maxHead) {
        return this.#lines === 0
          ? refuse(414, "Request line too long")
          : refuse(431, "Request header section too large");
      }
      const empty = lf - 1 === lineStart;
      if (this.#lines === 0) {
        if (empty) {
          lineStart = lf + 1;
          continue;
        }
        if (lf + 1 - lineStart > limits.maxRequestLine) return refuse(414, "Request line too long");
      } else if (empty) {
        const headStart = start + this.#scanned0(buf, start);
        const event = this.#parse(buf, headStart, lf - 1);
        // A refused head stays in the buffer: its line goes to the log.
        this.consumed = event.type === "error" ? 0 : lf + 1 - start;
        return event;
      }
      this.#lines++;
      lineStart = lf + 1;
    }
  }

  /**
   * The index of the LF ending the line that starts at `lineStart`; -1 if it
   * has not arrived in `buf[lineStart, end)`; {@linkcode BARE_CR} if a CR in
   * the line is not followed by LF (RFC 9112 §2.2: it would end the line
   * early for the parser). Bytes searched by an earlier call for the same
   * line are not searched again.
   */
  #lineEnd(buf: Uint8Array, lineStart: number, end: number): number {
    for (let i = lineStart + this.#searched; i < end; i++) {
      const b = buf[i];
      if (b === LF) {
        this.#searched = 0;
        return i;
      }
      if (b === CR) {
        if (i + 1 === end) {
          // Its next byte has not arrived: look at this CR again next time.
          this.#searched = i - lineStart;
          return -1;
        }
        if (buf[i + 1] !== LF) return BARE_CR;
      }
    }
    this.#searched = end - lineStart;
    return -1;
  }

  /** Length of the leading empty lines, which were already checked. */
  #scanned0(buf: Uint8Array, start: number): number {
    let i = start;
    while (buf[i] === CR && buf[i + 1] === LF) i += 2;
    return i - start;
  }

  /**
   * Parses a complete head: `buf[start, end)` is its lines, CRLF-separated.
   * The bytes are checked here; the strings are slices of the head decoded
   * once (one byte is one character, so the offsets agree).
   */
  #parse(buf: Uint8Array, start: number, end: number): FrameEvent {
    const text = isomorphicDecode(buf.subarray(start, end));
    const str = (from: number, to: number) => text.slice(from - start, to - start);
    let lineEnd = start;
    while (lineEnd < end && buf[lineEnd] !== CR) lineEnd++;
    const line = this.#requestLine(buf, start, lineEnd, str);
    if ("type" in line) return line;
    const { method, minor, targetStart, targetEnd } = line;

    const fields: string[] = [];
    let host: string | undefined;
    let hosts = 0;
    let contentLength = -1;
    let transferEncoding = "";
    let sawTransferEncoding = false;
    let connection = "";
    let expectContinue = false;
    let upgrade = "";
    let websocketKeys = 0;
    let websocketKey = "";
    let websocketVersion = "";
    let pos = lineEnd + 2;
    while (pos < end) {
      let eol = pos;
      while (eol < end && buf[eol] !== CR) eol++;
      if (buf[pos] === SP || buf[pos] === HTAB) return refuse(400, "Obsolete line folding");
      let colon = pos;
      while (colon < eol && TCHAR[buf[colon]] === 1) colon++;
      if (colon === pos || colon === eol || buf[colon] !== COLON) {
        return refuse(400, "Malformed header field");
      }
      let valueStart = colon + 1;
      let valueEnd = eol;
      while (valueStart < valueEnd && (buf[valueStart] === SP || buf[valueStart] === HTAB)) {
        valueStart++;
      }
      while (valueEnd > valueStart && (buf[valueEnd - 1] === SP || buf[valueEnd - 1] === HTAB)) {
        valueEnd--;
      }
      for (let i = valueStart; i < valueEnd; i++) {
        if (FIELD_VALUE[buf[i]] === 0) return refuse(400, "Invalid header value");
      }
      const name = str(pos, colon).toLowerCase();
      const value = str(valueStart, valueEnd);
      fields.push(name, value);
      switch (name) {
        case "host":
          hosts++;
          host = value;
          break;
        case "content-length": {
          if (contentLength !== -1) return refuse(400, "Duplicate Content-Length");
          contentLength = parseLength(value);
          if (contentLength < 0) return refuse(400, "Invalid Content-Length");
          break;
        }
        case "transfer-encoding":
          transferEncoding += (sawTransferEncoding ? "," : "") + value.toLowerCase();
          sawTransferEncoding = true;
          break;
        case "connection":
          connection += "," + value.toLowerCase();
          break;
        case "expect":
          if (value.toLowerCase() === "100-continue") expectContinue = true;
          break;
        case "upgrade":
          upgrade += "," + value.toLowerCase();
          break;
        case "sec-websocket-key":
          websocketKeys++;
          websocketKey = value;
          break;
        case "sec-websocket-version":
          // Listed twice, it is no longer exactly "13".
          websocketVersion += websocketVersion === "" ? value : `,${value}`;
          break;
      }
      pos = eol + 2;
    }

    // Framing first: it decides where the next request starts.
    let hasBody = false;
    // Present at all, even empty, it decides the framing: an empty value is refused below.
    if (sawTransferEncoding) {
      if (contentLength !== -1) return refuse(400, "Both Content-Length and Transfer-Encoding");
      if (minor === 0) return refuse(400, "Transfer-Encoding in an HTTP/1.0 request");
      // Empty list elements do not count (RFC 9110 §5.6.1).
      const codings = transferEncoding.split(",").map(trimOWS)
        .filter((coding) => coding !== "");
      if (codings.at(-1) !== "chunked") {
        return refuse(400, "Transfer-Encoding must end with chunked");
      }
      for (let i = 0; i < codings.length - 1; i++) {
        if (codings[i] === "chunked") return refuse(400, "chunked applied more than once");
      }
      if (codings.length > 1) return refuse(501, "Unsupported transfer coding");
      this.#state = State.ChunkSize;
      hasBody = true;
    } else if (contentLength > 0) {
      if (contentLength > this.#limits.maxBody) {
        return refuse(413, `Body larger than ${this.#limits.maxBody} bytes`);
      }
      this.#state = State.Length;
      this.#remaining = contentLength;
      hasBody = true;
    }

    if (hosts > 1) return this.#fail(400, "Duplicate Host header");
    if (host !== undefined && host !== lastHost) {
      if (!isHost(host, false)) return this.#fail(400, "Invalid Host header");
      lastHost = host;
    }
    if (minor === 1 && host === undefined) return this.#fail(400, "Missing Host header");

    let path: string;
    if (buf[targetStart] === 0x2f) {
      path = str(targetStart, targetEnd);
    } else if (targetEnd - targetStart === 1 && buf[targetStart] === 0x2a && method === "OPTIONS") {
      path = "*";
    } else {
      const absolute = absoluteForm(str(targetStart, targetEnd));
      if (absolute === undefined) return this.#fail(400, "Malformed request target");
      host = absolute.host;
      path = absolute.path;
    }

    const keepAlive = minor === 1
      ? !hasToken(connection, "close")
      : hasToken(connection, "keep-alive") && !hasToken(connection, "close");
    const websocket = hasToken(upgrade, "websocket");
    if (websocket) {
      // RFC 6455 §4.2.1: a handshake the server cannot take gets 400.
      if (method !== "GET" || minor !== 1 || hasBody) {
        return this.#fail(400, "A WebSocket handshake must be an HTTP/1.1 GET without a body");
      }
      if (!hasToken(connection, "upgrade")) {
        return this.#fail(400, "A WebSocket handshake must say Connection: upgrade");
      }
      if (websocketVersion !== "13") {
        return this.#fail(400, "Only WebSocket version 13 is supported", [
          "sec-websocket-version: 13",
        ]);
      }
      if (websocketKeys !== 1 || !WEBSOCKET_KEY.test(websocketKey)) {
        return this.#fail(400, "Sec-WebSocket-Key must be 16 bytes in base64");
      }
    }
    if (!hasBody) this.#reset();
    return {
      type: "head",
      head: {
        method,
        path,
        host: host ?? "",
        minor,
        fields,
        keepAlive,
        hasBody,
        expectContinue: expectContinue && hasBody && minor === 1,
        requestLine: str(start, lineEnd),
        websocket,
      },
    };
  }

  /** A refusal after the framing was understood: the body is not read either. */
  #fail(status: number, message: string, headers?: string[]): FrameEvent {
    this.#reset();
    return { ...refuse(status, message), headers };
  }

  #requestLine(
    buf: Uint8Array,
    start: number,
    end: number,
    str: (from: number, to: number) => string,
  ) {
    let sp1 = start;
    while (sp1 < end && TCHAR[buf[sp1]] === 1) sp1++;
    if (sp1 === start || sp1 === end || buf[sp1] !== SP) {
      return refuse(
        400,
        sp1 === start || sp1 === end ? "Malformed request line" : "Malformed method",
      );
    }
    let sp2 = sp1 + 1;
    while (sp2 < end && TARGET[buf[sp2]] === 1) sp2++;
    if (sp2 === sp1 + 1 || sp2 === end || buf[sp2] !== SP) {
      return refuse(400, "Malformed request target");
    }
    // "HTTP/" DIGIT "." DIGIT, exactly.
    const v = sp2 + 1;
    if (
      end - v !== 8 || buf[v] !== 0x48 || buf[v + 1] !== 0x54 || buf[v + 2] !== 0x54 ||
      buf[v + 3] !== 0x50 || buf[v + 4] !== 0x2f || !isDigit(buf[v + 5]) || buf[v + 6] !== 0x2e ||
      !isDigit(buf[v + 7])
    ) {
      return refuse(400, "Malformed HTTP version");
    }
    if (buf[v + 5] !== 0x31) return refuse(505, "Only HTTP/1.x is supported");
    return {
      method: str(start, sp1),
      minor: buf[v + 7] === 0x30 ? 0 : 1,
      targetStart: sp1 + 1,
      targetEnd: sp2,
    };
  }

  #chunked(buf: Uint8Array, start: number, end: number): FrameEvent | null {
    let pos = start;
    const limits = this.#limits;
    while (true) {
      switch (this.#state) {
        case State.ChunkSize: {
          const lf = this.#lineEnd(buf, pos, end);
          if (lf === BARE_CR) return refuse(400, "Malformed chunk extension");
          if (lf === -1) {
            if (end - pos > MAX_CHUNK_LINE) return refuse(413, "Chunk extension too large");
            return this.#more(pos, start);
          }
          if (lf + 1 - pos > MAX_CHUNK_LINE) return refuse(413, "Chunk extension too large");
          if (lf === pos || buf[lf - 1] !== CR) return refuse(400, "Malformed chunk size line");
          let i = pos;
          let size = 0;
          while (i < lf - 1 && HEX[buf[i]] !== -1) {
            size = size * 16 + HEX[buf[i]];
            i++;
          }
          const digits = i - pos;
          if (digits === 0 || digits > 16) return refuse(400, "Malformed chunk size");
          if (i < lf - 1) {
            // Only chunk extensions may follow: BWS ";" ...
            let j = i;
            while (j < lf - 1 && (buf[j] === SP || buf[j] === HTAB)) j++;
            if (buf[j] !== 0x3b) return refuse(400, "Malformed chunk size");
            for (let k = j; k < lf - 1; k++) {
              if (FIELD_VALUE[buf[k]] === 0) return refuse(400, "Malformed chunk extension");
            }
          }
          if (this.#decoded + size > limits.maxBody) {
            return refuse(413, `Body larger than ${limits.maxBody} bytes`);
          }
          this.#overhead += lf + 3 - pos;
          if (this.#overhead > this.#maxOverhead) return refuse(413, "Chunk metadata too large");
          pos = lf + 1;
          if (size === 0) {
            this.#state = State.Trailer;
          } else {
            this.#state = State.ChunkData;
            this.#remaining = size;
          }
          break;
        }
        case State.ChunkData: {
          const n = Math.min(end - pos, this.#remaining);
          if (n === 0) return this.#more(pos, start);
          this.#remaining -= n;
          this.#decoded += n;
          if (this.#remaining === 0) this.#state = State.ChunkDataEnd;
          this.consumed = pos + n - start;
          return { type: "body", bytes: buf.subarray(pos, pos + n) };
        }
        case State.ChunkDataEnd: {
          if (end - pos < 2) return this.#more(pos, start);
          if (buf[pos] !== CR || buf[pos + 1] !== LF) {
            return refuse(400, "Chunk data not followed by CRLF");
          }
          pos += 2;
          this.#state = State.ChunkSize;
          break;
        }
        case State.Trailer: {
          const lf = this.#lineEnd(buf, pos, end);
          if (lf === BARE_CR) return refuse(400, "Bare CR in trailer section");
          if (lf === -1) {
            if (end - pos > limits.maxHead) return refuse(431, "Trailer section too large");
            return this.#more(pos, start);
          }
          if (lf === pos || buf[lf - 1] !== CR) return refuse(400, "Bare LF in trailer section");
          this.#overhead += lf + 1 - pos;
          if (lf - 1 === pos) {
            this.consumed = lf + 1 - start;
            this.#reset();
            return { type: "end" };
          }
          // Trailer fields are read and discarded, but must be well formed.
          if (buf[pos] === SP || buf[pos] === HTAB) return refuse(400, "Obsolete line folding");
          let colon = pos;
          while (colon < lf - 1 && TCHAR[buf[colon]] === 1) colon++;
          if (colon === pos || buf[colon] !== COLON) return refuse(400, "Malformed trailer field");
          for (let k = colon + 1; k < lf - 1; k++) {
            if (FIELD_VALUE[buf[k]] === 0) return refuse(400, "Invalid trailer value");
          }
          if (this.#overhead > this.#maxOverhead) return refuse(431, "Trailer section too large");
          pos = lf + 1;
          break;
        }
        default:
          throw new Error(`Cannot frame a chunked body, received state ${this.#state}`);
      }
    }
  }

  /** Consumes the metadata scanned so far and asks for more bytes. */
  #more(pos: number, start: number): null {
    this.consumed = pos - start;
    return null;
  }
}

function refuse(
  status: number,
  message: string,
): { type: "error"; status: number; message: string } {
  return { type: "error", status, message };
}

function isDigit(b: number): boolean {
  return b >= 0x30 && b <= 0x39;
}

/** A Content-Length value: 1 to 15 digits; -1 when invalid. */
function parseLength(value: string): number {
  if (value.length === 0 || value.length > 15) return -1;
  let length = 0;
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return -1;
    length = length * 10 + (c - 0x30);
  }
  return length;
}

/** Whether a comma-separated list (lower-cased) holds `token`. */
function hasToken(list: string, token: string): boolean {
  if (list === "") return false;
  for (const item of list.split(",")) {
    if (trimOWS(item) === token) return true;
  }
  return false;
}

/**
 * The last `Host` field that passed {@linkcode isHost}: a keep-alive client
 * sends the same one with every request, and checking it again costs about
 * a microsecond of the main thread's time.
 */
let lastHost: string | undefined;

/**
 * Whether `value` is a host the server accepts (RFC 9110 §7.2), and one that
 * WHATWG URL parsing agrees with: a bracketed IPv6 literal, a dotted IPv4
 * address, or a name of unreserved characters whose last label is not
 * numeric, then an optional port up to 65535.
 */
function isHost(value: string, requireName: boolean): boolean {
  let end = value.length;
  const colon = value.lastIndexOf(":");
  if (colon !== -1 && value.indexOf("]", colon) === -1) {
    const port = value.slice(colon + 1);
    if (port.length > 5) return false;
    for (let i = 0; i < port.length; i++) if (!isDigit(port.charCodeAt(i))) return false;
    if (port.length > 0 && Number(port) > 65535) return false;
    end = colon;
  }
  const name = value.slice(0, end);
  if (name === "") return !requireName && colon === -1 && value === "";
  if (name.charCodeAt(0) === 0x5b) {
    if (name.charCodeAt(name.length - 1) !== 0x5d) return false;
    try {
      new URL(`http://${name}/`);
      return true;
    } catch {
      return false;
    }
  }
  for (let i = 0; i < name.length; i++) if (HOST_CHAR[name.charCodeAt(i)] !== 1) return false;
  const labels = name.split(".");
  const last = labels.at(-1) === "" ? labels.at(-2) : labels.at(-1);
  if (last !== undefined && /^(?:0x[0-9a-f]*|[0-9]+)$/i.test(last)) {
    // A numeric last label makes the whole name an IPv4 address.
    if (labels.length !== 4) return false;
    return labels.every((label) => /^(?:0|[1-9][0-9]{0,2})$/.test(label) && Number(label) <= 255);
  }
  return true;
}

/** Splits an absolute-form target into host and path; `undefined` if malformed. */
function absoluteForm(target: string): { host: string; path: string } | undefined {
  const match = /^https?:\/\//i.exec(target);
  if (match === null) return undefined;
  const rest = target.slice(match[0].length);
  let slash = rest.length;
  for (let i = 0; i < rest.length; i++) {
    const c = rest.charCodeAt(i);
    if (c === 0x2f || c === 0x3f) {
      slash = i;
      break;
    }
  }
  const host = rest.slice(0, slash);
  if (!isHost(host, true)) return undefined;
  let path = rest.slice(slash);
  if (path === "") path = "/";
  else if (path.charCodeAt(0) !== 0x2f) path = "/" + path;
  return { host, path };
}

/** Whether `new Request()` would rename or refuse this method, so the server answers 501 itself. */
export function isUnservableMethod(method: string): boolean {
  const upper = method.toUpperCase();
  if (upper === "CONNECT" || upper === "TRACE" || upper === "TRACK") return true;
  return upper !== method && FETCH_NORMALIZED.has(upper);
}

/** Bytes of `line` kept for the log of a refused request. */
export function loggedRequestLine(buf: Uint8Array, start: number, end: number): string {
  let stop = Math.min(end, start + LOGGED_LINE);
  const cr = buf.indexOf(CR, start);
  if (cr !== -1 && cr < stop) stop = cr;
  return isomorphicDecode(buf.subarray(start, stop));
}
