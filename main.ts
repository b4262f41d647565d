/**
 * brigade: an HTTP/1.1 server whose request handling runs on a fixed pool of
 * module Web Workers. The main thread only accepts, frames and writes; a slow
 * or CPU-heavy request occupies one worker and never stalls the others.
 *
 * Run it with `deno task start`, or import {@linkcode serve}.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { resolve as resolvePath } from "node:path";
import { pathToFileURL } from "node:url";
import { Connection, type ConnectionOptions } from "./_server/connection.ts";
import {
  type Exchange,
  type ExchangeCounters,
  type HttpPool,
  RESPONSE_WINDOW,
} from "./_server/exchange.ts";
import {
  AccessLog,
  LOG_FORMATS,
  LOG_LEVELS,
  type LogFormat,
  Logger,
  type LogLevel,
} from "./_server/log.ts";
import { flagDefault, numericDefault, parseArgsOptions, usage } from "./_server/flags.ts";
import { countStatus, prometheusText, type StatusCounts } from "./_server/metrics.ts";
import { ALL_STUCK, distrust, SupervisorLink } from "./_server/control.ts";
import { ownRuntimeFlags, StartError, Supervisor } from "./_supervisor/supervisor.ts";
import { STATS_INTERVAL_MS } from "./_supervisor/protocol.ts";
import { Dashboard } from "./_server/dashboard.ts";
import { plainResponse } from "./_shared/http.ts";
import type { WorkerConfig } from "./_shared/protocol.ts";
import { WorkerPool, type WorkerPoolStats } from "./pool.ts";

export type { LogLevel } from "./_server/log.ts";

/** Options for {@linkcode serve}. Every limit has the default the CLI uses. */
export interface ServeOptions {
  /**
   * Address to listen on.
   * @default {"127.0.0.1"}
   */
  hostname?: string;
  /**
   * Port to listen on; 0 picks any free port.
   * @default {7878}
   */
  port?: number;
  /**
   * Share the port with other processes that set it too (`SO_REUSEPORT`;
   * Linux balances connections between them). Needs `--unstable-net`.
   * @default {false}
   */
  reusePort?: boolean;
  /**
   * Number of workers.
   * @default {navigator.hardwareConcurrency}
   */
  workers?: number;
  /**
   * Requests one worker runs at once; awaiting handlers interleave.
   * @default {64}
   */
  workerConcurrency?: number;
  /**
   * Directory the static handler serves.
   * @default {"static"}
   */
  root?: string;
  /**
   * How long `GET /sleep` takes, in milliseconds.
   * @default {5000}
   */
  sleepMs?: number;
  /**
   * Access log lines: Common Log Format, `combined` (adds Referer and
   * User-Agent) or `json`.
   * @default {"common"}
   */
  logFormat?: "common" | "combined" | "json";
  /**
   * Take the client's address and scheme from one trusted reverse proxy's
   * `X-Forwarded-For`/`X-Forwarded-Proto` (the last element; `Forwarded` is ignored),
   * for the log, `info.remoteAddr` and `request.url`.
   * @default {false}
   */
  trustProxy?: boolean;
  /**
   * Serve the live pool page at `GET /_brigade/`, with its events at
   * `GET /_brigade/events`: to loopback clients only, unless `dashboardToken`
   * is set.
   * @default {false}
   */
  dashboard?: boolean;
  /**
   * A token the dashboard requires from every client (a bearer token, or
   * `?token=` once, which sets a cookie); required behind a proxy.
   * @default {undefined}
   */
  dashboardToken?: string;
  /**
   * Serve Prometheus metrics at `GET /_brigade/metrics`.
   * @default {false}
   */
  metrics?: boolean;
  /**
   * A `Cache-Control` value sent with every static file response (200, 206, 304).
   * @default {undefined}
   */
  cacheControl?: string;
  /**
   * `Access-Control-Allow-Origin: *` on static responses, and answers to CORS preflights.
   * @default {false}
   */
  cors?: boolean;
  /**
   * A GET for a missing path without a file extension serves the root's `index.html`.
   * @default {false}
   */
  spa?: boolean;
  /**
   * A directory without `index.html` gets a streamed HTML listing instead of 404.
   * @default {false}
   */
  dirListing?: boolean;
  /**
   * URL of a module whose default export has `fetch(request)`, used instead
   * of the static handler.
   * @default {undefined}
   */
  handler?: string | URL;
  /**
   * Diagnostics level; "debug" prints the book's per-job lines.
   * @default {"info"}
   */
  logLevel?: LogLevel;
  /**
   * Print a Common Log Format line per request.
   * @default {false}
   */
  accessLog?: boolean;
  /**
   * Largest request body in bytes; larger gets 413 without being read.
   * @default {1048576}
   */
  maxBody?: number;
  /**
   * Largest request head in bytes; larger gets 431.
   * @default {16384}
   */
  maxHead?: number;
  /**
   * Largest request line in bytes; longer gets 414.
   * @default {8192}
   */
  maxRequestLine?: number;
  /**
   * Requests per connection; the last response says `connection: close`.
   * @default {1000}
   */
  maxRequests?: number;
  /**
   * Open connections; beyond it new ones get 503 and are closed.
   * @default {10000}
   */
  maxConnections?: number;
  /**
   * Requests waiting for a worker; beyond it requests get 503 with `retry-after`.
   * @default {1024}
   */
  maxQueue?: number;
  /**
   * Milliseconds a request may wait for a worker before it gets 503.
   * @default {10000}
   */
  queueTimeout?: number;
  /**
   * Serve the pool's figures as JSON at `GET /_brigade/stats`.
   * @default {false}
   */
  stats?: boolean;
  /**
   * Milliseconds from when a worker starts a request until its response head
   * is ready; past it the request's signal aborts and the client gets 504. A
   * worker whose event loop cannot answer within it is replaced.
   * @default {30000}
   */
  timeout?: number;
  /**
   * Milliseconds for a request head to arrive (408 after).
   * @default {10000}
   */
  headTimeout?: number;
  /**
   * Milliseconds a request body may stall between reads (408 after).
   * @default {10000}
   */
  bodyTimeout?: number;
  /**
   * Milliseconds an idle keep-alive connection stays open.
   * @default {5000}
   */
  idleTimeout?: number;
  /**
   * Milliseconds one response write may make no progress before the client
   * is dropped.
   * @default {10000}
   */
  writeTimeout?: number;
  /**
   * Milliseconds `close()` waits for in-flight requests before cutting them.
   * @default {10000}
   */
  shutdownTimeout?: number;
  /**
   * Largest WebSocket message in bytes, all its fragments together; a larger
   * one closes the socket with 1009.
   * @default {1048576}
   */
  wsMaxMessage?: number;
  /**
   * Milliseconds a WebSocket client may stay silent before it is pinged; silent
   * as long again, it is cut. 0 sends no pings.
   * @default {30000}
   */
  wsPingInterval?: number;
}

