/**
 * The server's worker module: each pool job is a batch of framed requests.
 * For each one it parses the head, builds a web-standard `Request`, calls the
 * handler, and serializes the `Response` back to bytes. The handler is the
 * static app by default, or a user's module whose default export has
 * `fetch(request)` (the `deno serve` convention).
 *
 * @module
 */

import { ByteWriter } from "./_bytes.ts";
import {
  dateHeaderBytes,
  type HeadError,
  isomorphicDecode,
  parseHead,
  plainResponse,
  type RequestHead,
  STATUS_TEXT,
} from "./_http.ts";
import { type CachedResponse, createStaticApp, type StaticApp } from "./_static.ts";
import {
  type FileBody,
  REQUEST_FIELDS,
  REQUEST_LAST,
  type RequestBatch,
  RESPONSE_CLOSE,
  RESPONSE_FILE,
  type ResponseBatch,
  type WorkerConfig,
} from "./_wire.ts";
import { handleJobs, type JobContext, type Transfer, transfer } from "./pool.ts";

/** A request handler, as `Deno.serve` and `deno serve` modules take. */
export type Handler = (request: Request) => Response | Promise<Response>;

const CLOSE_LINE = new TextEncoder().encode("connection: close\r\n");
const KEEP_ALIVE_LINE = new TextEncoder().encode("connection: keep-alive\r\n");
const CRLF = new TextEncoder().encode("\r\n");
const CONDITIONAL_FIELDS = new Set([
  "if-none-match",
  "if-modified-since",
  "if-match",
  "if-unmodified-since",
  "if-range",
  "range",
]);
// Method names that the Fetch standard upper-cases in `new Request()`.
const FETCH_NORMALIZED = new Set(["DELETE", "GET", "HEAD", "OPTIONS", "POST", "PUT"]);
// Statuses whose responses never have a body (RFC 9110 §6.4.1).
const NO_BODY = new Set([204, 304]);

/** Collects one message's worth of responses. */
class Reply {
  #writer = new ByteWriter(1024);
  #index: number[] = [];
  #files: FileBody[] = [];
  #workerId: number;

  constructor(workerId: number) {
    this.#workerId = workerId;
  }

  get size(): number {
    return this.#index.length;
  }

  /** Starts a response; write its bytes with the writer, then call `end`. */
  get writer(): ByteWriter {
    return this.#writer;
  }

  end(request: number, start: number, status: number, flags: number, bodyBytes: number): void {
    this.#index.push(request, start, this.#writer.length - start, status, flags, bodyBytes);
  }

  file(body: FileBody): void {
    this.#files.push(body);
  }

  /** Hands over what was collected, marked to move rather than copy. */
  takeTransfer(): Transfer<ResponseBatch> {
    const batch = this.take();
    return transfer(batch, [batch.bytes.buffer, batch.index.buffer]);
  }

