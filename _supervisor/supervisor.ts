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
import { dirname, resolve as resolvePath } from "node:path";
import { fileURLToPath } from "node:url";
import type { ServerStats } from "../main.ts";
import { ControlConnection, type ToServer, type ToSupervisor } from "./protocol.ts";

/** What the supervisor needs to know of the command line. */
export interface SupervisorOptions {
  /** The server's own flags, passed on to every server process. */
  args: string[];
  processes: number;
  hostname: string;
  root: string;
  /** The handler module's URL, if any. */
  handler?: string;
}

/** Start-ups of a replacement that may fail in a row before the supervisor gives up. */
export const MAX_START_FAILURES = 5;
/** The first restart delay, in milliseconds; it doubles for each quick crash in a row. */
const BACKOFF_MS = 100;
const MAX_BACKOFF_MS = 5000;
/** A process that ran this long before dying was healthy: its successor starts at once. */
const HEALTHY_MS = 10_000;

type ChildState = "starting" | "ready" | "recycling" | "draining";

interface Child {
  process: Deno.ChildProcess;
  state: ChildState;
  readyAt: number;
  ready: PromiseWithResolvers<{ port: number; workers: number }>;
  control?: ControlConnection<ToSupervisor, ToServer>;
  stats?: ServerStats;
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
 * Runs the server processes until a signal stops them, or until restarts
 * keep failing.
 */
export class Supervisor {
  #options: SupervisorOptions;
  #children = new Set<Child>();
  #control: Deno.TcpListener;
  #token = crypto.randomUUID();
  #port = 0;
  #stopping = false;
  #startFailures = 0;
  #quickCrashes = 0;
  #exitCode = 0;
  #finished = Promise.withResolvers<number>();
  #relay: ReturnType<typeof setInterval>;

  constructor(options: SupervisorOptions) {
    this.#options = options;
    this.#control = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.#acceptControl();
    this.#relay = setInterval(() => this.#relayStats(), 1000);
  }

  /**
   * Starts the first process on the requested port, then the others on the
   * port it got. Rejects with a {@linkcode StartError} if any fails to start.
   *
   * @returns The port and each process's worker count.
   */
  async start(): Promise<{ port: number; workers: number }> {
    const first = this.#spawn();
    try {
      const { port, workers } = await first.ready.promise;
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

  /** Forwards `signal` to every process and stops restarting them. */
  stop(signal: Deno.Signal): void {
    this.#stopping = true;
    for (const child of this.#children) kill(child, signal);
    this.#maybeFinished();
  }

  /** Server processes running now. */
  get processes(): number {
    return this.#children.size;
  }

  #spawn(): Child {
    const args = [
      ...this.#denoArgs(),
      new URL("../main.ts", import.meta.url).href,
      ...this.#options.args,
      "--no-supervisor",
      "--control",
      String(this.#control.addr.port),
    ];
    if (this.#port !== 0) args.push("--port", String(this.#port));
    const process = new Deno.Command(Deno.execPath(), {
      args,
      stdin: "piped",
      stdout: "inherit",
      stderr: "inherit",
    }).spawn();
    const child: Child = {
      process,
      state: "starting",
      readyAt: 0,
      ready: Promise.withResolvers(),
    };
    child.ready.promise.catch(() => {});
    this.#children.add(child);
    // The token travels on stdin, which nobody else can read; stdin stays
    // open for the child's whole life.
    const writer = process.stdin.getWriter();
    writer.write(new TextEncoder().encode(this.#token + "\n")).catch(() => {});
    process.status.then((status) => this.#onExit(child, status));
    return child;
  }

  /**
   * The runtime flags of a server process: `--unstable-net` for `reusePort`,
   * network access, read access to what brigade and the app need, and every
   * other permission this process holds whole. Never `--allow-run`: only the
   * supervisor starts processes.
   */
  #denoArgs(): string[] {
    const args = ["run", "--no-prompt", "--unstable-net"];
    const whole = (name: "read" | "net" | "env" | "write" | "sys" | "ffi" | "import") => {
      try {
        return Deno.permissions.querySync({ name }).state === "granted";
      } catch {
        return false;
      }
    };
    args.push(whole("net") ? "--allow-net" : `--allow-net=${this.#options.hostname},127.0.0.1`);
    if (whole("read")) {
      args.push("--allow-read");
    } else {
      const brigade = (path: string) => fileURLToPath(new URL(path, import.meta.url));
      const candidates = [
        Deno.cwd(),
        brigade(".."),
        brigade("../worker.ts"),
        brigade("../_app"),
        brigade("../_shared"),
        brigade("../_worker"),
        resolvePath(this.#options.root),
      ];
      const handler = this.#options.handler;
      if (handler?.startsWith("file:")) candidates.push(dirname(fileURLToPath(handler)));
      const granted = [...new Set(candidates)].filter((path) =>
        Deno.permissions.querySync({ name: "read", path }).state === "granted"
      );
      if (granted.length > 0) args.push(`--allow-read=${granted.join(",")}`);
    }
    for (const name of ["env", "write", "sys", "ffi", "import"] as const) {
      if (whole(name)) args.push(`--allow-${name}`);
    }
    args.push(...configArgs());
    return args;
  }

  async #acceptControl(): Promise<void> {
    while (true) {
      let conn: Deno.Conn;
      try {
        conn = await this.#control.accept();
      } catch {
        return; // closed
      }
      const control = new ControlConnection<ToSupervisor, ToServer>(conn);
      let child: Child | undefined;
      control.read((message) => {
        if (child === undefined) {
          // Only a process this supervisor started knows the token.
          if (message.type !== "hello" || message.token !== this.#token) return control.close();
          child = [...this.#children].find((c) => c.process.pid === message.pid);
          if (child === undefined) return control.close();
          child.control = control;
          return;
        }
        this.#onMessage(child, message);
      });
    }
  }

  #onMessage(child: Child, message: ToSupervisor): void {
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
    const state = child.state;
    child.control?.close();
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

  #maybeFinished(): void {
    if (!this.#stopping || this.#children.size > 0) return;
    clearInterval(this.#relay);
    try {
      this.#control.close();
    } catch {
      // Already closed.
    }
    this.#finished.resolve(this.#exitCode);
  }

  /** Sends each process the latest figures of the others. */
  #relayStats(): void {
    const reporting = [...this.#children].filter((child) => child.stats !== undefined);
    if (reporting.length === 0) return;
    for (const child of this.#children) {
      const stats = reporting.filter((other) => other !== child).map((other) => other.stats!);
      child.control?.send({ type: "peers", stats });
    }
  }
}

/**
 * Which `deno.json` a server process uses. Deno finds a config next to the
 * main module, not in the working directory, so an app's own (the README's
 * recipe passes `--config deno.json`) must be named; brigade's own is found
 * anyway. Elsewhere, with no config in sight, none is used.
 */
function configArgs(): string[] {
  const cwd = Deno.cwd();
  if (cwd === fileURLToPath(new URL("..", import.meta.url)).replace(/\/$/, "")) return [];
  for (const name of ["deno.json", "deno.jsonc"]) {
    const path = `${cwd}/${name}`;
    if (Deno.permissions.querySync({ name: "read", path }).state !== "granted") continue;
    try {
      if (Deno.statSync(path).isFile) return ["--config", path];
    } catch {
      // Not there.
    }
  }
  return ["--no-config", "--no-lock"];
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