/** {@linkcode WorkerPoolStats} plus the server's connections and requests. */
export interface ServerStats extends WorkerPoolStats {
  /** Requests accepted and not yet answered (queued or running). */
  requests: number;
  /** Open client connections. */
  connections: number;
  /** Open WebSockets (connections upgraded by a handler). */
  websockets: number;
  /** Responses written since the start, by status class ("2xx", "5xx", …). */
  responses: Record<string, number>;
  /** Server processes these figures add up (1 unless supervised with `--processes`). */
  processes: number;
}

/** What {@linkcode Server.close} had to cut off. */
export interface ShutdownReport {
  /** Connections closed with responses still owed, after the shutdown timeout. */
  cut: number;
}

const DEFAULTS = {
  hostname: flagDefault("hostname"),
  port: numericDefault("port"),
  root: flagDefault("root"),
  sleepMs: numericDefault("sleep-ms"),
  workerConcurrency: numericDefault("worker-concurrency"),
  logLevel: flagDefault("log-level") as LogLevel,
  maxBody: numericDefault("max-body"),
  maxHead: numericDefault("max-head"),
  maxRequestLine: 8 << 10,
  maxRequests: numericDefault("max-requests"),
  maxConnections: numericDefault("max-connections"),
  maxQueue: numericDefault("max-queue"),
  queueTimeout: numericDefault("queue-timeout"),
  stats: false,
  timeout: numericDefault("timeout"),
  headTimeout: numericDefault("head-timeout"),
  bodyTimeout: 10_000,
  idleTimeout: numericDefault("idle-timeout"),
  writeTimeout: numericDefault("write-timeout"),
  shutdownTimeout: numericDefault("shutdown-timeout"),
  wsMaxMessage: numericDefault("ws-max-message"),
  wsPingInterval: numericDefault("ws-ping-interval"),
};

