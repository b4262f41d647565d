/**
 * The supervisor process: starts the server processes, restarts one that
 * dies, replaces one that can no longer be trusted, forwards SIGINT/SIGTERM
 * so every process drains, and relays figures so that `/_brigade/stats` and
 * `/_brigade/metrics` describe the whole server. It never touches client
 * bytes: the server processes share the port (`reusePort`) and accept
 * connections themselves.
 *
 * @module
 */
import type { ServerStats } from "../main.ts";
import { sumStats } from "../_server/metrics.ts";
import {
  ControlConnection,
  HELLO_LINE,
  HELLO_MS,
  MAX_LINE,
  STATS_INTERVAL_MS,
  type ToServer,
  type ToSupervisor,
} from "./protocol.ts";

/** What the supervisor needs to know of the command line. */
export interface SupervisorOptions {
  /** The server's own flags (this process's `Deno.args`), passed on to every server process. */
  args: string[];
  processes: number;
  hostname: string;
  /** The port asked for; 0 picks one. */
  port: number;
  /** Milliseconds a stop may take (drain delay, shutdown timeout) before what is left is killed. */
  stopMs: number;
}

/** Start-ups of a replacement that may fail in a row before the supervisor gives up. */
export const MAX_START_FAILURES = 5;
/** A server process that does not listen within this long is killed (a failed start). */
export const START_DEADLINE_MS = 60_000;
/** The first restart delay, in milliseconds; it doubles for each quick crash in a row. */
const BACKOFF_MS = 100;
const MAX_BACKOFF_MS = 5000;
/** A process that ran this long before dying was healthy: its successor starts at once. */
const HEALTHY_MS = 10_000;
/** Control connections that have not said hello yet, at most. */
const MAX_STRANGERS = 8;
/** Beyond a stop's own time, how long the supervisor waits before SIGKILL. */
const KILL_GRACE_MS = 5000;
/**
 * A listening process reports every second, even with its main thread
 * loaded; one silent this long is wedged (or stopped) and is killed, then
 * restarted as after a crash.
 */
export const SILENT_MS = 10_000;

type ChildState = "starting" | "ready" | "recycling" | "draining";

interface Child {
  process: Deno.ChildProcess;
  stdin: WritableStreamDefaultWriter<Uint8Array>;
  state: ChildState;
  readyAt: number;
  ready: PromiseWithResolvers<{ port: number; workers: number }>;
  control?: ControlConnection<ToSupervisor, ToServer>;
  stats?: ServerStats;
  /** When the process last sent anything. */
  heardAt: number;
}

/** Raised when the server cannot start; the supervisor exits with `code`. */
export class StartError extends Error {
  code: number;
  constructor(message: string, code: number) {
    super(message);
    this.code = code;
  }
}

/**
 * The runtime flags this process was started with (permissions, config,
 * V8 and unstable flags, deny flags too), without `--allow-run`: a server
 * process runs with exactly what its user granted, minus starting
 * processes. Deno refuses to read `/proc/<pid>` without `--allow-all`, so
 * `cat` reads the command line (the supervisor may run processes anyway).
 *
 * @returns The flags between `deno run` and the script, and the script as given.
 * @throws {Error} Where there is no `/proc` (not Linux), or not run by `deno run`.
 */
export async function ownRuntimeFlags(): Promise<{ flags: string[]; script: string }> {
  let argv: string[];
  try {
    const { success, stdout } = await new Deno.Command("cat", {
      args: [`/proc/${Deno.pid}/cmdline`],
      stderr: "null",
    }).output();
    if (!success) throw new Error("cat failed");
    argv = new TextDecoder().decode(stdout).split("\0").slice(0, -1);
  } catch (error) {
    throw new Error(
      `Cannot read this process's command line from /proc (Linux only; use --no-supervisor elsewhere), received ${
        (error as Error).message
      }`,
    );
  }
  const script = argv.length - Deno.args.length - 1;
  if (argv[1] !== "run" || script < 2) {
    throw new Error(`Cannot tell the runtime flags apart, received ${JSON.stringify(argv)}`);
  }
  const flags = argv.slice(2, script).filter((flag) => !/^--allow-run(=|$)/.test(flag));
  return { flags, script: argv[script] };
}

/**
 * Runs the server processes until a signal stops them, or until restarts
 * keep failing.
 */
export class Supervisor {
  #options: SupervisorOptions;
  #runtime: { flags: string[]; script: string };
  #children = new Set<Child>();
  #control: Deno.TcpListener;
  #strangers = 0;
  #token = crypto.randomUUID();
  #port: number;
  #stopping = false;
  #startFailures = 0;
  #quickCrashes = 0;
  #exitCode = 0;
  #finished = Promise.withResolvers<number>();
  #relay: ReturnType<typeof setInterval>;
  #killer: ReturnType<typeof setTimeout> | undefined;
  /** Counters of processes that have exited, so the whole server's totals never go back. */
  #retired: ServerStats | undefined;

