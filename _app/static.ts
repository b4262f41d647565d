/**
 * The default request handler: the Rust Book's routes plus a careful static
 * file server. It is an ordinary `(Request) => Response` handler; the worker
 * may also call {@linkcode StaticApp.fast}, a shortcut that answers a plain
 * GET/HEAD of a small, recently checked file from memory without building a
 * `Request` or `Response` at all.
 */

import { encoder, STATUS_TEXT } from "../_shared/http.ts";
import type { FileSlice } from "../_shared/protocol.ts";
import { contentType } from "./media_types.ts";

/** Files up to this size are kept in memory; larger ones are streamed. */
export const MAX_CACHED_FILE = 1 << 20;
/** Most bytes kept in each worker's file cache: bodies, keys and overhead. */
const MAX_CACHE_BYTES = 64 << 20;
/** Bytes an entry costs beyond its body and key, for the cache's budget. */
const ENTRY_OVERHEAD = 256;
/** How long a cached file is trusted before it is stat()ed again. */
const REVALIDATE_MS = 1000;

/** Options for {@linkcode createStaticApp}. */
export interface StaticOptions {
  /** Directory to serve. */
  root: string;
  /** How long `GET /sleep` blocks its worker before answering, in milliseconds. */
  sleepMs: number;
  /** Blocks the worker's thread, as the book's `thread::sleep` does. */
  block: (ms: number) => Promise<void>;
  /** Sent as `Cache-Control` with every file response (200, 206, 304). */
  cacheControl?: string;
  /** `Access-Control-Allow-Origin: *` on every response, and CORS preflights answered. */
  cors?: boolean;
  /** A GET or HEAD for a missing path without a file extension serves the root's `index.html`. */
  spa?: boolean;
  /** A directory without `index.html` gets a streamed HTML listing instead of 404. */
  dirListing?: boolean;
}

/** A response kept ready to send: its status, header lines and body. */
export interface CachedResponse {
  status: number;
  /** Header lines, each `name: value\r\n`, without framing, date or connection. */
  fields: string;
  body: Uint8Array;
  /** The whole keep-alive HTTP/1.1 answer, built for the second whose date line is `wireDate`. */
  wire?: Uint8Array;
  wireDate?: string;
}

/** The static handler, with its shortcut. */
export interface StaticApp {
  /** Answers any request. */
  fetch(request: Request): Promise<Response>;
  /** Answers a plain GET/HEAD from memory, or returns `undefined`. */
  fast(
    method: string,
    path: string,
    conditional: boolean,
    acceptEncoding: string | undefined,
  ): CachedResponse | undefined;
  /** The file behind a streamed response, if `fetch` returned one. */
  fileOf(response: Response): FileSlice | undefined;
}

interface CacheEntry {
  cached: CachedResponse;
  checkedAt: number;
  realPath: string;
  mtime: number;
  size: number;
  /** An identity answer that a client accepting gzip or br should not get from the cache. */
  negotiable: boolean;
}

const ALLOW = "GET, HEAD, OPTIONS";
/** Content codings brigade serves, in order of preference. */
const CODINGS = ["br", "gzip"] as const;
type Coding = typeof CODINGS[number];
/** The file name suffix of each coding's precompressed sibling. */
const SUFFIX: Record<Coding, string> = { br: ".br", gzip: ".gz" };
/** Media types worth compressing: text, JSON and XML of any kind, SVG, WASM. */
const COMPRESSIBLE =
  /^(?:text\/|application\/(?:javascript|json|xml|wasm|[\w.-]+\+(?:json|xml))(?:;|$)|image\/svg\+xml)/;
/** Files this small are sent as they are. */
const MIN_COMPRESSED = 1024;
/** Rows of a directory listing produced per pull: the listing streams. */
const LISTING_ROWS = 256;
const KNOWN_METHODS = new Set(["POST", "PUT", "DELETE", "PATCH", "CONNECT", "TRACE"]);