/** Responses one connection may owe before it stops reading. */
const MAX_PIPELINE = 16;
/** Response bytes one connection may hold unwritten before it stops reading. */
const MAX_OUTPUT = 256 << 10;
/**
 * Bytes a WebSocket's app may have sent and the client not yet taken
 * (`bufferedAmount`); a send past it closes the socket with 1008.
 */
const WS_MAX_BUFFERED = 16 << 20;
/**
 * Signals this close to the first one are copies of the same stop request:
 * Ctrl-C reaches every process of the terminal's foreground group, and
 * `deno task` forwards its own copy within a millisecond. A person who means
 * "stop now" presses again after the window.
 */
export const STOP_WINDOW_MS = 1000;
/** How often deadlines are checked; also the resolution of every timeout. */
const SWEEP_MS = 250;

/**
 * A running brigade server. Made by {@linkcode serve}.
 */
export class Server {
  /** The address the server is bound to. */
  readonly addr: Deno.NetAddr;
  #listener: Deno.TcpListener | undefined;
  #bind: (() => Deno.TcpListener) | undefined;
  #stopped = false;
  #pool: HttpPool;
  #counters: ExchangeCounters = { requests: 0, websockets: 0 };
  #connections = new Set<Connection>();
  #options: ConnectionOptions;
  #maxConnections: number;
  #shutdownTimeout: number;
  #logger: Logger;
  #accessLog: AccessLog | undefined;
  #sweeper: ReturnType<typeof setInterval>;
  #clock = { now: performance.now() };
  #accepting: Promise<void>;
  #closed: Promise<ShutdownReport> | undefined;
  #responses: StatusCounts = {};
  #dashboard: Dashboard | undefined;
  #allClosed: (() => void) | undefined;
  #whole: () => ServerStats | undefined = () => undefined;
  #draining = false;

