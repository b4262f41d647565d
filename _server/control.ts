/**
 * A server process's side of supervision: its link to the supervisor, and
 * the check that decides the process can no longer be trusted.
 *
 * @module
 */
import type { WorkerPoolStats } from "../pool.ts";
import type { ServerStats } from "../main.ts";
import { sumStats } from "./metrics.ts";
import { ControlConnection, type ToServer, type ToSupervisor } from "../_supervisor/protocol.ts";

/** The reason {@linkcode distrust} gives when no worker answers. */
export const ALL_STUCK = "every worker is stuck";

/**
 * Why this process should be replaced, or `undefined` while it can be
 * trusted:
 * - resident memory above `maxRss` (0: no limit);
 * - a worker terminated for being stuck: in Deno 2.9 `terminate()` does not
 *   stop a thread spinning in a JS loop, and this process cannot tell (Deno
 *   reads `/proc/self` only with `--allow-all`), so such a thread is presumed
 *   to burn a core until the process exits;
 * - every worker stuck at once.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { distrust } from "./control.ts";
 *
 * const calm = { workers: 2, abandoned: 0, unresponsive: 0 };
 * assert.equal(distrust(calm, 100e6, 1e9), undefined);
 * assert.match(distrust(calm, 2e9, 1e9)!, /above --max-rss/);
 * assert.match(distrust({ ...calm, abandoned: 1 }, 100e6, 1e9)!, /stuck/);
 * ```
 */
export function distrust(
  pool: Pick<WorkerPoolStats, "workers" | "abandoned" | "unresponsive">,
  rss: number,
  maxRss: number,
): string | undefined {
  const mb = (bytes: number) => `${Math.round(bytes / 1e6)} MB`;
  if (maxRss > 0 && rss > maxRss) {
    return `resident memory ${mb(rss)} is above --max-rss ${mb(maxRss)}`;
  }
  if (pool.unresponsive >= pool.workers) return ALL_STUCK;
  if (pool.abandoned > 0) {
    return `${pool.abandoned} stuck worker(s) were terminated, and Deno cannot stop a spinning thread`;
  }
  return undefined;
}

/** The link to the supervisor that started this process. */
export class SupervisorLink {
  #control: ControlConnection<ToServer, ToSupervisor>;
  #whole: ServerStats[] | undefined;
  #siblings = 0;
  /** Resolves when the supervisor is gone (or {@linkcode close} was called). */
  readonly closed: Promise<void>;

  private constructor(conn: Deno.Conn) {
    this.#control = new ControlConnection(conn);
    this.closed = this.#control.read((message) => {
      if (message.type === "whole") {
        [this.#whole, this.#siblings] = [message.stats, message.siblings];
      }
    });
  }

  /**
   * Reads the supervisor's token (the first line of stdin), connects to its
   * control `port` and says hello.
   */
  static async connect(port: number): Promise<SupervisorLink> {
    const reader = Deno.stdin.readable.pipeThrough(new TextDecoderStream()).getReader();
    let token = "";
    while (!token.includes("\n")) {
      const { value, done } = await reader.read();
      if (done) break;
      token += value;
      if (token.length > 1024) break;
    }
    reader.releaseLock();
    if (!token.endsWith("\n")) {
      throw new Error(
        `Cannot read the supervisor's token on stdin, received ${token.length} bytes`,
      );
    }
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const link = new SupervisorLink(conn);
    link.#send({ type: "hello", token: token.trim(), pid: Deno.pid });
    return link;
  }

  /**
   * The whole server's figures as the supervisor last sent them (every
   * process's latest, summed), or `undefined` before the first.
   */
  get whole(): ServerStats | undefined {
    return this.#whole && this.#whole.length > 0
      ? sumStats(this.#whole as [ServerStats, ...ServerStats[]])
      : undefined;
  }

  /** Other server processes that are listening. */
  get siblings(): number {
    return this.#siblings;
  }

  /** Tells the supervisor this process listens on `port`. */
  ready(port: number, workers: number): void {
    this.#send({ type: "ready", port, workers });
  }

  /** Asks to be replaced. */
  recycle(reason: string): void {
    this.#send({ type: "recycle", reason });
  }

  /**
   * Sends this process's figures, for the whole-server view; once every
   * second (`STATS_INTERVAL_MS`), it is also the sign of life the supervisor waits for.
   */
  report(stats: ServerStats): void {
    this.#send({ type: "stats", stats });
  }

  /** Closes the link; safe to call twice. */
  close(): void {
    this.#control.close();
  }

  #send(message: ToSupervisor): void {
    this.#control.send(message);
  }
}