/**
 * Builds the static handler for `root`.
 *
 * @throws {Deno.errors.NotFound} If `root` does not exist.
 */
export async function createStaticApp(options: StaticOptions): Promise<StaticApp> {
  const root = await Deno.realPath(options.root);
  const cache = new Map<string, CacheEntry>();
  let cacheBytes = 0;
  const reads = new Map<string, Promise<Uint8Array<ArrayBuffer>>>();
  const compressions = new Map<string, Promise<Uint8Array<ArrayBuffer>>>();
  const files = new WeakMap<Response, FileSlice>();

  async function notFound(method: string): Promise<Response> {
    let body: Uint8Array | string = "Not Found\n";
    let type = "text/plain; charset=utf-8";
    try {
      body = await Deno.readFile(`${root}/404.html`);
      type = "text/html; charset=utf-8";
    } catch {
      // No 404 page in this root: plain text will do.
    }
    return new Response(method === "HEAD" ? null : body as BodyInit, {
      status: 404,
      headers: {
        "content-type": type,
        "content-length": String(body.length),
      },
    });
  }

  function plain(status: number, message: string, headers: Record<string, string> = {}) {
    return new Response(`${message}\n`, {
      status,
      headers: { "content-type": "text/plain; charset=utf-8", ...headers },
    });
  }

  /** Maps a raw request path to a file inside the root, a directory to list, or a status. */
  async function resolve(
    rawPath: string,
  ): Promise<
    { realPath: string; info: Deno.FileInfo } | { listing: string; path: string } | Response
  > {
    const queryAt = rawPath.indexOf("?");
    const encoded = queryAt === -1 ? rawPath : rawPath.slice(0, queryAt);
    let decoded: string;
    try {
      decoded = decodeURIComponent(encoded);
    } catch {
      return plain(400, "Malformed percent-encoding in path");
    }
    if (decoded.includes("\0")) return plain(400, "NUL in path");
    const segments = decoded.split(/[/\\]/).filter((segment) => segment !== "");
    // ".." would climb out; other dot-names are hidden files. Neither is served.
    if (segments.some((segment) => segment.startsWith("."))) return plain(404, "Not Found");
    const wanted = [root, ...segments].join("/");
    let realPath: string;
    let info: Deno.FileInfo;
    try {
      realPath = await Deno.realPath(wanted);
      if (realPath !== root && !realPath.startsWith(root + "/")) return plain(404, "Not Found");
      info = await Deno.stat(realPath);
    } catch {
      return plain(404, "Not Found");
    }
    if (info.isDirectory) {
      if (!encoded.endsWith("/")) {
        const query = queryAt === -1 ? "" : rawPath.slice(queryAt);
        // One leading slash: `//sub/` would be a protocol-relative URL, another host.
        const path = encoded.replace(/^\/+/, "/");
        return new Response(null, {
          status: 301,
          headers: { location: `${path}/${query}`, "content-length": "0" },
        });
      }
      const index = await resolve(`${encoded}index.html`);
      if (options.dirListing && index instanceof Response && index.status === 404) {
        return { listing: realPath, path: `/${segments.map((s) => `${s}/`).join("")}` };
      }
      return index;
    }
    // A file is not a directory: `/hello.html/` names nothing (nginx agrees).
    if (!info.isFile || encoded.endsWith("/")) return plain(404, "Not Found");
    return { realPath, info };
  }

  async function serveFile(
    request: Request,
    realPath: string,
    info: Deno.FileInfo,
    cacheKey: string | undefined,
  ): Promise<Response> {
    const { mtime, etag, lastModified } = validators(info);
    const size = info.size;
    const type = contentType(realPath.slice(realPath.lastIndexOf("/") + 1)) ??
      "application/octet-stream";
    // Compressible and large enough to gain: the answer depends on Accept-Encoding.
    const negotiable = COMPRESSIBLE.test(type) && size > MIN_COMPRESSED;
    const ranged = request.method === "GET" && request.headers.has("range");
    const accept = negotiable && !ranged ? request.headers.get("accept-encoding") : null;
    if (accept !== null) {
      for (const coding of CODINGS) {
        if (!accepts(accept, coding)) continue;
        const sibling = await siblingOf(realPath, SUFFIX[coding]);
        if (sibling) return serveEncoded(request, type, sibling, coding, cacheKey, false);
      }
      if (accepts(accept, "gzip") && size <= MAX_CACHED_FILE) {
        return serveEncoded(request, type, { realPath, info }, "gzip", cacheKey, true);
      }
    }
    const headers: Record<string, string> = {
      "content-type": type,
      etag,
      "last-modified": lastModified,
      "accept-ranges": "bytes",
    };
    if (negotiable) headers.vary = "accept-encoding";
    // Kept in the cached answer too, so the fast path sends them as well.
    if (options.cacheControl !== undefined) headers["cache-control"] = options.cacheControl;
    if (options.cors) headers["access-control-allow-origin"] = "*";
    const isHead = request.method === "HEAD";
    const conditional = conditionalAnswer(request, { mtime, etag, lastModified }, negotiable);
    if (conditional) return conditional;

    const range = request.method === "GET"
      ? parseRange(
        request.headers.get("range"),
        request.headers.get("if-range"),
        size,
        lastModified,
      )
      : undefined;
    if (range === "unsatisfiable") {
      return new Response("Range Not Satisfiable\n", {
        status: 416,
        headers: { "content-range": `bytes */${size}`, "content-type": "text/plain" },
      });
    }
    const [offset, length, status] = range ? [range[0], range[1] - range[0] + 1, 206] : [
      0,
      size,
      200,
    ];
    if (range) headers["content-range"] = `bytes ${range[0]}-${range[1]}/${size}`;
    headers["content-length"] = String(length);

    if (size <= MAX_CACHED_FILE) {
      const bytes = await readOnce(realPath);
      const body = bytes.subarray(offset, offset + length);
      if (status === 200 && cacheKey !== undefined && bytes.length === size) {
        remember(cacheKey, realPath, mtime, headers, bytes, negotiable);
      }
      return new Response(isHead ? null : body, { status, headers });
    }
    if (isHead) return new Response(null, { status, headers });
    const file = await Deno.open(realPath);
    if (offset > 0) await file.seek(offset, Deno.SeekMode.Start);
    const response = new Response(file.readable, { status, headers });
    files.set(response, { path: realPath, offset, length });
    return response;
  }

  /**
   * The 412 or 304 that a conditional request gets, or `undefined` to
   * answer it in full. A 304 carries the validators, Cache-Control and, for
   * a negotiated file, Vary.
   */
  function conditionalAnswer(
    request: Request,
    { mtime, etag, lastModified }: Validators,
    vary: boolean,
  ): Response | undefined {
    if (preconditionFails(request.headers, mtime)) {
      return plain(412, STATUS_TEXT[412], { etag, "last-modified": lastModified });
    }
    if (!isNotModified(request.headers, etag, mtime)) return undefined;
    const headers: Record<string, string> = { etag, "last-modified": lastModified };
    if (vary) headers.vary = "accept-encoding";
    if (options.cacheControl !== undefined) headers["cache-control"] = options.cacheControl;
    return new Response(null, { status: 304, headers });
  }

  /**
   * Serves a file's encoded form: a precompressed sibling (`app.js.br`), or
   * the file gzipped here (`compress`), once per version, then from the
   * cache. Its ETag names the coding, and it is never ranged.
   */
  async function serveEncoded(
    request: Request,
    type: string,
    file: { realPath: string; info: Deno.FileInfo },
    coding: Coding,
    cacheKey: string | undefined,
    compress: boolean,
  ): Promise<Response> {
    const { mtime, etag, lastModified } = validators(file.info, coding);
    const headers: Record<string, string> = {
      "content-type": type,
      "content-encoding": coding,
      vary: "accept-encoding",
      etag,
      "last-modified": lastModified,
    };
    if (options.cacheControl !== undefined) headers["cache-control"] = options.cacheControl;
    if (options.cors) headers["access-control-allow-origin"] = "*";
    const conditional = conditionalAnswer(request, { mtime, etag, lastModified }, true);
    if (conditional) return conditional;
    const isHead = request.method === "HEAD";
    if (!compress && file.info.size > MAX_CACHED_FILE) {
      // A large precompressed file streams from disk, like any large file.
      headers["content-length"] = String(file.info.size);
      if (isHead) return new Response(null, { status: 200, headers });
      const stream = await Deno.open(file.realPath);
      const response = new Response(stream.readable, { status: 200, headers });
      files.set(response, { path: file.realPath, offset: 0, length: file.info.size });
      return response;
    }
    // Made once per file version: a cached answer for this version is reused.
    const key = cacheKey === undefined ? undefined : `${cacheKey}\0${coding}`;
    const known = key === undefined ? undefined : cache.get(key);
    const body = known !== undefined && known.realPath === file.realPath && known.mtime === mtime
      ? known.cached.body as Uint8Array<ArrayBuffer>
      : compress
      ? await gzipOnce(file.realPath, mtime)
      : await readOnce(file.realPath);
    headers["content-length"] = String(body.length);
    if (key !== undefined && known?.cached.body !== body) {
      remember(key, file.realPath, mtime, headers, body, false);
    }
    return new Response(isHead ? null : body, { status: 200, headers });
  }

  /** The file gzipped, shared by the requests that want it at the same moment. */
  function gzipOnce(realPath: string, mtime: number): Promise<Uint8Array<ArrayBuffer>> {
    const key = `${realPath}\0${mtime}`;
    let done = compressions.get(key);
    if (done === undefined) {
      done = readOnce(realPath).then(async (bytes) => {
        const gzipped = new Blob([bytes]).stream().pipeThrough(new CompressionStream("gzip"));
        return new Uint8Array(await new Response(gzipped).arrayBuffer());
      }).finally(() => compressions.delete(key));
      compressions.set(key, done);
    }
    return done;
  }

  /** A precompressed sibling of a file (`name.br`), if one exists inside the root. */
  async function siblingOf(
    realPath: string,
    suffix: string,
  ): Promise<{ realPath: string; info: Deno.FileInfo } | undefined> {
    try {
      const path = await Deno.realPath(realPath + suffix);
      if (!path.startsWith(root + "/")) return undefined;
      const info = await Deno.stat(path);
      return info.isFile ? { realPath: path, info } : undefined;
    } catch {
      return undefined;
    }
  }

  /**
   * Reads a file, sharing one read among the requests that want it at the
   * same moment: a burst of misses for one file costs one buffer, not one each.
   */
  function readOnce(realPath: string): Promise<Uint8Array<ArrayBuffer>> {
    let read = reads.get(realPath);
    if (read === undefined) {
      read = Deno.readFile(realPath).finally(() => reads.delete(realPath));
      reads.set(realPath, read);
    }
    return read;
  }

  function remember(
    key: string,
    realPath: string,
    mtime: number,
    headers: Record<string, string>,
    body: Uint8Array,
    negotiable: boolean,
  ): void {
    const old = cache.get(key);
    if (old) {
      cache.delete(key);
      cacheBytes -= old.size;
    }
    // The key counts too: many paths to one small file must not grow memory.
    // The body counts twice: once as read, once in its ready-to-send answer.
    const size = 2 * body.length + key.length + ENTRY_OVERHEAD;
    if (cacheBytes + size > MAX_CACHE_BYTES) return;
    let fields = "";
    for (const [name, value] of Object.entries(headers)) {
      if (name !== "content-length") fields += `${name}: ${value}\r\n`;
    }
    cache.set(key, {
      cached: { status: 200, fields, body },
      checkedAt: Date.now(),
      realPath,
      mtime,
      size,
      negotiable,
    });
    cacheBytes += size;
  }

  async function fetch(request: Request): Promise<Response> {
    const response = await route(request);
    if (options.cors && !response.headers.has("access-control-allow-origin")) {
      response.headers.set("access-control-allow-origin", "*");
    }
    return response;
  }

  async function route(request: Request): Promise<Response> {
    const method = request.method;
    if (method === "OPTIONS") return options.cors ? preflight(request) : optionsAnswer();
    if (method !== "GET" && method !== "HEAD") {
      return KNOWN_METHODS.has(method)
        ? plain(405, STATUS_TEXT[405], { allow: ALLOW })
        : plain(501, `Method ${method} is not implemented`, { allow: ALLOW });
    }
    const url = new URL(request.url);
    const rawPath = url.pathname + url.search;
    // The query does not change which file is served, so it is not part of the key.
    let cacheKey: string | undefined = url.pathname;
    let found;
    if (url.pathname === "/") {
      // A site's own index.html; the book's hello.html where there is none.
      found = await resolve("/index.html");
      if (found instanceof Response) found = await resolve("/hello.html");
      if (found instanceof Response && options.dirListing) found = await resolve("/");
    } else if (url.pathname === "/sleep") {
      // The book's slow request: this worker's thread is blocked for the
      // whole wait, as thread::sleep blocks a thread in the book.
      await options.block(options.sleepMs);
      found = await resolve("/hello.html");
      cacheKey = undefined;
    } else {
      found = await resolve(rawPath);
    }
    if (found instanceof Response && found.status === 404 && options.spa) {
      // A client-side route: no file extension in its last segment.
      const last = url.pathname.slice(url.pathname.lastIndexOf("/") + 1);
      if (!last.includes(".")) {
        const index = await resolve("/index.html");
        if (!(index instanceof Response) && !("listing" in index)) {
          // Cached as /index.html: every client-side route shares that answer.
          return serveFile(request, index.realPath, index.info, "/index.html");
        }
      }
    }
    if (found instanceof Response) return found.status === 404 ? notFound(method) : found;
    if ("listing" in found) return listDirectory(found.listing, found.path, method === "HEAD");
    return serveFile(request, found.realPath, found.info, cacheKey);
  }

  function optionsAnswer(): Response {
    return new Response(null, { status: 204, headers: { allow: ALLOW } });
  }

  /** A CORS preflight (an OPTIONS with Access-Control-Request-Method), or a plain OPTIONS. */
  function preflight(request: Request): Response {
    const wanted = request.headers.get("access-control-request-method");
    if (wanted === null) return optionsAnswer();
    const headers: Record<string, string> = {
      allow: ALLOW,
      "access-control-allow-origin": "*",
      "access-control-allow-methods": ALLOW,
      "access-control-max-age": "86400",
    };
    const asked = request.headers.get("access-control-request-headers");
    if (asked !== null) headers["access-control-allow-headers"] = asked;
    return new Response(null, { status: 204, headers });
  }

  /**
   * An HTML listing of `dir`, streamed: the names are read and sorted first
   * (dotfiles left out), then rows are produced as the client takes them,
   * with each entry's size and modification time.
   */
  async function listDirectory(dir: string, path: string, isHead: boolean): Promise<Response> {
    const headers = { "content-type": "text/html; charset=utf-8" };
    if (isHead) return new Response(null, { status: 200, headers });
    const names: string[] = [];
    for await (const entry of Deno.readDir(dir)) {
      if (!entry.name.startsWith(".")) names.push(entry.name);
    }
    names.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    const title = escapeHtml(path);
    let next = 0;
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(encoder.encode(
          `<!doctype html>\n<meta charset="utf-8">\n<title>Index of ${title}</title>\n` +
            `<h1>Index of ${title}</h1>\n<table>\n<tr><th>Name</th><th>Size</th><th>Modified</th></tr>\n` +
            (path === "/" ? "" : `<tr><td><a href="../">../</a></td><td></td><td></td></tr>\n`),
        ));
      },
      async pull(controller) {
        let rows = "";
        for (const end = Math.min(next + LISTING_ROWS, names.length); next < end; next++) {
          rows += await listingRow(root, dir, names[next]);
        }
        if (rows !== "") controller.enqueue(encoder.encode(rows));
        if (next === names.length) {
          controller.enqueue(encoder.encode("</table>\n"));
          controller.close();
        }
      },
    }, { highWaterMark: 0 });
    return new Response(body, { status: 200, headers });
  }

  function fast(
    method: string,
    path: string,
    conditional: boolean,
    acceptEncoding: string | undefined,
  ): CachedResponse | undefined {
    if (conditional || (method !== "GET" && method !== "HEAD")) return undefined;
    const query = path.indexOf("?");
    const key = query === -1 ? path : path.slice(0, query);
    let compressed = false;
    if (acceptEncoding !== undefined) {
      for (const coding of CODINGS) {
        if (!accepts(acceptEncoding, coding)) continue;
        compressed = true;
        const entry = fresh(`${key}\0${coding}`);
        if (entry) return entry.cached;
      }
    }
    const entry = fresh(key);
    // A client that takes gzip or br gets the encoded answer: let fetch() make it.
    if (entry === undefined || (entry.negotiable && compressed)) return undefined;
    return entry.cached;
  }

  /** A cache entry checked within the last second; an older one is dropped for fetch() to redo. */
  function fresh(key: string): CacheEntry | undefined {
    const entry = cache.get(key);
    if (entry === undefined) return undefined;
    if (Date.now() - entry.checkedAt > REVALIDATE_MS) {
      cache.delete(key);
      cacheBytes -= entry.size;
      return undefined;
    }
    return entry;
  }

  return { fetch, fast, fileOf: (response) => files.get(response) };
}

