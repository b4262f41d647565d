/**
 * Streaming, memory, concurrency and deadline figures of issue 7, measured
 * against brigade run as a child process, each scenario on its own fresh
 * server (2 workers, `--quiet --stats`, serving `bench/stream_handler.ts`
 * unless said otherwise), stopped with SIGTERM afterwards even on failure.
 *
 * ```
 * deno run --allow-net --allow-read --allow-run --allow-env bench/stream.ts [options]
 *   --only a,b        run only these scenarios (names below)
 *   --quick           shorter holds and streams, for development
 *   --sse-seconds N   length of the SSE stream (default 60; 5 with --quick)
 * ```
 *
 * Scenarios (name: what it does → figure):
 *
 * - `chunks`: raw TCP `GET /ticks`; the handler enqueues a line every 50 ms
 *   holding its `Date.now()`; the client decodes the chunked body and takes
 *   arrival − enqueue time per line → max delay < 50 ms.
 * - `sse`: fetch of a `text/event-stream`, one event per second for N s,
 *   event i due at t0 + i s (t0 and the enqueue time are in the event) →
 *   every event arrives, none more than 50 ms after its due time.
 * - `gib`: fetch of a 1 GiB body from a pull-based stream (one fresh 64 KiB
 *   array per pull), read to the end → server RSS growth < 50 MB.
 * - `static-pipeline`: no `--handler`, `--root` a temp dir with a 1 MiB file;
 *   10 raw connections each write 150 pipelined GETs of it and never read;
 *   RSS sampled for 12 s → peak < 150 MB.
 * - `handler-pipeline`: 4 raw connections each write 200 pipelined GETs of
 *   a handler route answering `new Response(<10 MiB Uint8Array>)`, never
 *   read; RSS sampled for 16 s → peak < 150 MB. `handler-pipeline-stream`
 *   is the same against a route streaming its 10 MiB from a pull stream.
 * - `uploads`, `uploads-chunked`: 400 raw connections each send a POST head
 *   (Content-Length 1000000, or chunked) and 100 KB of body, then stall
 *   while the handler reads the body as a stream; RSS sampled for 8 s
 *   (under the 10 s body timeout) → peak < 150 MB.
 * - `big-concurrent`: 16 concurrent fetches of 60 MiB pull-streamed bodies,
 *   all read to the end → peak RSS < 200 MB.
 * - `await200`: 200 concurrent fetches of a route that awaits 200 ms, on
 *   the default `--worker-concurrency` → slowest done within 600 ms.
 * - `quick-during-wait`: 4 fetches of a 3 s awaiting route started one after
 *   another, then one `GET /` → under 50 ms; then sequential `GET /` until
 *   the 4 finish → p99 < 50 ms.
 * - `cpu-deadlines`: 100 concurrent POSTs each spinning 400 ms of CPU in the
 *   handler, default `--timeout`, `--queue-timeout 60000` → all 200, and
 *   both workers (a random id per worker module instance) answered.
 * - `slow-reader`: raw TCP client reading a 32 MiB streamed body at
 *   1 MiB/s (default `--write-timeout`) → receives all of it.
 *
 * RSS is VmRSS of the server's deno process (workers are its threads) from
 * /proc/<pid>/status, sampled every 50 ms by a small bash loop with its own
 * clock (Deno refuses /proc reads without --allow-all); "start" is taken
 * after one warm-up request, and the memory attacks also print the RSS and
 * the server's stats 1 s after their clients closed. MB = 10^6 bytes.
 * Client and server share this machine's cores, so a loaded machine shows in
 * the latency figures: the load average is printed first. Exits 1 if any
 * figure fails.
 *
 * @module
 */

import { parseArgs } from "node:util";
import {
  brigadeArgs,
  type ServerProcess,
  START_ENV,
  startServerProcess,
  within,
} from "../tests/_process.ts";
import { RssSampler } from "./_rss.ts";

const { values: flags } = parseArgs({
  args: Deno.args,
  options: {
    only: { type: "string" },
    quick: { type: "boolean", default: false },
    "sse-seconds": { type: "string" },
    help: { type: "boolean", short: "h", default: false },
  },
});

const QUICK = flags.quick;
const SSE_SECONDS = Number(flags["sse-seconds"] ?? (QUICK ? 5 : 60));
if (!Number.isInteger(SSE_SECONDS) || SSE_SECONDS < 1 || SSE_SECONDS > 3600) {
  console.error(
    `--sse-seconds must be an integer from 1 to 3600, received ${flags["sse-seconds"]}`,
  );
  Deno.exit(2);
}
const MiB = 1 << 20;
const MB = 1e6;
const HANDLER = "bench/stream_handler.ts";
const encoder = new TextEncoder();
const decoder = new TextDecoder();

