/**
 * The control protocol between the supervisor process and its server
 * processes, defined once. Each server process connects to the supervisor's
 * loopback control port and both sides write one JSON object per line.
 *
 * ```
 *  server process                                  supervisor
 *    hello {token, pid} ─────────────────────────►   (token came on stdin)
 *    ready {port, workers} ──────────────────────►   listening: start the next
 *    stats {stats}  (every second) ──────────────►
 *    ◄─────────────────── whole {stats[], siblings}   every process's latest figures
 *    recycle {reason} ───────────────────────────►   start a replacement, then
 *    ◄───────────────────────────────────── SIGTERM  drain this one
 * ```
 *
 * Signals, not messages, stop a server process: SIGTERM drains it, as it
 * would without a supervisor. A server process whose control connection
 * closes has lost its supervisor, and drains too.
 *
 * @module
 */
import type { ServerStats } from "../main.ts";

/** Server process → supervisor. */
export type ToSupervisor =
  /** The first line: proves the connection comes from a child the supervisor started. */
  | { type: "hello"; token: string; pid: number }
  /** Listening on `port` with `workers` workers. */
  | { type: "ready"; port: number; workers: number }
  /** This process's figures, for the whole-server view. */
  | { type: "stats"; stats: ServerStats }
  /** This process can no longer be trusted: replace it, then drain it. */
  | { type: "recycle"; reason: string };

/** Supervisor → server process. */
export type ToServer = {
  type: "whole";
  /** Every process's latest figures, and the counters of the ones that exited: sum them. */
  stats: ServerStats[];
  /** Other server processes that are listening. */
  siblings: number;
};

/** How often a server process reports its figures, in milliseconds. */
export const STATS_INTERVAL_MS = 1000;

/** Longest control line either side accepts, in characters: a stats object is a few KiB. */
export const MAX_LINE = 1 << 20;
/** Longest line before a connection has said hello. */
export const HELLO_LINE = 4096;
/** Milliseconds a new control connection has to say hello. */
export const HELLO_MS = 2000;

/**
 * One end of a control connection: JSON lines out, in order, and JSON lines
 * in. Both processes use it (the server process imports this module too).
 */
export class ControlConnection<In, Out> {
  #conn: Deno.Conn;
  #writing: Promise<void> = Promise.resolve();
  #encoder = new TextEncoder();

  constructor(conn: Deno.Conn) {
    this.#conn = conn;
  }

  /** Queues `message`; writes never interleave. A closed peer is ignored (the reader notices). */
  send(message: Out): void {
    const bytes = this.#encoder.encode(JSON.stringify(message) + "\n");
    this.#writing = this.#writing.then(async () => {
      try {
        for (let written = 0; written < bytes.length;) {
          written += await this.#conn.write(bytes.subarray(written));
        }
      } catch {
        // The peer is gone; the reader's end says so.
      }
    });
  }

  /**
   * Calls `onMessage` for each line until the connection closes, a line is
   * not JSON, or a line is longer than `maxLine()` characters; then closes
   * the connection and resolves.
   */
  async read(
    onMessage: (message: In) => void,
    maxLine: () => number = () => MAX_LINE,
  ): Promise<void> {
    const decoder = new TextDecoder();
    const buffer = new Uint8Array(64 << 10);
    let pending = "";
    try {
      for (let n = await this.#conn.read(buffer); n !== null; n = await this.#conn.read(buffer)) {
        pending += decoder.decode(buffer.subarray(0, n), { stream: true });
        let start = 0;
        for (let end = pending.indexOf("\n"); end >= 0; end = pending.indexOf("\n", start)) {
          if (end - start > maxLine()) throw new RangeError("line too long");
          onMessage(JSON.parse(pending.slice(start, end)) as In);
          start = end + 1;
        }
        pending = pending.slice(start);
        if (pending.length > maxLine()) break;
      }
    } catch {
      // A reset connection or a line that is not JSON: the conversation is over.
    }
    this.close();
  }

  /** Closes the connection; safe to call twice. */
  close(): void {
    try {
      this.#conn.close();
    } catch {
      // Already closed.
    }
  }
}