/** RFC 9110 §13.1.2 and §13.1.3: If-None-Match wins over If-Modified-Since. */
function isNotModified(headers: Headers, etag: string, mtime: number): boolean {
  const ifNoneMatch = headers.get("if-none-match");
  if (ifNoneMatch !== null) {
    if (ifNoneMatch.trim() === "*") return true;
    const opaque = etag.replace(/^W\//, "");
    return ifNoneMatch.split(",").some((tag) => tag.trim().replace(/^W\//, "") === opaque);
  }
  const date = httpDate(headers.get("if-modified-since"));
  return date !== undefined && Math.floor(mtime / 1000) * 1000 <= date;
}

/**
 * RFC 9110 §13.1.1 and §13.1.4: `If-Match` needs a strong match, which weak
 * ETags never give (only `*` passes); `If-Unmodified-Since` fails once the
 * file changed after the date. Either failing means 412.
 */
function preconditionFails(headers: Headers, mtime: number): boolean {
  const ifMatch = headers.get("if-match");
  if (ifMatch !== null) return ifMatch.trim() !== "*";
  const date = httpDate(headers.get("if-unmodified-since"));
  return date !== undefined && Math.floor(mtime / 1000) * 1000 > date;
}

const MONTH = "(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)";
/** IMF-fixdate, and the two obsolete forms recipients must accept (RFC 9110 §5.6.7). */
const HTTP_DATE = new RegExp(
  `^(?:[A-Z][a-z]{2}, \\d{2} ${MONTH} \\d{4} \\d{2}:\\d{2}:\\d{2} GMT` +
    `|[A-Z][a-z]{5,8}, \\d{2}-${MONTH}-\\d{2} \\d{2}:\\d{2}:\\d{2} GMT` +
    `|[A-Z][a-z]{2} ${MONTH} [ \\d]\\d \\d{2}:\\d{2}:\\d{2} \\d{4})$`,
);

/** The time of an HTTP-date, or `undefined` for anything else (which is then ignored). */
function httpDate(value: string | null): number | undefined {
  if (value === null || !HTTP_DATE.test(value.trim())) return undefined;
  const time = Date.parse(value);
  return Number.isNaN(time) ? undefined : time;
}

/**
 * One `bytes=` range (RFC 9110 §14). Returns inclusive [first, last], or
 * `undefined` to send the whole file (no header, malformed, several ranges,
 * or an If-Range that does not match), or "unsatisfiable".
 */
function parseRange(
  header: string | null,
  ifRange: string | null,
  size: number,
  lastModified: string,
): [number, number] | "unsatisfiable" | undefined {
  if (header === null) return undefined;
  // If-Range needs a strong match: our ETags are weak, so only the exact
  // Last-Modified date keeps the range.
  if (ifRange !== null && ifRange.trim() !== lastModified) return undefined;
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (match === null || (match[1] === "" && match[2] === "")) return undefined;
  // Nothing in an empty file can be selected (RFC 9110 §14.1.1).
  if (size === 0) return "unsatisfiable";
  if (match[1] === "") {
    const suffix = Number(match[2]);
    if (suffix === 0) return "unsatisfiable";
    return [Math.max(0, size - suffix), size - 1];
  }
  const first = Number(match[1]);
  const last = match[2] === "" ? size - 1 : Math.min(Number(match[2]), size - 1);
  if (match[2] !== "" && Number(match[2]) < first) return undefined;
  if (first >= size) return "unsatisfiable";
  return [first, last];
}

/** One row of a directory listing; an entry that vanished or can't be read shows no size. */
async function listingRow(root: string, dir: string, name: string): Promise<string> {
  let info: Deno.FileInfo | undefined;
  try {
    const path = `${dir}/${name}`;
    if ((await Deno.lstat(path)).isSymlink) {
      // A link is listed only if it leads inside the root, as it is served.
      const target = await Deno.realPath(path);
      if (target !== root && !target.startsWith(root + "/")) return "";
    }
    info = await Deno.stat(path);
  } catch {
    // Gone since the directory was read, or a dangling link.
  }
  const slash = info?.isDirectory ? "/" : "";
  const size = info === undefined || info.isDirectory ? "" : String(info.size);
  const modified = info?.mtime ? info.mtime.toISOString().slice(0, 19).replace("T", " ") : "";
  return `<tr><td><a href="${encodeURIComponent(name)}${slash}">${escapeHtml(name)}${slash}</a>` +
    `</td><td>${size}</td><td>${modified}</td></tr>\n`;
}

/** Text made safe for HTML content and attribute values. */
function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

interface Validators {
  mtime: number;
  etag: string;
  lastModified: string;
}

/**
 * A file's weak ETag (size and mtime, and the coding of an encoded form) and
 * Last-Modified, never later than now (RFC 9110 §8.8.2.1: a file dated in the
 * future gets the current time).
 */
function validators(info: Deno.FileInfo, coding?: string): Validators {
  const mtime = info.mtime?.getTime() ?? 0;
  const suffix = coding === undefined ? "" : `-${coding}`;
  return {
    mtime,
    etag: `W/"${info.size.toString(16)}-${Math.floor(mtime).toString(16)}${suffix}"`,
    lastModified: new Date(Math.min(mtime, Date.now())).toUTCString(),
  };
}

/**
 * Whether an Accept-Encoding value accepts `coding` (RFC 9110 §12.5.3): listed
 * with a q-value above 0, or covered by `*` without being refused by name.
 */
function accepts(header: string, coding: string): boolean {
  let wildcard = false;
  for (const element of header.split(",")) {
    const semicolon = element.indexOf(";");
    const name = (semicolon === -1 ? element : element.slice(0, semicolon)).trim().toLowerCase();
    if (name !== coding && name !== "*") continue;
    const q = semicolon === -1 ? 1 : qValue(element.slice(semicolon + 1));
    if (name === coding) return q > 0;
    wildcard = q > 0;
  }
  return wildcard;
}

function qValue(params: string): number {
  const match = /(?:^|;)\s*q\s*=\s*([01](?:\.\d{0,3})?)\s*(?:;|$)/i.exec(params);
  return match ? Number(match[1]) : 1;
}
