/**
 * Request framing for the accept loop (RFC 9112 §6): finds where each request
 * ends in a connection's byte stream, so that only complete requests go to a
 * worker. It checks everything that decides a message's length (line
 * endings, field-name syntax, obs-fold, Content-Length, Transfer-Encoding),
 * because two parsers disagreeing on length is how requests get smuggled.
 * Everything else about the head is checked by the worker's `parseHead`.
 */

/** Size limits for one request. */
export interface FramingLimits {
  /** Longest request line in bytes, CRLF included; longer gets 414. */
  maxRequestLine: number;
  /** Longest head (request line and fields) in bytes; longer gets 431. */
  maxHead: number;
  /** Largest body in bytes, after chunked decoding; larger gets 413. */
  maxBody: number;
}

/** A complete request found in the buffer. Offsets are absolute. */
export interface FramedRequest {
  type: "request";
  /** Bytes of the head, without the final empty line's CRLF. */
  head: Uint8Array;
  /** The body bytes (decoded when chunked); empty when there is none. */
  body: Uint8Array;
  /** Where the next request starts. */
  next: number;
}

/** A request the server must refuse and then close the connection. */
export interface FramingError {
  type: "error";
  status: number;
  message: string;
}

/** The head is complete, the body is not, and the client asked `Expect: 100-continue`. */
export interface AwaitingBody {
  type: "continue";
}

const CR = 13;
const LF = 10;
const COLON = 58;
const MAX_CHUNK_LINE = 4096;

/** 1 for tchar bytes (RFC 9110 §5.6.2). */
const TCHAR = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") {
  TCHAR[c.charCodeAt(0)] = 1;
}
const HEX = new Int8Array(256).fill(-1);
for (let i = 0; i < 16; i++) {
  HEX["0123456789abcdef".charCodeAt(i)] = i;
  HEX["0123456789ABCDEF".charCodeAt(i)] = i;
}

const enum Body {
  None,
  Length,
  Chunked,
}

const enum Chunk {
  Size,
  Data,
  DataEnd,
  Trailer,
  Done,
}

/**
 * Incremental framer for one connection. Call {@linkcode Framer.next} with
 * the unconsumed bytes each time more arrive; it remembers how far it got, so
 * a head that arrives one byte at a time is scanned once.
 */
export class Framer {
  #limits: FramingLimits;

  // All offsets below are relative to the start of the current request.
  #lineStart = 0;
  #lineCount = 0;
  #headLength = -1;
  #bodyKind = Body.None;
  #contentLength = 0;
  #expectContinue = false;
  #continueSignalled = false;
  #contentLengthSeen = false;
  #transferEncoding = "";
  #http10 = false;

  // Chunked decoding state.
  #chunkState = Chunk.Size;
  #chunkPos = 0;
  #chunkRemaining = 0;
  #decoded = new Uint8Array(0);
  #decodedLength = 0;

  /** @param limits Size limits applied to every request. */
  constructor(limits: FramingLimits) {
    this.#limits = limits;
  }

  /** Whether part of a request has been seen (for timeouts: head vs. body). */
  get inHead(): boolean {
    return this.#headLength === -1;
  }

  /**
   * Bytes of empty lines to skip before a request line (RFC 9112 §2.2).
   * Only meaningful between requests.
   */
  leadingEmptyLines(buf: Uint8Array, start: number, end: number): number {
    let i = start;
    while (i < end) {
      if (buf[i] === LF) i++;
      else if (buf[i] === CR && i + 1 < end && buf[i + 1] === LF) i += 2;
      else break;
    }
    return i - start;
  }