  /** @internal Use {@linkcode serve}. */
  constructor(
    listener: Deno.TcpListener | { addr: Deno.NetAddr; bind(): Deno.TcpListener },
    options: ServeOptions,
  ) {
    const o = { ...DEFAULTS, ...definedOnly(options) };
    this.addr = listener.addr;
    if ("bind" in listener) this.#bind = () => listener.bind();
    else this.#listener = listener;
    this.#logger = new Logger(o.logLevel);
    this.#maxConnections = o.maxConnections;
    this.#shutdownTimeout = o.shutdownTimeout;
    const config: WorkerConfig = {
      root: o.root,
      sleepMs: o.sleepMs,
      cacheControl: o.cacheControl,
      cors: o.cors ?? false,
      spa: o.spa ?? false,
      dirListing: o.dirListing ?? false,
      // A relative path means the caller's working directory, as on the command line.
      handler: o.handler === undefined ? undefined : handlerUrl(o.handler),
      window: RESPONSE_WINDOW,
      wsMaxBuffered: WS_MAX_BUFFERED,
      listen: { hostname: listener.addr.hostname, port: listener.addr.port },
    };
    const logger = this.#logger;
    const poolLogger = {
      debug: logger.debug?.bind(logger),
      info: (line: string) => {
        logger.info(line);
        // Replacements and start-up troubles show in the dashboard's log too.
        this.#dashboard?.log(line);
      },
    };
    this.#pool = new WorkerPool(new URL("./worker.ts", import.meta.url), {
      size: o.workers,
      concurrency: o.workerConcurrency,
      workerData: config,
      timeout: o.timeout,
      maxQueue: o.maxQueue,
      queueTimeout: o.queueTimeout,
      logger: poolLogger,
    });
    if (o.dashboard || o.dashboardToken !== undefined) {
      this.#dashboard = new Dashboard({
        token: o.dashboardToken,
        trustProxy: o.trustProxy ?? false,
        stats: () => {
          const pool = this.#pool.stats();
          let responsesTotal = 0;
          for (const count of Object.values(this.#responses)) responsesTotal += count;
          return {
            workers: this.#pool.workers(),
            queued: pool.queued,
            connections: this.#connections.size,
            responsesTotal,
            wait: pool.waitTime,
            run: pool.runTime,
            responses: this.#responses,
            replaced: pool.replaced,
          };
        },
      });
    }
    if (o.accessLog) this.#accessLog = new AccessLog(o.logFormat);
    const accessLog = this.#accessLog;
    this.#options = {
      maxBody: o.maxBody,
      maxHead: o.maxHead,
      maxRequestLine: o.maxRequestLine,
      maxRequests: o.maxRequests,
      headTimeout: o.headTimeout,
      bodyTimeout: o.bodyTimeout,
      idleTimeout: o.idleTimeout,
      writeTimeout: o.writeTimeout,
      wsMaxMessage: o.wsMaxMessage,
      wsPingInterval: o.wsPingInterval,
      maxPipeline: MAX_PIPELINE,
      maxOutput: MAX_OUTPUT,
      clock: this.#clock,
      draining: () => this.#draining,
      stats: o.stats ? () => JSON.stringify(this.#wholeStats()) : undefined,
      metrics: o.metrics ? () => prometheusText(this.#wholeStats()) : undefined,
      dashboard: this.#dashboard,
      // The book's /sleep blocks its worker's thread (static app only).
      blocks: o.handler === undefined
        ? (head) => head.path === "/sleep" || head.path.startsWith("/sleep?")
        : () => false,
      logHeaders: this.#accessLog?.wantsHeaders ?? false,
      trustProxy: o.trustProxy ?? false,
      onResponse: (exchange: Exchange, remote: string) => {
        countStatus(this.#responses, exchange.status);
        accessLog?.write({
          remote,
          requestLine: exchange.requestLine,
          status: exchange.status,
          bytes: exchange.bodyBytes,
          ms: performance.now() - exchange.startedAt,
          workerId: exchange.workerId,
          referer: exchange.referer,
          userAgent: exchange.userAgent,
        });
      },
    };
    this.#sweeper = setInterval(() => this.#sweep(), SWEEP_MS);
    this.#accepting = this.#listener ? this.#acceptLoop(this.#listener) : Promise.resolve();
  }

  /** The server's base URL, such as `http://127.0.0.1:7878/`. */
  get url(): string {
    return httpUrl(this.addr.hostname, this.addr.port);
  }

  /** The number of workers. */
  get workers(): number {
    return this.#pool.size;
  }

  /** Open client connections. */
  get connections(): number {
    return this.#connections.size;
  }

  /**
   * The worker pool's counters and timings (one job is one request), plus
   * the server's requests in progress and open connections.
   */
  stats(): ServerStats {
    return {
      ...this.#pool.stats(),
      requests: this.#counters.requests,
      connections: this.#connections.size,
      websockets: this.#counters.websockets,
      responses: { ...this.#responses },
      processes: 1,
    };
  }

  /** The whole server's figures: the supervisor's snapshot of every process, else this one's. */
  #wholeStats(): ServerStats {
    return this.#whole() ?? this.stats();
  }

  /**
   * @internal For supervised processes: where the whole server's figures
   * come from, so the stats and metrics endpoints describe every process.
   */
  setWhole(whole: () => ServerStats | undefined): void {
    this.#whole = whole;
  }

  /**
   * @internal For `--drain-delay`: keep serving, but answer
   * `GET /_brigade/health` with 503 so that load balancers stop sending.
   */
  announceDrain(): void {
    this.#draining = true;
  }

  /** @internal Stops accepting connections; the open ones are served on. */
  stopAccepting(): void {
    this.#stopped = true;
    try {
      this.#listener?.close();
    } catch {
      // Already closed.
    }
  }

  /**
   * Stops accepting, lets in-flight and queued requests finish and write
   * their responses, closes idle connections, then terminates the workers.
   * After `shutdownTimeout` what is left is cut off. Safe to call twice.
   *
   * @returns How many connections were cut with responses still owed.
   */
  close(): Promise<ShutdownReport> {
    this.#closed ??= this.#shutDown();
    return this.#closed;
  }

  /**
   * @internal Resolves once every worker is ready (and, when binding was
   * deferred, the port is bound); rejects at the first that fails to start.
   */
  async started(): Promise<void> {
    await this.#pool.ready();
    if (this.#bind === undefined || this.#stopped || this.#listener) return;
    this.#listener = this.#bind();
    this.#accepting = this.#acceptLoop(this.#listener);
  }

  /** Same as {@linkcode close}, for `await using`. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  async #shutDown(): Promise<ShutdownReport> {
    this.stopAccepting();
    await this.#accepting;
    const allClosed = new Promise<void>((resolve) => this.#allClosed = resolve);
    for (const connection of [...this.#connections]) connection.drain();
    // Event streams never end by themselves: end them, or the drain would
    // wait for them. After drain(), so nothing pipelined behind one starts.
    this.#dashboard?.close();
    if (this.#connections.size === 0) this.#allClosed?.();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(true), this.#shutdownTimeout);
    });
    const late = await Promise.race([allClosed.then(() => false), timedOut]);
    clearTimeout(timer);
    let cut = 0;
    if (late) {
      for (const connection of [...this.#connections]) {
        if (connection.busy) cut++;
        connection.close();
      }
      this.#pool.terminate();
    }
    await this.#pool.close();
    clearInterval(this.#sweeper);
    this.#accessLog?.flush();
    return { cut };
  }

  async #acceptLoop(listener: Deno.TcpListener): Promise<void> {
    while (true) {
      let conn: Deno.TcpConn;
      try {
        conn = await listener.accept();
      } catch (error) {
        if (error instanceof Deno.errors.BadResource || this.#closed) return;
        // Out of file descriptors and the like: keep serving the rest.
        this.#logger.warn(`accept failed: ${(error as Error).message}`);
        await new Promise((resolve) => setTimeout(resolve, 10));
        continue;
      }
      if (this.#closed) {
        conn.close();
        return;
      }
      if (this.#connections.size >= this.#maxConnections && !this.#evictIdle()) {
        this.#refuse(conn);
        continue;
      }
      try {
        conn.setNoDelay(true);
      } catch {
        // The peer is already gone; the read will say so.
      }
      this.#connections.add(
        new Connection(conn, this.#pool, this.#counters, this.#options, this.#forget),
      );
    }
  }

  #forget = (connection: Connection): void => {
    this.#connections.delete(connection);
    if (this.#closed && this.#connections.size === 0) this.#allClosed?.();
  };

  /**
   * Closes the longest-idle keep-alive connection to make room; returns
   * whether there was one. Idle connections cost a socket and nothing else,
   * so they yield to a client with a request.
   */
  #evictIdle(): boolean {
    let oldest: Connection | undefined;
    for (const connection of this.#connections) {
      if (connection.idleSince < (oldest?.idleSince ?? Infinity)) oldest = connection;
    }
    oldest?.close();
    return oldest !== undefined;
  }

  #refuse(conn: Deno.TcpConn): void {
    const bytes = plainResponse(503, "Too many connections", {
      close: true,
      headers: ["retry-after: 1"],
    });
    conn.write(bytes).catch(() => {}).finally(() => {
      try {
        conn.close();
      } catch {
        // Already closed.
      }
    });
  }

  #sweep(): void {
    const now = this.#clock.now = performance.now();
    for (const connection of this.#connections) connection.sweep(now);
  }
}

