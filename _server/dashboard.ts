/**
 * The live pool page (`--dashboard`): `GET /_brigade/` serves the page and
 * `GET /_brigade/events` a server-sent event stream of the pool's figures,
 * about twice a second, from the main thread. The timer runs only while
 * someone watches. Access: loopback clients only, unless a token is set;
 * behind a proxy (or with forwarding fields) the token is always required.
 * Nothing sent reveals request bodies, query strings or headers: a running
 * request is named by its method and path.
 */

import { encoder, isomorphicEncode, responseHead, textResponse } from "../_shared/http.ts";
import type { Percentiles, WorkerSnapshot } from "../pool.ts";
import { DASHBOARD_HTML } from "./dashboard_page.ts";
import type { Exchange } from "./exchange.ts";

/** What one `stats` event carries. */
export interface DashboardStats {
  workers: WorkerSnapshot[];
  queued: number;
  connections: number;
  /** Responses written since the start, all statuses; the rate is derived from it. */
  responsesTotal: number;
  wait: Percentiles;
  run: Percentiles;
  responses: Record<string, number>;
  replaced: number;
}

/** Where the figures come from, and who may see them. */
export interface DashboardOptions {
  stats: () => DashboardStats;
  /** Required from every client when set; else only loopback clients are served. */
  token?: string;
  /** Behind a trusted proxy every client looks like loopback: require the token. */
  trustProxy: boolean;
}

/** What {@linkcode Dashboard.access} decided. */
export type Access =
  | { ok: true; cookie?: string }
  | { ok: false; status: 401 | 403; message: string };

/** Milliseconds between two `stats` events. */
const INTERVAL_MS = 500;
/** Bytes a watcher may leave unread before it misses updates. */
const MAX_UNREAD = 64 << 10;
const LOG_SIZE = 20;
const COOKIE = "brigade_dashboard";
const PAGE = encoder.encode(DASHBOARD_HTML);

/** One server's dashboard: its page, its watchers and its event log. */
export class Dashboard {
  #options: DashboardOptions;
  #watchers = new Set<{ exchange: Exchange; chunked: boolean }>();
  #timer: ReturnType<typeof setInterval> | undefined;
  #log: { time: number; message: string }[] = [];
  #lastTotal = 0;
  #lastAt = 0;

  /** @param options Where the figures come from, and the access rules. */
  constructor(options: DashboardOptions) {
    this.#options = options;
  }

  /**
   * Whether a request may see the dashboard. `remote` is the socket's own
   * peer; `fields` the request's (lower-case names and values, alternating).
   */
  access(remote: string, fields: string[], query: string, secure: boolean): Access {
    const token = this.#options.token;
    if (token === undefined) {
      const forwarded = fields.some((_, i) =>
        i % 2 === 0 &&
        (fields[i] === "forwarded" || fields[i] === "x-real-ip" ||
          fields[i].startsWith("x-forwarded-"))
      );
      if (this.#options.trustProxy || forwarded || !isLoopback(remote)) {
        return {
          ok: false,
          status: 403,
          message: "The dashboard is for loopback clients; set --dashboard-token to open it",
        };
      }
      return { ok: true };
    }
    for (let i = 0; i < fields.length; i += 2) {
      // The scheme name is case-insensitive (RFC 9110 §11.1).
      const value = fields[i + 1];
      if (
        fields[i] === "authorization" && value.slice(0, 7).toLowerCase() === "bearer " &&
        sameToken(value.slice(7), token)
      ) {
        return { ok: true };
      }
      if (fields[i] === "cookie" && cookieValue(fields[i + 1], COOKIE, token)) return { ok: true };
    }
    const given = new URLSearchParams(query).get("token");
    if (given !== null && sameToken(given, token)) {
      return {
        ok: true,
        // Secure when the client reached us over https (through the trusted proxy).
        cookie: `${COOKIE}=${encodeURIComponent(token)}; Path=/_brigade/; HttpOnly; ` +
          `SameSite=Strict${secure ? "; Secure" : ""}`,
      };
    }
    return { ok: false, status: 401, message: "The dashboard needs its token" };
  }

  /** The page's size in bytes, for the access log. */
  get pageSize(): number {
    return PAGE.length;
  }

  /** The page, as a whole response (only its head for HEAD). */
  page(close: boolean, headOnly: boolean, cookie?: string): Uint8Array {
    const headers = [
      "cache-control: no-store",
      "content-security-policy: default-src 'self'; style-src 'unsafe-inline'; " +
      "script-src 'unsafe-inline'; img-src data:",
    ];
    if (cookie) headers.push(`set-cookie: ${cookie}`);
    return textResponse(200, PAGE, "text/html; charset=utf-8", { close, headOnly, headers });
  }