  /**
   * Looks for one complete request in `buf[start, end)`.
   *
   * @returns The request, an error, a request for `100 Continue`, or `null`
   * when more bytes are needed.
   */
  next(
    buf: Uint8Array,
    start: number,
    end: number,
  ): FramedRequest | FramingError | AwaitingBody | null {
    if (this.#headLength === -1) {
      const error = this.#scanHead(buf, start, end);
      if (error) return error;
      if (this.#headLength === -1) return null;
    }
    const bodyStart = start + this.#headLength;
    let body: Uint8Array;
    let next: number;
    if (this.#bodyKind === Body.None) {
      body = buf.subarray(bodyStart, bodyStart);
      next = bodyStart;
    } else if (this.#bodyKind === Body.Length) {
      if (end - bodyStart < this.#contentLength) return this.#awaitBody();
      body = buf.subarray(bodyStart, bodyStart + this.#contentLength);
      next = bodyStart + this.#contentLength;
    } else {
      const result = this.#scanChunks(buf, bodyStart, end);
      if (result === null) return this.#awaitBody();
      if (typeof result === "object") return result;
      body = this.#decoded.subarray(0, this.#decodedLength);
      next = result;
    }
    // The head without its final empty line.
    const head = buf.subarray(start, bodyStart - 2);
    this.#reset();
    return { type: "request", head, body, next };
  }

  #awaitBody(): AwaitingBody | null {
    if (this.#expectContinue && !this.#continueSignalled) {
      this.#continueSignalled = true;
      return { type: "continue" };
    }
    return null;
  }

  #reset(): void {
    this.#lineStart = 0;
    this.#lineCount = 0;
    this.#headLength = -1;
    this.#bodyKind = Body.None;
    this.#contentLength = 0;
    this.#expectContinue = false;
    this.#continueSignalled = false;
    this.#contentLengthSeen = false;
    this.#transferEncoding = "";
    this.#http10 = false;
    this.#chunkState = Chunk.Size;
    this.#chunkPos = 0;
    this.#chunkRemaining = 0;
    this.#decodedLength = 0;
    // The decoded body was handed out; never write into it again.
    if (this.#decoded.length > 0) this.#decoded = new Uint8Array(0);
  }

  #scanHead(buf: Uint8Array, start: number, end: number): FramingError | undefined {
    const limits = this.#limits;
    let lineStart = start + this.#lineStart;
    while (true) {
      const lf = buf.indexOf(LF, lineStart);
      if (lf === -1 || lf >= end) {
        this.#lineStart = lineStart - start;
        const pending = end - lineStart;
        if (this.#lineCount === 0 && pending >= limits.maxRequestLine) {
          return error(414, "Request line too long");
        }
        if (end - start > limits.maxHead) return error(431, "Request header section too large");
        return undefined;
      }
      if (lf === lineStart || buf[lf - 1] !== CR) return error(400, "Bare LF in request head");
      const lineEnd = lf - 1; // index of CR
      if (lf + 1 - start > limits.maxHead) {
        return this.#lineCount === 0
          ? error(414, "Request line too long")
          : error(431, "Request header section too large");
      }
      if (this.#lineCount === 0) {
        if (lf + 1 - start > limits.maxRequestLine) return error(414, "Request line too long");
        if (lineEnd === lineStart) return error(400, "Empty request line");
        this.#http10 = lineEnd - lineStart >= 9 && endsWithHttp10(buf, lineEnd);
      } else if (lineEnd === lineStart) {
        // The empty line: the head is complete.
        this.#headLength = lf + 1 - start;
        return this.#decideBody();
      } else {
        const problem = this.#scanField(buf, lineStart, lineEnd);
        if (problem) return problem;
      }
      this.#lineCount++;
      lineStart = lf + 1;
    }
  }

  #scanField(buf: Uint8Array, start: number, end: number): FramingError | undefined {
    const first = buf[start];
    if (first === 0x20 || first === 0x09) return error(400, "Obsolete line folding");
    let colon = start;
    while (colon < end && TCHAR[buf[colon]] === 1) colon++;
    if (colon === start || colon === end || buf[colon] !== COLON) {
      return error(400, "Malformed header field");
    }
    for (let i = colon + 1; i < end; i++) {
      const b = buf[i];
      if ((b < 0x20 && b !== 0x09) || b === 0x7f) return error(400, "Invalid header value");
    }
    const nameLength = colon - start;
    if (nameLength === 14 && nameIs(buf, start, "content-length")) {
      if (this.#contentLengthSeen) return error(400, "Duplicate Content-Length");
      this.#contentLengthSeen = true;
      const value = trimmed(buf, colon + 1, end);
      if (value.length === 0 || value.length > 15) return error(400, "Invalid Content-Length");
      let length = 0;
      for (const b of value) {
        if (b < 0x30 || b > 0x39) return error(400, "Invalid Content-Length");
        length = length * 10 + (b - 0x30);
      }
      this.#contentLength = length;
    } else if (nameLength === 17 && nameIs(buf, start, "transfer-encoding")) {
      const value = String.fromCharCode(...trimmed(buf, colon + 1, end)).toLowerCase();
      this.#transferEncoding += this.#transferEncoding === "" ? value : "," + value;
    } else if (nameLength === 6 && nameIs(buf, start, "expect")) {
      const value = String.fromCharCode(...trimmed(buf, colon + 1, end)).toLowerCase();
      if (value === "100-continue") this.#expectContinue = true;
    }
    return undefined;
  }

  #decideBody(): FramingError | undefined {
    if (this.#transferEncoding !== "") {
      if (this.#contentLengthSeen) {
        return error(400, "Both Content-Length and Transfer-Encoding");
      }
      if (this.#http10) return error(400, "Transfer-Encoding in an HTTP/1.0 request");
      const codings = this.#transferEncoding.split(",").map((coding) => coding.trim());
      if (codings.at(-1) !== "chunked") {
        return error(400, "Transfer-Encoding must end with chunked");
      }
      for (let i = 0; i < codings.length - 1; i++) {
        if (codings[i] === "chunked") return error(400, "chunked applied more than once");
      }
      if (codings.length > 1) return error(501, `Unsupported transfer coding: ${codings[0]}`);
      this.#bodyKind = Body.Chunked;
      return undefined;
    }
    if (this.#contentLengthSeen) {
      if (this.#contentLength > this.#limits.maxBody) {
        return error(413, `Body larger than ${this.#limits.maxBody} bytes`);
      }
      this.#bodyKind = this.#contentLength > 0 ? Body.Length : Body.None;
    }
    return undefined;
  }

  /**
   * Decodes as much of a chunked body as is present.
   * @returns The absolute offset after the body when complete, `null` for
   * more, or an error.
   */
  #scanChunks(buf: Uint8Array, bodyStart: number, end: number): number | FramingError | null {
    let pos = bodyStart + this.#chunkPos;
    while (true) {
      switch (this.#chunkState) {
        case Chunk.Size: {
          const lf = buf.indexOf(LF, pos);
          if (lf === -1 || lf >= end) {
            if (end - pos > MAX_CHUNK_LINE) return error(413, "Chunk extension too large");
            return this.#pause(pos, bodyStart);
          }
          if (lf + 1 - pos > MAX_CHUNK_LINE) return error(413, "Chunk extension too large");
          if (lf === pos || buf[lf - 1] !== CR) return error(400, "Malformed chunk size line");
          let i = pos;
          let size = 0;
          while (i < lf - 1 && HEX[buf[i]] !== -1) {
            size = size * 16 + HEX[buf[i]];
            i++;
          }
          const digits = i - pos;
          if (digits === 0 || digits > 16) return error(400, "Malformed chunk size");
          if (i < lf - 1) {
            // Only chunk extensions may follow: BWS ";" ...
            let j = i;
            while (j < lf - 1 && (buf[j] === 0x20 || buf[j] === 0x09)) j++;
            if (buf[j] !== 0x3b) return error(400, "Malformed chunk size");
            for (let k = j; k < lf - 1; k++) {
              if (buf[k] === CR || buf[k] === 0 || buf[k] === LF) {
                return error(400, "Malformed chunk extension");
              }
            }
          }
          if (this.#decodedLength + size > this.#limits.maxBody) {
            return error(413, `Body larger than ${this.#limits.maxBody} bytes`);
          }
          pos = lf + 1;
          if (size === 0) {
            this.#chunkState = Chunk.Trailer;
          } else {
            this.#chunkState = Chunk.Data;
            this.#chunkRemaining = size;
            this.#ensureDecoded(this.#decodedLength + size);
          }
          break;
        }
        case Chunk.Data: {
          const available = Math.min(end - pos, this.#chunkRemaining);
          if (available === 0) return this.#pause(pos, bodyStart);
          this.#decoded.set(buf.subarray(pos, pos + available), this.#decodedLength);
          this.#decodedLength += available;
          this.#chunkRemaining -= available;
          pos += available;
          if (this.#chunkRemaining === 0) this.#chunkState = Chunk.DataEnd;
          break;
        }
        case Chunk.DataEnd: {
          if (end - pos < 2) return this.#pause(pos, bodyStart);
          if (buf[pos] !== CR || buf[pos + 1] !== LF) {
            return error(400, "Chunk data not followed by CRLF");
          }
          pos += 2;
          this.#chunkState = Chunk.Size;
          break;
        }
        case Chunk.Trailer: {
          const lf = buf.indexOf(LF, pos);
          if (lf === -1 || lf >= end) {
            if (end - pos > this.#limits.maxHead) return error(431, "Trailer section too large");
            return this.#pause(pos, bodyStart);
          }
          if (lf === pos || buf[lf - 1] !== CR) return error(400, "Bare LF in trailer section");
          if (lf - 1 === pos) {
            this.#chunkState = Chunk.Done;
            return lf + 1;
          }
          // Trailer fields are read and discarded, but must be well formed.
          const problem = checkTrailer(buf, pos, lf - 1);
          if (problem) return problem;
          if (lf + 1 - bodyStart > this.#limits.maxBody + this.#limits.maxHead) {
            return error(431, "Trailer section too large");
          }
          pos = lf + 1;
          break;
        }
        case Chunk.Done:
          return pos;
      }
    }
  }

  #pause(pos: number, bodyStart: number): null {
    this.#chunkPos = pos - bodyStart;
    return null;
  }

  #ensureDecoded(size: number): void {
    if (size <= this.#decoded.length) return;
    const grown = new Uint8Array(Math.max(size, this.#decoded.length * 2, 1024));
    grown.set(this.#decoded.subarray(0, this.#decodedLength));
    this.#decoded = grown;
  }
}

function checkTrailer(buf: Uint8Array, start: number, end: number): FramingError | undefined {
  if (buf[start] === 0x20 || buf[start] === 0x09) return error(400, "Obsolete line folding");
  let colon = start;
  while (colon < end && TCHAR[buf[colon]] === 1) colon++;
  if (colon === start || colon === end || buf[colon] !== COLON) {
    return error(400, "Malformed trailer field");
  }
  return undefined;
}

function error(status: number, message: string): FramingError {
  return { type: "error", status, message };
}

function nameIs(buf: Uint8Array, start: number, lower: string): boolean {
  for (let i = 0; i < lower.length; i++) {
    if ((buf[start + i] | 0x20) !== lower.charCodeAt(i)) return false;
  }
  return true;
}

function trimmed(buf: Uint8Array, start: number, end: number): Uint8Array {
  while (start < end && (buf[start] === 0x20 || buf[start] === 0x09)) start++;
  while (end > start && (buf[end - 1] === 0x20 || buf[end - 1] === 0x09)) end--;
  return buf.subarray(start, end);
}

function endsWithHttp10(buf: Uint8Array, lineEnd: number): boolean {
  const s = " HTTP/1.0";
  for (let i = 0; i < s.length; i++) {
    if (buf[lineEnd - s.length + i] !== s.charCodeAt(i)) return false;
  }
  return true;
}