  take(): ResponseBatch {
    const batch: ResponseBatch = {
      bytes: this.#writer.take(),
      index: new Uint32Array(this.#index),
      files: this.#files,
      workerId: this.#workerId,
    };
    this.#index = [];
    this.#files = [];
    return batch;
  }
}

interface App {
  fetch: Handler;
  static?: StaticApp;
}

async function loadApp(config: WorkerConfig): Promise<App> {
  if (config.handler) {
    const module = await import(config.handler);
    const fetch = module.default?.fetch;
    if (typeof fetch !== "function") {
      throw new TypeError(
        `Cannot load handler: ${config.handler} must export default { fetch }, received ${typeof fetch}`,
      );
    }
    return { fetch: (request) => fetch.call(module.default, request) };
  }
  const app = await createStaticApp({ root: config.root, sleepMs: config.sleepMs });
  return { fetch: app.fetch, static: app };
}

function writeCached(
  reply: Reply,
  request: number,
  cached: CachedResponse,
  head: RequestHead,
  keepAlive: boolean,
): void {
  const writer = reply.writer;
  const start = writer.length;
  writer.write(cached.head);
  writer.write(dateHeaderBytes());
  if (!keepAlive) writer.write(CLOSE_LINE);
  else if (head.minor === 0) writer.write(KEEP_ALIVE_LINE);
  writer.write(CRLF);
  const bodyBytes = head.method === "HEAD" ? 0 : cached.body.length;
  if (bodyBytes > 0) writer.write(cached.body);
  reply.end(request, start, cached.status, keepAlive ? 0 : RESPONSE_CLOSE, bodyBytes);
}

function writeError(reply: Reply, request: number, error: HeadError, close = true): void {
  const start = reply.writer.length;
  const bytes = plainResponse(error.status, error.message, { close });
  reply.writer.write(bytes);
  reply.end(request, start, error.status, close ? RESPONSE_CLOSE : 0, error.message.length + 1);
}

async function serialize(
  reply: Reply,
  request: number,
  response: Response,
  head: RequestHead,
  keepAlive: boolean,
  app: App,
  maxBody: number,
): Promise<void> {
  const status = response.status;
  const file = app.static?.fileOf(response);
  let body: Uint8Array | undefined;
  if (file) {
    // Streamed by the main thread straight from disk; this stream is not needed.
    await response.body?.cancel();
  } else if (response.body !== null) {
    body = await readBody(response.body, maxBody);
  }
  const omitBody = head.method === "HEAD" || NO_BODY.has(status) || status < 200;
  let text = `HTTP/1.1 ${status} ${response.statusText || STATUS_TEXT[status] || "Unknown"}\r\n`;
  let declaredLength: string | null = null;
  for (const [name, value] of response.headers) {
    switch (name) {
      case "content-length":
        declaredLength = value;
        continue;
      case "connection":
      case "keep-alive":
      case "transfer-encoding":
      case "date":
        continue;
    }
    text += `${name}: ${value}\r\n`;
  }
  const bodyLength = file ? file.length : body?.length ?? 0;
  if (!NO_BODY.has(status) && status >= 200) {
    // A HEAD answer may declare the GET body's length without carrying it.
    const length = head.method === "HEAD" && declaredLength !== null && body === undefined
      ? declaredLength
      : String(bodyLength);
    text += `content-length: ${length}\r\n`;
  }
  if (!keepAlive) text += "connection: close\r\n";
  else if (head.minor === 0) text += "connection: keep-alive\r\n";
  const writer = reply.writer;
  const start = writer.length;
  writer.writeString(text);
  writer.write(dateHeaderBytes());
  writer.write(CRLF);
  let flags = keepAlive ? 0 : RESPONSE_CLOSE;
  let sent = 0;
  if (!omitBody) {
    if (file) {
      reply.file({ request, ...file });
      flags |= RESPONSE_FILE;
      sent = file.length;
    } else if (body && body.length > 0) {
      writer.write(body);
      sent = body.length;
    }
  }
  reply.end(request, start, status, flags, sent);
}

async function readBody(stream: ReadableStream<Uint8Array>, maxBody: number): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let length = 0;
  for await (const chunk of stream) {
    length += chunk.length;
    if (length > maxBody) {
      throw new RangeError(
        `Cannot send response: body is larger than ${maxBody} bytes, received ${length}`,
      );
    }
    chunks.push(chunk);
  }
  if (chunks.length === 1) return chunks[0];
  const body = new Uint8Array(length);
  let offset = 0;
  for (const chunk of chunks) {
    body.set(chunk, offset);
    offset += chunk.length;
  }
  return body;
}

function toRequest(head: RequestHead, body: Uint8Array): Request {
  const headers = new Headers();
  const fields = head.fields;
  for (let i = 0; i < fields.length; i += 2) {
    // The body arrives decoded and whole: its framing headers no longer apply.
    if (fields[i] === "transfer-encoding" || fields[i] === "content-length") continue;
    headers.append(fields[i], fields[i + 1]);
  }
  const hasBody = body.length > 0 && head.method !== "GET" && head.method !== "HEAD";
  const url = `http://${head.host || "localhost"}${head.path === "*" ? "/" : head.path}`;
  return new Request(url, {
    method: head.method,
    headers,
    body: hasBody ? body.slice() : undefined,
  });
}