// ---------------------------------------------------------------------------
// Results

interface Figure {
  scenario: string;
  name: string;
  target: string;
  measured: string;
  pass: boolean;
}

const figures: Figure[] = [];

/** One figure a scenario promises to report, by its key. */
interface Expected {
  name: string;
  target: string;
}

class Reporter {
  #scenario: string;
  #expected: Map<string, Expected>;
  #reported = new Set<string>();

  constructor(scenario: string, expected: Record<string, Expected>) {
    this.#scenario = scenario;
    this.#expected = new Map(Object.entries(expected));
  }

  figure(key: string, measured: string, pass: boolean): void {
    const expected = this.#expected.get(key);
    if (!expected) throw new Error(`no figure ${key} in ${this.#scenario}`);
    this.#reported.add(key);
    const figure = { scenario: this.#scenario, ...expected, measured, pass };
    figures.push(figure);
    console.log(
      `${pass ? "PASS" : "FAIL"}  ${figure.name}  (target ${figure.target})  measured: ${measured}`,
    );
  }

  /** Reports every figure not yet reported as failed, with `why`. */
  missing(why: string): void {
    for (const key of this.#expected.keys()) {
      if (!this.#reported.has(key)) this.figure(key, `not measured: ${why}`, false);
    }
  }
}

function note(text: string): void {
  console.log(`      ${text}`);
}

// ---------------------------------------------------------------------------
// Small helpers

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
}

function fmtMB(bytes: number): string {
  return `${(bytes / MB).toFixed(1)} MB`;
}

function fmtMs(ms: number): string {
  return `${ms.toFixed(1)} ms`;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

// ---------------------------------------------------------------------------
// The server under test

interface Server {
  url: string;
  port: number;
  pid: number;
  stats(): Promise<Record<string, unknown>>;
  stop(): Promise<string>;
}

const SERVER_ARGS = brigadeArgs([
  "--workers",
  "2",
  "--stats",
  // Only how long the bench waits for the server to exit; no figure depends on it.
  "--shutdown-timeout",
  "3000",
]);

async function startServer(extra: string[]): Promise<Server> {
  const process: ServerProcess = await within(
    startServerProcess([...SERVER_ARGS, ...extra], { env: START_ENV }),
    "server start",
    30_000,
  );
  const url = process.url;
  let stopped: Promise<string> | undefined;
  return {
    url,
    port: Number(new URL(url).port),
    pid: process.child.pid,
    async stats() {
      const response = await fetch(new URL("/_brigade/stats", url), {
        signal: AbortSignal.timeout(5000),
      });
      return await response.json();
    },
    stop() {
      stopped ??= (async () => {
        try {
          process.child.kill("SIGTERM");
        } catch {
          // Already exited.
        }
        try {
          await within(process.child.status, "server exit", 15_000);
        } catch {
          try {
            process.child.kill("SIGKILL");
          } catch {
            // Already exited.
          }
          await process.child.status;
        }
        const stderr = await within(process.stderr, "server stderr", 5000).catch(() => "");
        await within(process.stdout, "server stdout", 5000).catch(() => "");
        return stderr;
      })();
      return stopped;
    },
  };
}

function compactStats(stats: Record<string, unknown>): string {
  const keys = [
    "connections",
    "requests",
    "running",
    "queued",
    "busy",
    "blocked",
    "completed",
    "failed",
    "replaced",
  ];
  return keys.map((key) => `${key}=${stats[key]}`).join(" ");
}

// ---------------------------------------------------------------------------
// Raw HTTP/1.1 over TCP

/** Parses one HTTP/1.1 response from bytes as they arrive: head, then a body by length or chunks. */
class ResponseParser {
  status = 0;
  headers = new Headers();
  done = false;
  bodyBytes = 0;
  #state: "head" | "length" | "close" | "size" | "data" | "crlf" | "trailers" | "done" = "head";
  #left: Uint8Array = new Uint8Array(0);
  #remaining = 0;

  get headDone(): boolean {
    return this.#state !== "head";
  }

  /** Feeds bytes; calls `onData` with each piece of (de-chunked) body. */
  feed(input: Uint8Array, onData: (data: Uint8Array) => void): void {
    let buf = input;
    if (this.#left.length > 0) {
      buf = new Uint8Array(this.#left.length + input.length);
      buf.set(this.#left);
      buf.set(input, this.#left.length);
      this.#left = new Uint8Array(0);
    }
    let i = 0;
    const data = (n: number) => {
      const piece = buf.subarray(i, i + n);
      i += n;
      this.#remaining -= n;
      this.bodyBytes += n;
      onData(piece);
    };
    while (i < buf.length && this.#state !== "done") {
      switch (this.#state) {
        case "head": {
          const end = indexOf(buf, i, [13, 10, 13, 10]);
          if (end < 0) {
            if (buf.length - i > 64 << 10) throw new Error("response head too long");
            this.#left = buf.slice(i);
            return;
          }
          const lines = decoder.decode(buf.subarray(i, end)).split("\r\n");
          i = end + 4;
          const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0]);
          if (!m) throw new Error(`bad status line: ${JSON.stringify(lines[0])}`);
          this.status = Number(m[1]);
          for (const line of lines.slice(1)) {
            const colon = line.indexOf(":");
            if (colon > 0) this.headers.append(line.slice(0, colon), line.slice(colon + 1).trim());
          }
          const length = this.headers.get("content-length");
          if (/chunked/i.test(this.headers.get("transfer-encoding") ?? "")) this.#state = "size";
          else if (length !== null) {
            this.#remaining = Number(length);
            this.#state = this.#remaining > 0 ? "length" : "done";
          } else if (this.status === 204 || this.status === 304) this.#state = "done";
          else this.#state = "close";
          break;
        }
        case "length":
          data(Math.min(this.#remaining, buf.length - i));
          if (this.#remaining === 0) this.#state = "done";
          break;
        case "close":
          data(buf.length - i);
          break;
        case "size": {
          const eol = indexOf(buf, i, [13, 10]);
          if (eol < 0) {
            if (buf.length - i > 1024) throw new Error("chunk size line too long");
            this.#left = buf.slice(i);
            return;
          }
          const text = decoder.decode(buf.subarray(i, eol)).split(";")[0].trim();
          if (!/^[0-9a-fA-F]+$/.test(text)) throw new Error(`bad chunk size ${text}`);
          i = eol + 2;
          this.#remaining = parseInt(text, 16);
          this.#state = this.#remaining === 0 ? "trailers" : "data";
          break;
        }
        case "data":
          data(Math.min(this.#remaining, buf.length - i));
          if (this.#remaining === 0) this.#state = "crlf";
          break;
        case "crlf":
          if (buf.length - i < 2) {
            this.#left = buf.slice(i);
            return;
          }
          if (buf[i] !== 13 || buf[i + 1] !== 10) throw new Error("chunk not followed by CRLF");
          i += 2;
          this.#state = "size";
          break;
        case "trailers": {
          const eol = indexOf(buf, i, [13, 10]);
          if (eol < 0) {
            this.#left = buf.slice(i);
            return;
          }
          this.#state = eol === i ? "done" : "trailers";
          i = eol + 2;
          break;
        }
      }
    }
    if (this.#state === "done") this.done = true;
  }

  /** The connection closed: a close-delimited body is complete, anything else is cut short. */
  eof(): void {
    if (this.#state === "close") {
      this.#state = "done";
      this.done = true;
    }
  }
}

function indexOf(buf: Uint8Array, from: number, needle: number[]): number {
  outer: for (let i = from; i <= buf.length - needle.length; i++) {
    for (let j = 0; j < needle.length; j++) if (buf[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

async function connect(server: Server): Promise<Deno.TcpConn> {
  return await within(
    Deno.connect({ hostname: "127.0.0.1", port: server.port }),
    "connect",
    5000,
  );
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array, ms = 10_000): Promise<void> {
  const deadline = performance.now() + ms;
  let offset = 0;
  while (offset < bytes.length) {
    const left = deadline - performance.now();
    if (left <= 0) throw new Error(`write stalled at ${offset}/${bytes.length} bytes`);
    offset += await within(conn.write(bytes.subarray(offset)), "write", left);
  }
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // Already closed.
  }
}

interface ReadOptions {
  /** Called with each body piece and the `Date.now()` at which its read returned. */
  onData?: (data: Uint8Array, arrivedAt: number) => void;
  /** Give up after this long, in ms. */
  limitMs: number;
  /** Read at most this many bytes per second, pacing reads (a slow client). */
  bytesPerSecond?: number;
  readSize?: number;
}

/** Reads one whole response from `conn`. Throws if it does not complete within `limitMs`. */
async function readResponse(conn: Deno.Conn, options: ReadOptions): Promise<ResponseParser> {
  const parser = new ResponseParser();
  const buf = new Uint8Array(options.readSize ?? 64 << 10);
  const began = performance.now();
  const deadline = began + options.limitMs;
  let total = 0;
  while (!parser.done) {
    if (options.bytesPerSecond) {
      const due = began + (total / options.bytesPerSecond) * 1000;
      await sleep(due - performance.now());
    }
    const left = deadline - performance.now();
    if (left <= 0) {
      throw new Error(
        `response incomplete after ${options.limitMs} ms (${parser.bodyBytes} body bytes)`,
      );
    }
    const n = await within(conn.read(buf), "read", left);
    const arrivedAt = Date.now();
    if (n === null) {
      parser.eof();
      if (!parser.done) {
        throw new Error(
          `connection closed by the server after ${parser.bodyBytes} body bytes (status ${parser.status})`,
        );
      }
      break;
    }
    total += n;
    parser.feed(buf.subarray(0, n), (data) => options.onData?.(data, arrivedAt));
  }
  return parser;
}

// ---------------------------------------------------------------------------
// Scenario plumbing

interface Context {
  /** Aborted when the scenario ends: cancels its fetches. */
  signal: AbortSignal;
  /** Starts a server that the scenario's cleanup stops. */
  server(extra?: string[]): Promise<Server>;
  /** Opens a raw connection that the scenario's cleanup closes. */
  connect(server: Server): Promise<Deno.TcpConn>;
  /** Registers a cleanup step. */
  defer(fn: () => void | Promise<void>): void;
  report: Reporter;
}

interface Scenario {
  name: string;
  /** Longest the scenario may take, in ms. */
  limitMs: number;
  figures: Record<string, Expected>;
  run(ctx: Context): Promise<void>;
}

async function runScenario(scenario: Scenario): Promise<void> {
  console.log(`\n## ${scenario.name}`);
  const report = new Reporter(scenario.name, scenario.figures);
  const abort = new AbortController();
  const conns = new Set<Deno.Conn>();
  const servers: Server[] = [];
  const deferred: (() => void | Promise<void>)[] = [];
  const ctx: Context = {
    signal: abort.signal,
    async server(extra = ["--handler", HANDLER]) {
      const server = await startServer(extra);
      servers.push(server);
      return server;
    },
    async connect(server) {
      const conn = await connect(server);
      conns.add(conn);
      return conn;
    },
    defer(fn) {
      deferred.push(fn);
    },
    report,
  };
  const began = performance.now();
  let failure: string | undefined;
  try {
    await within(scenario.run(ctx), `scenario ${scenario.name}`, scenario.limitMs);
  } catch (error) {
    failure = (error as Error).message;
    console.log(`      error: ${failure}`);
  } finally {
    abort.abort();
    for (const conn of conns) closeQuietly(conn);
    for (const fn of deferred.reverse()) {
      try {
        await fn();
      } catch (error) {
        console.log(`      cleanup: ${(error as Error).message}`);
      }
    }
    for (const server of servers) {
      const stderr = (await server.stop()).trim();
      if (stderr) {
        const lines = stderr.split("\n");
        note(`server stderr (${lines.length} lines; last 5):`);
        for (const line of lines.slice(-5)) note(`  ${line.slice(0, 200)}`);
      }
    }
  }
  report.missing(failure ?? "the scenario ended without reporting it");
  note(`(${((performance.now() - began) / 1000).toFixed(1)} s)`);
}

/** Fetches `path` and reads the whole body; returns status, bytes and when it finished. */
async function get(
  server: Server,
  path: string,
  signal: AbortSignal,
  init: RequestInit = {},
): Promise<{ status: number; text: string; ms: number }> {
  const began = performance.now();
  const response = await fetch(new URL(path, server.url), {
    ...init,
    signal: AbortSignal.any([signal, AbortSignal.timeout(120_000)]),
  });
  const text = await response.text();
  return { status: response.status, text, ms: performance.now() - began };
}

async function statsLine(server: Server): Promise<string> {
  return await server.stats().then(compactStats, (e) => `stats failed: ${e.message}`);
}

/**
 * Keeps `conns` open and unread for `ms` while `sampler` runs, then stops it,
 * closes them, and notes the server's stats at mid-hold and 1 s after the
 * close, to show what the server still holds. Returns the RSS then.
 */
async function holdAttack(
  server: Server,
  sampler: RssSampler,
  conns: Deno.Conn[],
  ms: number,
): Promise<number> {
  await sleep(ms / 2);
  note(`stats at mid-hold: ${await statsLine(server)}`);
  await sleep(ms / 2);
  await sampler.stop();
  for (const conn of conns) closeQuietly(conn);
  await sleep(1000);
  const after = await RssSampler.start(server.pid);
  await after.stop();
  note(`1 s after the clients closed: ${await statsLine(server)}`);
  return after.start;
}

/**
 * Pipelines `repeat` copies of `request` on each of `count` connections that
 * never read, holds them for `holdMs`, and reports the server's peak RSS
 * against 150 MB.
 */
async function pipelineAttack(
  server: Server,
  report: Reporter,
  request: string,
  repeat: number,
  count: number,
  holdMs: number,
): Promise<void> {
  const sampler = await RssSampler.start(server.pid);
  try {
    const bytes = encoder.encode(request.repeat(repeat));
    const conns = await Promise.all(Array.from({ length: count }, () => connect(server)));
    await Promise.all(conns.map((conn) => writeAll(conn, bytes)));
    const after = await holdAttack(server, sampler, conns, holdMs);
    report.figure(
      "rss",
      `${sampler.describe()}; ${fmtMB(after)} 1 s after the clients closed`,
      sampler.peak < 150 * MB,
    );
  } finally {
    await sampler.stop();
  }
}

// ---------------------------------------------------------------------------
// Scenarios

const scenarios: Scenario[] = [
  {
    name: "chunks",
    limitMs: 30_000,
    figures: {
      delay: { name: "Streaming: chunk enqueue → client arrival, max", target: "< 50 ms" },
    },
    async run({ server: start, connect, report }) {
      const server = await start();
      const n = QUICK ? 21 : 61;
      const every = 50;
      const conn = await connect(server);
      await writeAll(
        conn,
        encoder.encode(`GET /ticks?n=${n}&every=${every} HTTP/1.1\r\nHost: bench\r\n\r\n`),
      );
      const delays: number[] = [];
      let text = "";
      const parser = await readResponse(conn, {
        limitMs: n * every + 10_000,
        onData(data, arrivedAt) {
          text += decoder.decode(data, { stream: true });
          let eol;
          while ((eol = text.indexOf("\n")) >= 0) {
            const [, sentAt] = text.slice(0, eol).split(" ").map(Number);
            text = text.slice(eol + 1);
            delays.push(arrivedAt - sentAt);
          }
        },
      });
      const sorted = delays.toSorted((a, b) => a - b);
      const max = sorted.at(-1) ?? NaN;
      report.figure(
        "delay",
        `max ${max} ms, p50 ${percentile(sorted, 50)} ms over ${delays.length}/${n} chunks ` +
          `(${
            parser.headers.get("transfer-encoding") ?? "no"
          } transfer-encoding, Date.now() resolution)`,
        delays.length === n && max < 50,
      );
    },
  },
  {
    name: "sse",
    limitMs: SSE_SECONDS * 1000 + 30_000,
    figures: {
      events: {
        name: `SSE: ${SSE_SECONDS} events at 1/s, each on time`,
        target: `all ${SSE_SECONDS}, each < 50 ms after its due time`,
      },
    },
    async run({ server: start, report, signal }) {
      const server = await start();
      const n = SSE_SECONDS;
      const response = await fetch(new URL(`/sse?n=${n}&every=1000`, server.url), {
        signal: AbortSignal.any([signal, AbortSignal.timeout(n * 1000 + 20_000)]),
      });
      const type = response.headers.get("content-type");
      const late: number[] = [];
      const delays: number[] = [];
      let text = "";
      for await (const chunk of response.body!.pipeThrough(new TextDecoderStream())) {
        const arrivedAt = Date.now();
        text += chunk;
        let end;
        while ((end = text.indexOf("\n\n")) >= 0) {
          const event = text.slice(0, end);
          text = text.slice(end + 2);
          const data = /^data: (.*)$/m.exec(event)?.[1];
          if (data === undefined) continue;
          const { i, t0, t } = JSON.parse(data);
          late.push(arrivedAt - (t0 + i * 1000));
          delays.push(arrivedAt - t);
        }
      }
      const maxLate = Math.max(...late);
      report.figure(
        "events",
        `${late.length}/${n} events (${type}), max lateness ${maxLate} ms, ` +
          `max enqueue → arrival ${Math.max(...delays)} ms`,
        response.status === 200 && late.length === n && maxLate < 50,
      );
    },
  },
  {
    name: "gib",
    limitMs: 300_000,
    figures: {
      rss: { name: "Streaming: 1 GiB pull-stream response, server RSS growth", target: "< 50 MB" },
    },
    async run({ server: start, report, signal }) {
      const server = await start();
      await get(server, "/bytes?size=1048576", signal);
      const size = 1024 * MiB;
      const sampler = await RssSampler.start(server.pid);
      try {
        const began = performance.now();
        const response = await fetch(new URL(`/bytes?size=${size}`, server.url), {
          signal: AbortSignal.any([signal, AbortSignal.timeout(240_000)]),
        });
        let received = 0;
        for await (const chunk of response.body!) received += chunk.length;
        const seconds = (performance.now() - began) / 1000;
        await sampler.stop();
        report.figure(
          "rss",
          `${sampler.describe()}; ${received}/${size} bytes in ${seconds.toFixed(1)} s ` +
            `(${(received / MiB / seconds).toFixed(0)} MiB/s)`,
          received === size && sampler.peak - sampler.start < 50 * MB,
        );
      } finally {
        await sampler.stop();
      }
    },
  },
  {
    name: "static-pipeline",
    limitMs: 60_000,
    figures: {
      rss: {
        name: "Memory: 10 conns × 150 pipelined GET of a 1 MiB static file, never read",
        target: "peak RSS < 150 MB",
      },
    },
    async run({ server: start, defer, report, signal }) {
      const mktemp = await new Deno.Command("mktemp", { args: ["-d"], stdout: "piped" }).output();
      const dir = decoder.decode(mktemp.stdout).trim();
      if (!mktemp.success || !dir.startsWith("/")) throw new Error("mktemp -d failed");
      defer(async () => {
        await new Deno.Command("rm", { args: ["-rf", "--", dir] }).output();
      });
      const made = await new Deno.Command("sh", {
        args: ["-c", 'head -c 1048576 /dev/urandom > "$1/big.bin"', "sh", dir],
      }).output();
      if (!made.success) throw new Error("could not write the 1 MiB file");
      const server = await start(["--root", dir]);
      const warm = await get(server, "/big.bin", signal);
      if (warm.status !== 200) throw new Error(`GET /big.bin: ${warm.status}`);
      const request = "GET /big.bin HTTP/1.1\r\nHost: bench\r\n\r\n";
      await pipelineAttack(server, report, request, 150, 10, QUICK ? 5000 : 12_000);
    },
  },
  ...(["blob", "bytes"] as const).map((route): Scenario => ({
    name: route === "blob" ? "handler-pipeline" : "handler-pipeline-stream",
    limitMs: 60_000,
    figures: {
      rss: {
        name: `Memory: 4 conns × 200 pipelined GET of a 10 MiB handler response ${
          route === "blob" ? "(new Response(bytes))" : "(pull stream, variant)"
        }, never read`,
        target: "peak RSS < 150 MB",
      },
    },
    async run({ server: start, report, signal }) {
      const server = await start();
      const path = `/${route}?size=${10 * MiB}`;
      await get(server, path, signal);
      const request = `GET ${path} HTTP/1.1\r\nHost: bench\r\n\r\n`;
      await pipelineAttack(server, report, request, 200, 4, QUICK ? 6000 : 16_000);
    },
  })),
  ...(["content-length", "chunked"] as const).map((framing): Scenario => ({
    name: framing === "chunked" ? "uploads-chunked" : "uploads",
    limitMs: 90_000,
    figures: {
      rss: {
        name: `Memory: 400 stalled uploads of 1 MB (${framing}), 100 KB sent each`,
        target: "peak RSS < 150 MB",
      },
    },
    async run({ server: start, report, signal }) {
      const server = await start();
      const warm = await get(server, "/upload", signal, { method: "POST", body: "x".repeat(1000) });
      if (warm.text.trim() !== "1000") throw new Error(`warm-up upload: ${warm.text}`);
      const sampler = await RssSampler.start(server.pid);
      try {
        const sent = 100_000;
        let bytes: Uint8Array;
        if (framing === "chunked") {
          const piece = 10_000;
          const chunk = `${piece.toString(16)}\r\n${"u".repeat(piece)}\r\n`;
          bytes = encoder.encode(
            "POST /upload HTTP/1.1\r\nHost: bench\r\nTransfer-Encoding: chunked\r\n\r\n" +
              chunk.repeat(sent / piece),
          );
        } else {
          bytes = encoder.encode(
            "POST /upload HTTP/1.1\r\nHost: bench\r\nContent-Length: 1000000\r\n\r\n" +
              "u".repeat(sent),
          );
        }
        const began = performance.now();
        const conns: Deno.TcpConn[] = [];
        for (let i = 0; i < 400; i++) conns.push(await connect(server));
        await Promise.all(conns.map((conn) => writeAll(conn, bytes)));
        note(
          `400 connections opened and 100 KB written on each in ${
            fmtMs(performance.now() - began)
          }`,
        );
        // Under the 10 s body timeout, so every upload is still held.
        const after = await holdAttack(server, sampler, conns, QUICK ? 4000 : 8000);
        report.figure(
          "rss",
          `${sampler.describe()}; ${fmtMB(after)} 1 s after the clients closed`,
          sampler.peak < 150 * MB,
        );
      } finally {
        await sampler.stop();
      }
    },
  })),
  {
    name: "big-concurrent",
    limitMs: 180_000,
    figures: {
      rss: {
        name: "Memory: 16 concurrent 60 MiB streamed handler responses, read by clients",
        target: "peak RSS < 200 MB",
      },
    },
    async run({ server: start, report, signal }) {
      const server = await start();
      await get(server, "/bytes?size=1048576", signal);
      const size = 60 * MiB;
      const sampler = await RssSampler.start(server.pid);
      try {
        const began = performance.now();
        const received = await Promise.all(Array.from({ length: 16 }, async () => {
          const response = await fetch(new URL(`/bytes?size=${size}`, server.url), {
            signal: AbortSignal.any([signal, AbortSignal.timeout(150_000)]),
          });
          let n = 0;
          for await (const chunk of response.body!) n += chunk.length;
          return n;
        }));
        const seconds = (performance.now() - began) / 1000;
        await sampler.stop();
        const complete = received.filter((n) => n === size).length;
        report.figure(
          "rss",
          `${sampler.describe()}; ${complete}/16 complete in ${seconds.toFixed(1)} s`,
          complete === 16 && sampler.peak < 200 * MB,
        );
      } finally {
        await sampler.stop();
      }
    },
  },
  {
    name: "await200",
    limitMs: 60_000,
    figures: {
      slowest: {
        name: "Concurrency: 200 concurrent 200 ms awaiting requests on 2 workers, slowest",
        target: "< 600 ms",
      },
    },
    async run({ server: start, report, signal }) {
      const server = await start();
      await get(server, "/", signal);
      const began = performance.now();
      const results = await Promise.all(
        Array.from({ length: 200 }, () => get(server, "/wait?ms=200", signal)),
      );
      const total = performance.now() - began;
      const times = results.map((r) => r.ms).sort((a, b) => a - b);
      const ok = results.filter((r) => r.status === 200).length;
      report.figure(
        "slowest",
        `slowest ${fmtMs(times.at(-1)!)}, p50 ${fmtMs(percentile(times, 50))}, ` +
          `${ok}/200 status 200, all done ${fmtMs(total)} after the first was sent`,
        ok === 200 && times.at(-1)! < 600,
      );
    },
  },
  {
    name: "quick-during-wait",
    limitMs: 60_000,
    figures: {
      quick: {
        name: "Concurrency: quick GET / while 4 × 3 s awaiting requests are in flight",
        target: "< 50 ms",
      },
      p99: {
        name: "Concurrency: sequential GET / p99 while they are in flight",
        target: "< 50 ms",
      },
    },
    async run({ server: start, report, signal }) {
      const server = await start();
      await get(server, "/", signal);
      const waits: Promise<{ status: number; ms: number }>[] = [];
      let waitsDone = 0;
      for (let i = 0; i < 4; i++) {
        waits.push(get(server, "/wait?ms=3000", signal).finally(() => waitsDone++));
        await sleep(50);
      }
      await sleep(100);
      const stats = await server.stats();
      const quick = await get(server, "/", signal);
      report.figure(
        "quick",
        `${fmtMs(quick.ms)} (status ${quick.status}; in flight: running=${stats.running})`,
        quick.status === 200 && quick.ms < 50,
      );
      const times: number[] = [];
      const stopAt = performance.now() + 3500;
      while (waitsDone === 0 && times.length < 20_000 && performance.now() < stopAt) {
        const r = await get(server, "/", signal);
        if (r.status !== 200) throw new Error(`GET / answered ${r.status}`);
        times.push(r.ms);
      }
      const finished = await Promise.all(waits);
      times.sort((a, b) => a - b);
      const p99 = percentile(times, 99);
      report.figure(
        "p99",
        `p99 ${fmtMs(p99)}, p50 ${fmtMs(percentile(times, 50))}, max ${
          fmtMs(times.at(-1) ?? NaN)
        } over ${times.length} requests; the 4 waits took ${
          finished.map((r) => `${(r.ms / 1000).toFixed(2)} s`).join(", ")
        }`,
        times.length > 0 && p99 < 50 && finished.every((r) => r.status === 200),
      );
    },
  },
  {
    name: "cpu-deadlines",
    limitMs: 180_000,
    figures: {
      status: {
        name: `Deadlines: ${QUICK ? 40 : 100} concurrent POSTs × 400 ms CPU, default --timeout`,
        target: "all 200",
      },
      workers: { name: "Deadlines: workers that answered them", target: "2 of 2" },
    },
    async run({ server: start, report, signal }) {
      const server = await start(["--handler", HANDLER, "--queue-timeout", "60000"]);
      await get(server, "/", signal);
      const n = QUICK ? 40 : 100;
      const began = performance.now();
      const results = await Promise.all(Array.from({ length: n }, async () => {
        try {
          return await get(server, "/cpu?ms=400", signal, { method: "POST", body: "x".repeat(64) });
        } catch (error) {
          return { status: 0, text: (error as Error).message, ms: performance.now() - began };
        }
      }));
      const total = performance.now() - began;
      const statuses = new Map<number, number>();
      const workers = new Map<string, number>();
      for (const r of results) {
        statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
        if (r.status === 200) {
          const worker = JSON.parse(r.text).worker;
          workers.set(worker, (workers.get(worker) ?? 0) + 1);
        }
      }
      const stats = await server.stats();
      note(`stats after: ${compactStats(stats)}`);
      const byStatus = [...statuses].map(([s, c]) => `${c}× ${s || "error"}`).join(", ");
      report.figure(
        "status",
        `${byStatus}; all done in ${(total / 1000).toFixed(1)} s`,
        statuses.get(200) === n,
      );
      report.figure(
        "workers",
        `${workers.size} distinct (${[...workers.values()].join(" / ")} responses)`,
        workers.size === 2,
      );
    },
  },
  {
    name: "slow-reader",
    limitMs: 120_000,
    figures: {
      whole: {
        name: `Slow reader: ${QUICK ? 8 : 32} MiB streamed response read at 1 MiB/s`,
        target: "all bytes (default --write-timeout)",
      },
    },
    async run({ server: start, connect, report }) {
      const server = await start();
      const size = (QUICK ? 8 : 32) * MiB;
      const conn = await connect(server);
      await writeAll(
        conn,
        encoder.encode(`GET /bytes?size=${size} HTTP/1.1\r\nHost: bench\r\n\r\n`),
      );
      const began = performance.now();
      let received = 0;
      let error = "";
      try {
        await readResponse(conn, {
          limitMs: (size / MiB) * 1000 * 2 + 20_000,
          bytesPerSecond: MiB,
          readSize: 16 << 10,
          onData(data) {
            received += data.length;
          },
        });
      } catch (e) {
        error = `; ${(e as Error).message}`;
      }
      const seconds = (performance.now() - began) / 1000;
      report.figure(
        "whole",
        `${received}/${size} bytes in ${seconds.toFixed(1)} s${error}`,
        received === size && error === "",
      );
    },
  },
];

// ---------------------------------------------------------------------------
// Main

if (flags.help) {
  console.log(
    "Usage: bench/stream.ts [--only name,name] [--quick] [--sse-seconds N]\n" +
      `Scenarios: ${scenarios.map((s) => s.name).join(", ")}`,
  );
  Deno.exit(0);
}

const only = flags.only?.split(",").map((s) => s.trim()).filter(Boolean);
const unknown = only?.filter((name) => !scenarios.some((s) => s.name === name)) ?? [];
if (unknown.length > 0) {
  console.error(
    `Unknown scenario(s): ${unknown.join(", ")}; known: ${scenarios.map((s) => s.name).join(", ")}`,
  );
  Deno.exit(2);
}
const selected = scenarios.filter((s) => !only || only.includes(s.name));

const loadavg = await new Deno.Command("cat", { args: ["/proc/loadavg"], stdout: "piped" }).output()
  .then((out) => decoder.decode(out.stdout), () => "?");
console.log(
  `# brigade stream bench: deno ${Deno.version.deno}, ${navigator.hardwareConcurrency} CPUs, ` +
    `load average ${loadavg.split(" ").slice(0, 3).join(" ")}${QUICK ? ", --quick" : ""}`,
);

for (const scenario of selected) await runScenario(scenario);

console.log("\n## Summary\n");
console.log("| Figure | Target | Measured | Result |");
console.log("| --- | --- | --- | --- |");
for (const f of figures) {
  const cell = (text: string) => text.replaceAll("|", "\\|");
  console.log(
    `| ${cell(f.name)} | ${cell(f.target)} | ${cell(f.measured)} | ${f.pass ? "PASS" : "FAIL"} |`,
  );
}
const failed = figures.filter((f) => !f.pass).length;
console.log(`\n${figures.length - failed}/${figures.length} figures pass.`);
Deno.exit(failed === 0 ? 0 : 1);
