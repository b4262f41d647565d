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
    const text = decoder.decode(bytes.subarray(offset));
    const headEnd = text.indexOf("\r\n\r\n");
    if (headEnd === -1) break;
    const lines = text.slice(0, headEnd).split("\r\n");
    const status = Number(lines[0].split(" ")[1]);
    const headers = new Map<string, string>();
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(":");
      headers.set(line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim());
    }
    const headBytes = encoder.encode(text.slice(0, headEnd + 4)).length;
    const isHead = headRequests[already + responses.length] === true;
    const length = isHead || status === 304 || status === 204 || status < 200
      ? 0
      : Number(headers.get("content-length") ?? 0);
    if (bytes.length - offset < headBytes + length) break;
    const body = decoder.decode(bytes.subarray(offset + headBytes, offset + headBytes + length));
    offset += headBytes + length;
    if (status >= 200) responses.push({ status, headers, body });
    else if (status === 100) responses.push({ status, headers, body: "" });
  }
  return { responses, consumed: offset };
}