function isConditional(head: RequestHead): boolean {
  const fields = head.fields;
  for (let i = 0; i < fields.length; i += 2) {
    if (CONDITIONAL_FIELDS.has(fields[i])) return true;
  }
  return false;
}

/**
 * Answers one batch. Synchronous answers go in the result; when some
 * requests wait on async handlers, the ready responses go out at once as
 * progress, so no response waits on a slower neighbour.
 */
function answerBatch(
  app: App,
  batch: RequestBatch,
  context: JobContext<ResponseBatch>,
  maxResponseBody: number,
): Transfer<ResponseBatch> | Promise<Transfer<ResponseBatch>> {
  const reply = new Reply(context.workerId);
  const { bytes, index } = batch;
  let pending = 0;
  let flushScheduled = false;
  let finish: (() => void) | undefined;

  const flush = () => {
    flushScheduled = false;
    if (pending === 0) {
      finish?.();
    } else if (reply.size > 0) {
      const { value, list } = reply.takeTransfer();
      context.progress(value, list);
    }
  };

  for (let i = 0; i < index.length; i += REQUEST_FIELDS) {
    const request = i / REQUEST_FIELDS;
    const offset = index[i];
    const headLength = index[i + 1];
    const bodyLength = index[i + 2];
    // An empty head marks a request whose client left while it was queued.
    if (headLength === 0) continue;
    const parsed = parseHead(isomorphicDecode(bytes.subarray(offset, offset + headLength)));
    if ("status" in parsed) {
      writeError(reply, request, parsed);
      continue;
    }
    const keepAlive = parsed.keepAlive && (index[i + 3] & REQUEST_LAST) === 0;
    if (FETCH_NORMALIZED.has(parsed.method.toUpperCase()) && !FETCH_NORMALIZED.has(parsed.method)) {
      // Methods are case-sensitive, but `new Request()` would turn "get"
      // into "GET": answer here, before the handler could be fooled.
      writeError(reply, request, { status: 501, message: "Method not implemented" }, !keepAlive);
      continue;
    }
    const cached = app.static?.fast(parsed.method, parsed.path, isConditional(parsed));
    if (cached) {
      writeCached(reply, request, cached, parsed, keepAlive);
      continue;
    }
    pending++;
    const body = bytes.subarray(offset + headLength, offset + headLength + bodyLength);
    respond(app, parsed, body).then(
      (response) => serialize(reply, request, response, parsed, keepAlive, app, maxResponseBody),
    ).catch((error) => {
      console.error(`Handler failed for ${parsed.method} ${parsed.target}:`, error);
      writeError(reply, request, { status: 500, message: "Internal Server Error" }, !keepAlive);
    }).finally(() => {
      pending--;
      if (!flushScheduled) {
        flushScheduled = true;
        queueMicrotask(flush);
      }
    });
  }

  if (pending === 0) return reply.takeTransfer();
  if (reply.size > 0) flush();
  return new Promise((resolve) => {
    finish = () => resolve(reply.takeTransfer());
  });
}

async function respond(
  app: App,
  head: RequestHead,
  body: Uint8Array,
): Promise<Response> {
  const response = await app.fetch(toRequest(head, body));
  if (!(response instanceof Response)) {
    throw new TypeError(
      `Cannot send response: handler must return a Response, received ${typeof response}`,
    );
  }
  return response;
}

handleJobs<RequestBatch, ResponseBatch, ResponseBatch, WorkerConfig>(async (config) => {
  const app = await loadApp(config);
  return (batch, context) => answerBatch(app, batch, context, config.maxResponseBody);
});