/**
 * Starts a brigade server.
 *
 * @param options Address, pool size, root and limits.
 * @returns The running server, already listening.
 * @throws {RangeError} If `workers` is not a positive integer.
 * @throws {Deno.errors.AddrInUse} If the port is taken.
 *
 * @example Serve ./static on a free port, then stop
 * ```ts
 * import assert from "node:assert/strict";
 * import { serve } from "./main.ts";
 *
 * await using server = await serve({ port: 0, workers: 2 });
 * const response = await fetch(server.url);
 * assert.equal(response.status, 200);
 * assert.match(await response.text(), /Hello!/);
 * ```
 */
export async function serve(options: ServeOptions = {}): Promise<Server> {
  const workers = options.workers ?? navigator.hardwareConcurrency;
  if (!Number.isInteger(workers) || workers < 1) {
    return Promise.reject(
      new RangeError(
        `Cannot start server: workers must be a positive integer, received ${workers}`,
      ),
    );
  }
  const hostname = options.hostname ?? DEFAULTS.hostname;
  const port = options.port ?? DEFAULTS.port;
  const bind = () =>
    Deno.listen({ hostname, port, ...(options.reusePort ? { reusePort: true } : {}) });
  // Sharing a port, bind only once the workers are ready: the kernel hands
  // a bound socket its share of new connections, and a process that failed
  // to start would drop them. (Port 0 has nobody to share with yet.)
  const server = new Server(
    options.reusePort && port !== 0 ? { addr: { transport: "tcp", hostname, port }, bind } : bind(),
    options,
  );
  // Every worker must start (and load the handler module) before the server
  // counts as started: a bad root, module or permission fails here, at once.
  try {
    await server.started();
  } catch (error) {
    await server.close();
    throw error;
  }
  return server;
}

