/**
 * A deliberately small HTTP/1.1 client over raw TCP for the tests: it sends
 * exact bytes and parses exactly what comes back, so tests can assert status
 * lines, framing, order, and whether the server closed the connection.
 */

export interface RawResponse {
  status: number;
  headers: Map<string, string>;
  body: string;
}

export interface Exchange {
  responses: RawResponse[];
  /** Whether the server closed the connection after the last response. */
  closed: boolean;
}

const decoder = new TextDecoder();
const encoder = new TextEncoder();

/** Options for {@linkcode exchange}. */
export interface ExchangeOptions {
  /** Stop after this many final responses unless the server closes first. */
  responses?: number;
  /** Also wait for the server to close; fails if it has not after `limitMs`. */
  awaitClose?: boolean;
  /** Methods whose responses have no body, in order (for HEAD). */
  headRequests?: boolean[];
  /** Safety net so a broken server fails the test instead of hanging it. */
  limitMs?: number;
}

/** Sends `request` on a fresh connection and reads the responses. */
export async function exchange(
  port: number,
  request: string | Uint8Array,
  options: ExchangeOptions = {},
): Promise<Exchange> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(typeof request === "string" ? encoder.encode(request) : request);
    return await readResponses(conn, options);
  } finally {
    try {
      conn.close();
    } catch {
      // closed already
    }
  }
}

/** Reads responses from an open connection (see {@linkcode exchange}). */
export async function readResponses(
  conn: Deno.Conn,
  options: ExchangeOptions = {},
): Promise<Exchange> {
  const wanted = options.responses ?? 1;
  const responses: RawResponse[] = [];
  let buffer = new Uint8Array(0);
  let closed = false;
  const chunk = new Uint8Array(65536);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const limit = new Promise<"limit">((resolve) => {
    timer = setTimeout(() => resolve("limit"), options.limitMs ?? 15_000);
  });
  try {
    while (true) {
      const parsed = parseAll(buffer, options.headRequests ?? [], responses.length);
      responses.push(...parsed.responses);
      buffer = buffer.slice(parsed.consumed);
      if (responses.length >= wanted && !options.awaitClose) break;
      const n = await Promise.race([conn.read(chunk).catch(() => null), limit]);
      if (n === "limit") throw new Error(`no answer within the limit; got ${responses.length}`);
      if (n === null) {
        closed = true;
        break;
      }
      const grown = new Uint8Array(buffer.length + n);
      grown.set(buffer);
      grown.set(chunk.subarray(0, n), buffer.length);
      buffer = grown;
    }
  } finally {
    clearTimeout(timer);
  }
  return { responses, closed };
}

function parseAll(bytes: Uint8Array, headRequests: boolean[], already: number) {
  const responses: RawResponse[] = [];
  let offset = 0;
  while (true) {
    const headEnd = indexOf(bytes, CRLFCRLF, offset);
    if (headEnd === -1) break;
    const lines = latin1(bytes.subarray(offset, headEnd)).split("\r\n");
    const status = Number(lines[0].split(" ")[1]);
    const headers = new Map<string, string>();
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(":");
      headers.set(line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim());
    }
    const bodyStart = headEnd + 4;
    const isHead = headRequests[already + responses.length] === true;
    const bodiless = isHead || status === 304 || status === 204 || status < 200;
    let body: Uint8Array;
    let next: number;
    if (!bodiless && headers.get("transfer-encoding") === "chunked") {
      const decoded = dechunk(bytes, bodyStart);
      if (decoded === undefined) break;
      ({ body, next } = decoded);
    } else {
      const length = bodiless ? 0 : Number(headers.get("content-length") ?? 0);
      if (bytes.length - bodyStart < length) break;
      body = bytes.subarray(bodyStart, bodyStart + length);
      next = bodyStart + length;
    }
    offset = next;
    if (status >= 200) responses.push({ status, headers, body: decoder.decode(body) });
    else if (status === 100) responses.push({ status, headers, body: "" });
  }
  return { responses, consumed: offset };
}

const CRLFCRLF = encoder.encode("\r\n\r\n");

function indexOf(bytes: Uint8Array, needle: Uint8Array, from: number): number {
  outer: for (let i = from; i <= bytes.length - needle.length; i++) {
    for (let j = 0; j < needle.length; j++) if (bytes[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

function latin1(bytes: Uint8Array): string {
  let text = "";
  for (const b of bytes) text += String.fromCharCode(b);
  return text;
}

/**
 * Decodes a chunked body that starts at `start`; `undefined` until the last
 * chunk and the final CRLF have arrived.
 */
export function dechunk(
  bytes: Uint8Array,
  start: number,
): { body: Uint8Array; next: number } | undefined {
  const parts: Uint8Array[] = [];
  let pos = start;
  while (true) {
    const lineEnd = indexOf(bytes, CRLF, pos);
    if (lineEnd === -1) return undefined;
    const size = parseInt(latin1(bytes.subarray(pos, lineEnd)), 16);
    pos = lineEnd + 2;
    if (size === 0) {
      if (bytes.length < pos + 2) return undefined;
      const body = new Uint8Array(parts.reduce((n, part) => n + part.length, 0));
      let at = 0;
      for (const part of parts) {
        body.set(part, at);
        at += part.length;
      }
      return { body, next: pos + 2 };
    }
    if (bytes.length < pos + size + 2) return undefined;
    parts.push(bytes.subarray(pos, pos + size));
    pos += size + 2;
  }
}

const CRLF = encoder.encode("\r\n");