  /** Streams events to `exchange` until its client leaves or the server closes. */
  watch(exchange: Exchange, minor: number, close: boolean, cookie?: string): void {
    const chunked = minor === 1;
    let fields = "content-type: text/event-stream\r\ncache-control: no-store\r\n";
    if (cookie) fields += `set-cookie: ${cookie}\r\n`;
    const head = responseHead({
      status: 200,
      fields,
      framing: chunked ? "chunked" : "close",
      close: close || !chunked,
      minor,
    });
    exchange.open(isomorphicEncode(head), 200, close || !chunked);
    const watcher = { exchange, chunked };
    this.#watchers.add(watcher);
    for (const entry of this.#log) this.#send(watcher, "log", entry);
    this.#send(watcher, "stats", this.#stats());
    this.#timer ??= setInterval(() => this.#tick(), INTERVAL_MS);
  }

  /** Adds a line to the event log (worker replacements), and tells the watchers. */
  log(message: string): void {
    const entry = { time: Date.now(), message };
    this.#log.push(entry);
    if (this.#log.length > LOG_SIZE) this.#log.shift();
    for (const watcher of this.#watchers) this.#send(watcher, "log", entry);
  }

  /** Ends every stream and stops the timer; safe to call twice. */
  close(): void {
    for (const { exchange, chunked } of this.#watchers) {
      exchange.end(chunked ? encoder.encode("0\r\n\r\n") : undefined);
    }
    this.#watchers.clear();
    this.#stop();
  }

  #tick(): void {
    for (const watcher of this.#watchers) {
      if (watcher.exchange.finished) this.#watchers.delete(watcher);
    }
    // Nobody watches: no timer, no work.
    if (this.#watchers.size === 0) return this.#stop();
    const stats = this.#stats();
    for (const watcher of this.#watchers) this.#send(watcher, "stats", stats);
  }

  #stats(): object {
    const s = this.#options.stats();
    const now = performance.now();
    const seconds = this.#lastAt === 0 ? 0 : (now - this.#lastAt) / 1000;
    const rate = seconds > 0 ? (s.responsesTotal - this.#lastTotal) / seconds : 0;
    this.#lastTotal = s.responsesTotal;
    this.#lastAt = now;
    return {
      time: Date.now(),
      // A worker blocked on purpose (the book's /sleep) is busy, to a watcher.
      workers: s.workers.map((w) => w.state === "blocked" ? { ...w, state: "busy" } : w),
      queued: s.queued,
      connections: s.connections,
      requestsPerSecond: Math.round(rate * 10) / 10,
      wait: rounded(s.wait),
      run: rounded(s.run),
      responses: s.responses,
      replaced: s.replaced,
    };
  }

  #send(watcher: { exchange: Exchange; chunked: boolean }, event: string, data: object): void {
    // A watcher that stops reading misses updates instead of costing memory.
    if (watcher.exchange.buffered > MAX_UNREAD) return;
    const text = encoder.encode(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
    let bytes = text;
    if (watcher.chunked) {
      // A chunk's size counts bytes, not characters.
      const size = encoder.encode(`${text.length.toString(16)}\r\n`);
      bytes = new Uint8Array(size.length + text.length + 2);
      bytes.set(size);
      bytes.set(text, size.length);
      bytes.set([13, 10], size.length + text.length);
    }
    if (!watcher.exchange.push(bytes)) this.#watchers.delete(watcher);
  }

  #stop(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    this.#lastAt = 0;
  }
}

function rounded(p: Percentiles): Percentiles {
  const r = (n: number) => Math.round(n * 100) / 100;
  return { p50: r(p.p50), p90: r(p.p90), p99: r(p.p99), max: r(p.max) };
}

function isLoopback(address: string): boolean {
  return address === "::1" || address.startsWith("127.") || address.startsWith("::ffff:127.");
}

/** Compares without stopping at the first difference. */
function sameToken(given: string, expected: string): boolean {
  let diff = given.length ^ expected.length;
  for (let i = 0; i < expected.length; i++) {
    diff |= (given.charCodeAt(i) | 0) ^ expected.charCodeAt(i);
  }
  return diff === 0;
}

function cookieValue(header: string, name: string, expected: string): boolean {
  for (const part of header.split(";")) {
    const eq = part.indexOf("=");
    if (eq !== -1 && part.slice(0, eq).trim() === name) {
      try {
        return sameToken(decodeURIComponent(part.slice(eq + 1).trim()), expected);
      } catch {
        return false;
      }
    }
  }
  return false;
}