/** `http://host:port/`, with an IPv6 host in brackets. */
function httpUrl(hostname: string, port: number): string {
  return `http://${hostname.includes(":") ? `[${hostname}]` : hostname}:${port}/`;
}

/** Raised for a bad command line; the CLI prints its message and exits 2. */
class UsageError extends Error {}

/** {@linkcode ServeOptions} plus the flags of the process around the server. */
export interface CommandLine extends ServeOptions {
  /** Server processes sharing the port, under a supervisor. */
  processes: number;
  /** Whether a supervisor process runs the server processes (not with `--no-supervisor`). */
  supervisor: boolean;
  /** Resident bytes past which a server process asks to be replaced; 0 for no limit. */
  maxRss: number;
  /** The supervisor's control port, in a server process it started. */
  control?: number;
  /** Milliseconds to keep serving after a stop signal, with health at 503, before draining. */
  drainDelay: number;
}

/**
 * Parses the command line into {@linkcode ServeOptions}.
 *
 * @param args Arguments after the script name.
 * @returns The options, or `"help"` when `--help` was given.
 * @throws {Error} A one-line message for a bad flag or value.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseFlags } from "./main.ts";
 *
 * const options = parseFlags(["--port", "0", "--workers", "2"]);
 * assert.ok(options !== "help");
 * assert.deepEqual([options.port, options.workers, options.root], [0, 2, undefined]);
 * ```
 */
export function parseFlags(args: string[]): CommandLine | "help" {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      // `deno task start -- --port 0` passes the `--` on: it separates nothing here.
      args: args[0] === "--" ? args.slice(1) : args,
      strict: true,
      allowPositionals: false,
      options: { ...parseArgsOptions(), help: { type: "boolean", short: "h" } },
    }));
  } catch (error) {
    throw new UsageError((error as Error).message.split("\n")[0]);
  }
  if (values.help === true) return "help";
  const text = (name: string) => values[name] as string | undefined;
  const handler = text("handler");
  const logLevel = text("log-level");
  const logFormat = text("log-format");
  if (logFormat !== undefined && !LOG_FORMATS.includes(logFormat as LogFormat)) {
    throw new UsageError(
      `--log-format must be one of ${LOG_FORMATS.join(", ")}, received ${logFormat}`,
    );
  }
  if (logLevel !== undefined && !LOG_LEVELS.includes(logLevel as LogLevel)) {
    throw new UsageError(
      `--log-level must be one of ${LOG_LEVELS.join(", ")}, received ${logLevel}`,
    );
  }
  const int = (name: string, value: string | undefined, min: number): number | undefined => {
    if (value === undefined) return undefined;
    if (!/^\d+$/.test(value) || Number(value) < min || !Number.isSafeInteger(Number(value))) {
      throw new UsageError(
        `--${name} must be an integer of at least ${min}, received ${JSON.stringify(value)}`,
      );
    }
    return Number(value);
  };
  const port = int("port", text("port"), 0);
  if (port !== undefined && port > 65535) {
    throw new UsageError(`--port must be at most 65535, received ${port}`);
  }
  const control = int("control", text("control"), 1);
  if (control !== undefined && control > 65535) {
    throw new UsageError(`--control must be at most 65535, received ${control}`);
  }
  const processes = int("processes", text("processes"), 1) ?? numericDefault("processes");
  const supervisor = values["no-supervisor"] !== true;
  if (processes > 1 && !supervisor && control === undefined) {
    throw new UsageError(`--processes ${processes} needs the supervisor, received --no-supervisor`);
  }
  return {
    processes,
    supervisor,
    maxRss: int("max-rss", text("max-rss"), 0) ?? numericDefault("max-rss"),
    drainDelay: int("drain-delay", text("drain-delay"), 0) ?? numericDefault("drain-delay"),
    control,
    port,
    hostname: text("hostname"),
    workers: int("workers", text("workers"), 1),
    workerConcurrency: int(
      "worker-concurrency",
      text("worker-concurrency"),
      1,
    ),
    root: text("root"),
    sleepMs: int("sleep-ms", text("sleep-ms"), 0),
    handler: handler === undefined ? undefined : handlerUrl(handler),
    logLevel: logLevel as LogLevel | undefined,
    accessLog: values.quiet !== true,
    maxBody: int("max-body", text("max-body"), 0),
    maxHead: int("max-head", text("max-head"), 64),
    maxRequests: int("max-requests", text("max-requests"), 1),
    maxConnections: int("max-connections", text("max-connections"), 1),
    maxQueue: int("max-queue", text("max-queue"), 0),
    queueTimeout: int("queue-timeout", text("queue-timeout"), 1),
    stats: values.stats === true ? true : undefined,
    metrics: values.metrics === true ? true : undefined,
    logFormat: logFormat as LogFormat | undefined,
    dashboard: values.dashboard === true ? true : undefined,
    dashboardToken: headerValue("dashboard-token", text("dashboard-token")),
    trustProxy: values["trust-proxy"] === true ? true : undefined,
    timeout: int("timeout", text("timeout"), 1),
    writeTimeout: int("write-timeout", text("write-timeout"), 1),
    idleTimeout: int("idle-timeout", text("idle-timeout"), 1),
    headTimeout: int("head-timeout", text("head-timeout"), 1),
    shutdownTimeout: int("shutdown-timeout", text("shutdown-timeout"), 0),
    wsMaxMessage: int("ws-max-message", text("ws-max-message"), 1),
    wsPingInterval: int("ws-ping-interval", text("ws-ping-interval"), 0),
    cacheControl: headerValue("cache-control", text("cache-control")),
    cors: values.cors === true ? true : undefined,
    spa: values.spa === true ? true : undefined,
    dirListing: values["dir-listing"] === true ? true : undefined,
  };
}