  /** @param runtime From {@linkcode ownRuntimeFlags}. */
  constructor(options: SupervisorOptions, runtime: { flags: string[]; script: string }) {
    this.#options = options;
    this.#runtime = runtime;
    this.#port = options.port;
    this.#control = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.#acceptControl();
    this.#relay = setInterval(() => this.#relayStats(), STATS_INTERVAL_MS);
  }

  /**
   * Starts the first process on the requested port, then the others on the
   * port it got. Rejects with a {@linkcode StartError} if any fails to start.
   *
   * @returns The port and each process's worker count.
   */
  async start(): Promise<{ port: number; workers: number }> {
    try {
      // The processes share the port with reusePort, which would also share
      // it with anything else that set it: take it alone first, to be sure
      // it is free.
      if (this.#port !== 0) {
        Deno.listen({ hostname: this.#options.hostname, port: this.#port }).close();
      }
      const { port, workers } = await this.#spawn().ready.promise;
      this.#port = port;
      const others = Array.from({ length: this.#options.processes - 1 }, () => this.#spawn());
      await Promise.all(others.map((child) => child.ready.promise));
      return { port, workers };
    } catch (error) {
      this.stop("SIGTERM");
      await this.finished;
      throw error;
    }
  }

  /** Resolves with the exit code once every process has exited after {@linkcode stop}. */
  get finished(): Promise<number> {
    return this.#finished.promise;
  }

  /**
   * Forwards `signal` to every process and stops restarting them. What has
   * not exited once a stop's own time and a grace have passed is killed.
   */
  stop(signal: Deno.Signal): void {
    this.#stopping = true;
    for (const child of this.#children) kill(child, signal);
    this.#killer ??= setTimeout(() => {
      for (const child of this.#children) kill(child, "SIGKILL");
    }, this.#options.stopMs + KILL_GRACE_MS);
    this.#maybeFinished();
  }

  #spawn(): Child {
    const args = [
      "run",
      ...this.#runtime.flags,
      "--unstable-net",
      "--no-prompt",
      this.#runtime.script,
      // A trailing "--" would make the flags below positional.
      ...(this.#options.args.at(-1) === "--"
        ? this.#options.args.slice(0, -1)
        : this.#options.args),
      "--no-supervisor",
      "--control",
      String(this.#control.addr.port),
    ];
    if (this.#port !== 0) args.push("--port", String(this.#port));
    const ready = Promise.withResolvers<{ port: number; workers: number }>();
    ready.promise.catch(() => {});
    let process: Deno.ChildProcess;
    try {
      process = new Deno.Command(Deno.execPath(), {
        args,
        stdin: "piped",
        stdout: "inherit",
        stderr: "inherit",
      }).spawn();
    } catch (error) {
      // Out of file descriptors or processes: a failed start, not a crash of the supervisor.
      ready.reject(new StartError(`spawn failed: ${(error as Error).message}`, 1));
      return { state: "starting", ready, heardAt: 0 } as Child;
    }
    const child: Child = {
      process,
      stdin: process.stdin.getWriter(),
      state: "starting",
      readyAt: 0,
      ready,
      heardAt: 0,
    };
    this.#children.add(child);
    // The token travels on stdin, which no other process can read.
    child.stdin.write(new TextEncoder().encode(this.#token + "\n")).catch(() => {});
    const deadline = setTimeout(() => {
      if (child.state !== "starting") return;
      log(`server process ${process.pid} did not listen within ${START_DEADLINE_MS} ms`);
      kill(child, "SIGKILL");
    }, START_DEADLINE_MS);
    process.status.then((status) => {
      clearTimeout(deadline);
      this.#onExit(child, status);
    });
    return child;
  }

  async #acceptControl(): Promise<void> {
    while (true) {
      let conn: Deno.Conn;
      try {
        conn = await this.#control.accept();
      } catch {
        return; // closed
      }
      // Anything local can connect: few strangers at a time, small lines, and briefly.
      if (this.#strangers >= MAX_STRANGERS) {
        conn.close();
        continue;
      }
      this.#strangers++;
      const control = new ControlConnection<ToSupervisor, ToServer>(conn);
      let child: Child | undefined;
      const hello = setTimeout(() => control.close(), HELLO_MS);
      const known = () => {
        clearTimeout(hello);
        this.#strangers--;
      };
      control.read((message) => {
        if (child !== undefined) return this.#onMessage(child, message);
        // Only a process this supervisor started knows the token.
        child = message.type === "hello" && message.token === this.#token
          ? [...this.#children].find((c) => c.process.pid === message.pid && !c.control)
          : undefined;
        if (child === undefined) return control.close();
        known();
        child.control = control;
      }, () => child === undefined ? HELLO_LINE : MAX_LINE).then(() => {
        if (child === undefined) known();
      });
    }
  }

  #onMessage(child: Child, message: ToSupervisor): void {
    child.heardAt = performance.now();
    switch (message.type) {
      case "ready":
        child.state = "ready";
        child.readyAt = performance.now();
        this.#startFailures = 0;
        child.ready.resolve(message);
        break;
      case "stats":
        child.stats = message.stats;
        break;
      case "recycle": {
        if (child.state !== "ready" || this.#stopping) break;
        child.state = "recycling";
        const delay = this.#backoffAfter(child);
        log(`replacing server process ${child.process.pid} in ${delay} ms: ${message.reason}`);
        this.#replace(child, delay);
        break;
      }
      case "hello":
        break;
    }
  }

  /** Starts a successor for `old` (if any) and, once it listens, drains `old`. */
  async #replace(old: Child | undefined, delayMs = 0): Promise<void> {
    if (delayMs > 0) await new Promise((resolve) => setTimeout(resolve, delayMs));
    if (this.#stopping) return;
    const fresh = this.#spawn();
    try {
      await fresh.ready.promise;
    } catch (error) {
      if (this.#stopping) return;
      this.#startFailures++;
      if (this.#startFailures >= MAX_START_FAILURES) {
        log(
          `Cannot restart a server process: ${this.#startFailures} start-ups in a row failed, received ${
            (error as Error).message
          }`,
        );
        this.#exitCode = 1;
        this.stop("SIGTERM");
        return;
      }
      return this.#replace(old, backoff(this.#startFailures));
    }
    if (old !== undefined && old.state === "recycling") {
      old.state = "draining";
      kill(old, "SIGTERM");
    }
  }

  #onExit(child: Child, status: Deno.CommandStatus): void {
    this.#children.delete(child);
    child.stdin.close().catch(() => {});
    child.control?.close();
    if (child.stats) this.#retire(child.stats);
    const state = child.state;
    const how = status.signal ? `signal ${status.signal}` : `code ${status.code}`;
    if (state === "starting") {
      child.ready.reject(new StartError(`exit ${how}`, status.code || 1));
    } else if (this.#stopping) {
      if (status.code !== 0 && this.#exitCode === 0) this.#exitCode = status.code;
    } else if (state === "recycling") {
      // Its successor is already starting.
      log(`server process ${child.process.pid} exited (${how}) while being replaced`);
    } else if (state !== "draining") {
      const delay = this.#backoffAfter(child);
      log(`server process ${child.process.pid} exited (${how}); restarting in ${delay} ms`);
      this.#replace(undefined, delay);
    }
    this.#maybeFinished();
  }

  /**
   * How long to wait before replacing `child`: at once after a healthy run,
   * then longer each time a process fails young, so a crash loop (or a
   * `--max-rss` below what a fresh process needs) cannot spin.
   */
  #backoffAfter(child: Child): number {
    const lived = performance.now() - child.readyAt;
    this.#quickCrashes = lived < HEALTHY_MS ? this.#quickCrashes + 1 : 0;
    return this.#quickCrashes === 0 ? 0 : backoff(this.#quickCrashes);
  }

  /** Keeps the counters of an exited process; its gauges and percentiles end with it. */
  #retire(stats: ServerStats): void {
    const none = { p50: 0, p90: 0, p99: 0, max: 0 };
    const counters: ServerStats = {
      ...stats,
      workers: 0,
      idle: 0,
      busy: 0,
      blocked: 0,
      running: 0,
      queued: 0,
      unresponsive: 0,
      requests: 0,
      connections: 0,
      websockets: 0,
      streams: 0,
      processes: 0,
      waitTime: none,
      runTime: none,
    };
    this.#retired = this.#retired ? sumStats([this.#retired, counters]) : counters;
  }

  #maybeFinished(): void {
    if (!this.#stopping || this.#children.size > 0) return;
    clearInterval(this.#relay);
    clearTimeout(this.#killer);
    try {
      this.#control.close();
    } catch {
      // Already closed.
    }
    this.#finished.resolve(this.#exitCode);
  }

  /**
   * Kills a listening process that has gone silent, then sends every
   * process the same snapshot: each process's latest figures
   * and the exited ones' counters. Whichever process a scrape reaches, it
   * sums the same list, so totals only grow.
   */
  #relayStats(): void {
    const now = performance.now();
    for (const child of this.#children) {
      if (child.state !== "ready" || now - child.heardAt < SILENT_MS) continue;
      log(`server process ${child.process.pid} sent nothing for ${SILENT_MS} ms; killing it`);
      child.heardAt = now; // once
      kill(child, "SIGKILL");
    }
    const stats = [...this.#children].flatMap((child) => child.stats ? [child.stats] : []);
    if (stats.length === 0) return;
    if (this.#retired) stats.push(this.#retired);
    const ready = [...this.#children].filter((child) => child.state === "ready").length;
    for (const child of this.#children) {
      child.control?.send({ type: "whole", stats, siblings: ready - 1 });
    }
  }
}

function backoff(attempt: number): number {
  return Math.min(BACKOFF_MS * 2 ** (attempt - 1), MAX_BACKOFF_MS);
}

function kill(child: Child, signal: Deno.Signal): void {
  try {
    child.process.kill(signal);
  } catch {
    // Already exited.
  }
}

function log(line: string): void {
  console.error(`brigade: ${line}`);
}