/**
 * A handler module's URL: a URL as given, or a path resolved against the
 * working directory and turned into a file URL (so `#` or `%` in a folder
 * name stays part of the path).
 */
function handlerUrl(handler: string | URL): string {
  if (handler instanceof URL) return handler.href;
  if (/^[a-z][a-z0-9+.-]+:/i.test(handler)) return new URL(handler).href;
  return pathToFileURL(resolvePath(handler)).href;
}

/** A flag's value that goes out as a header value: visible ASCII, spaces and tabs only. */
function headerValue(name: string, value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  if (!/^[\x21-\x7e]([\t\x20-\x7e]*[\x21-\x7e])?$/.test(value)) {
    throw new UsageError(
      `--${name} must be a header value (visible ASCII, inner spaces), received ${
        JSON.stringify(value)
      }`,
    );
  }
  return value;
}

function definedOnly<T extends object>(options: T): Partial<T> {
  return Object.fromEntries(
    Object.entries(options).filter(([, value]) => value !== undefined),
  ) as Partial<T>;
}

async function main(): Promise<number> {
  let options: CommandLine | "help";
  try {
    options = parseFlags(Deno.args);
  } catch (error) {
    console.error(`brigade: ${(error as Error).message} (see --help)`);
    return 2;
  }
  if (options === "help") {
    console.log(usage());
    return 0;
  }
  return options.supervisor ? await supervise(options) : await runServer(options);
}

/**
 * Calls `stop` at the first SIGINT or SIGTERM and `now` at a signal after
 * {@linkcode STOP_WINDOW_MS}; copies within the window are ignored. Returns
 * a function that removes the listeners.
 */
function onStopSignals(
  stop: (signal: Deno.Signal) => void,
  now: (signal: Deno.Signal) => void,
): () => void {
  let firstSignalAt = -1;
  const listeners = (["SIGINT", "SIGTERM"] as const).map((signal) => {
    const listener = () => {
      const at = performance.now();
      if (firstSignalAt < 0) {
        firstSignalAt = at;
        stop(signal);
      } else if (at - firstSignalAt > STOP_WINDOW_MS) {
        now(signal);
      }
      // Within the window: another copy of the same stop request (a terminal
      // signals the whole process group, and `deno task` forwards its copy).
    };
    Deno.addSignalListener(signal, listener);
    return [signal, listener] as const;
  });
  return () => {
    for (const [signal, listener] of listeners) Deno.removeSignalListener(signal, listener);
  };
}

/** The supervisor process: runs `--processes` server processes until a signal. */
async function supervise(options: CommandLine): Promise<number> {
  const fail = (message: string) => {
    console.error(`brigade: cannot start: ${message}`);
    return 1;
  };
  const run = Deno.permissions.querySync({ name: "run", command: Deno.execPath() });
  if (run.state !== "granted") {
    return fail(
      `Cannot start server processes without --allow-run (or run with --no-supervisor), received no permission to run ${Deno.execPath()}`,
    );
  }
  let supervisor: Supervisor;
  try {
    supervisor = new Supervisor({
      args: Deno.args,
      processes: options.processes,
      hostname: options.hostname ?? DEFAULTS.hostname,
      port: options.port ?? DEFAULTS.port,
      stopMs: options.drainDelay + (options.shutdownTimeout ?? DEFAULTS.shutdownTimeout),
    }, await ownRuntimeFlags());
  } catch (error) {
    return fail((error as Error).message);
  }
  const removeListeners = onStopSignals(
    (signal) => supervisor.stop(signal),
    (signal) => supervisor.stop(signal),
  );
  try {
    const { port, workers } = await supervisor.start();
    const url = httpUrl(options.hostname ?? DEFAULTS.hostname, port);
    const each = options.processes > 1 ? ` in each of ${options.processes} processes` : "";
    console.log(`Listening on ${url} with ${workers} workers${each}`);
    return await supervisor.finished;
  } catch (error) {
    // A server process that failed to start already said why, in one line.
    if (error instanceof StartError) return error.code;
    return fail((error as Error).message);
  } finally {
    removeListeners();
  }
}

/** One server process, alone or started by a supervisor (`--control`). */
async function runServer(options: CommandLine): Promise<number> {
  const stopping = Promise.withResolvers<number>();
  let link: SupervisorLink | undefined;
  let server: Server | undefined;
  try {
    if (options.control !== undefined) {
      link = await SupervisorLink.connect(options.control);
      // Without its supervisor nobody would restart or stop this process:
      // drain, or, still starting, just go.
      link.closed.then(() => server ? stopping.resolve(0) : Deno.exit(1));
    }
    server = await serve({ ...options, reusePort: link !== undefined });
  } catch (error) {
    console.error(`brigade: cannot start: ${(error as Error).message}`);
    link?.close();
    return 1;
  }
  const started = server;
  if (link === undefined) {
    console.log(`Listening on ${started.url} with ${started.workers} workers`);
  } else {
    link.ready(started.addr.port, started.workers);
    started.setWhole(() => link.whole);
  }
  // Once a second: report the figures (the supervisor's sign of life) and
  // check that this process can still be trusted, from one stats() call.
  let distrusted = false;
  const monitor = setInterval(() => {
    const stats = started.stats();
    link?.report(stats);
    if (distrusted) return;
    const reason = distrust(stats, Deno.memoryUsage().rss, options.maxRss);
    if (reason === undefined) return;
    distrusted = true;
    if (link === undefined) {
      console.error(`brigade: ${reason}; draining so that a fresh process can take over`);
      stopping.resolve(1);
      return;
    }
    // New connections go to the other processes from now on (alone, it
    // keeps listening: its replaced workers may still serve them).
    if (reason === ALL_STUCK && link.siblings > 0) started.stopAccepting();
    link.recycle(reason);
  }, STATS_INTERVAL_MS);
  const removeListeners = onStopSignals(() => stopping.resolve(0), () => {
    const cut = started.stats().requests;
    console.error(`Second signal: exiting now; cut ${cut} requests in flight.`);
    Deno.exit(130);
  });
  const code = await stopping.promise;
  distrusted = true; // draining already: only the reports go on
  if (options.drainDelay > 0) {
    console.log(`Draining in ${options.drainDelay} ms; health answers 503 meanwhile.`);
    started.announceDrain();
    await new Promise((resolve) => setTimeout(resolve, options.drainDelay));
  }
  console.log("Shutting down.");
  const report = await started.close();
  clearInterval(monitor);
  removeListeners();
  link?.close();
  if (report.cut > 0) {
    console.error(`Shutdown timed out: cut ${report.cut} connections with responses owed.`);
    return 1;
  }
  return code;
}

if (import.meta.main) {
  Deno.exit(await main());
}
