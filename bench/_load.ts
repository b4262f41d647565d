/**
 * Load helpers for the benchmark scripts: start a server process and stop it,
 * and run wrk against it and read its report. Needs wrk: `apt-get install -y wrk`.
 *
 * @module
 */

import { startServerProcess } from "../tests/_process.ts";

/** What one wrk run reports. */
export interface WrkResult {
  rps: number;
  p50: number;
  p99: number;
  /** Non-2xx or 3xx responses plus socket errors. */
  errors: number;
  /** RSS in MB before the warm-up, and right after the run. */
  idleMB?: number;
  loadedMB?: number;
}

/** Whether `wrk` can be run. */
export async function haveWrk(): Promise<boolean> {
  try {
    await new Deno.Command("wrk", { args: ["--version"], stdout: "null", stderr: "null" }).output();
    return true;
  } catch {
    return false;
  }
}

/** Starts a server process and resolves once it prints its URL. */
export async function startServer(
  args: string[],
  cwd?: string,
  env?: Record<string, string>,
  command?: string,
) {
  const server = await startServerProcess(args, { cwd, env, command });
  return {
    url: server.url,
    pid: server.child.pid,
    async stop() {
      server.child.kill("SIGTERM");
      await server.child.status;
    },
  };
}

function toMs(value: string): number {
  const m = /^([\d.]+)(us|ms|s)$/.exec(value.trim());
  if (!m) return NaN;
  const n = Number(m[1]);
  return m[2] === "us" ? n / 1000 : m[2] === "ms" ? n : n * 1000;
}

/** Runs `wrk -t1 -c<connections> -d<seconds>s --latency url` and reads its report. */
export async function wrk(url: string, seconds: number, connections: number): Promise<WrkResult> {
  const { stdout } = await new Deno.Command("wrk", {
    args: ["-t1", `-c${connections}`, `-d${seconds}s`, "--latency", url],
    stdout: "piped",
  }).output();
  const text = new TextDecoder().decode(stdout);
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(text)?.[1]);
  const p50 = toMs(/^\s+50%\s+(\S+)/m.exec(text)?.[1] ?? "");
  const p99 = toMs(/^\s+99%\s+(\S+)/m.exec(text)?.[1] ?? "");
  const errors = Number(/Non-2xx or 3xx responses: (\d+)/.exec(text)?.[1] ?? 0) +
    [...text.matchAll(/(?:connect|read|write|timeout) (\d+)/g)].reduce(
      (a, m) => a + Number(m[1]),
      0,
    );
  return { rps, p50, p99, errors };
}

/**
 * When a run took place, in UTC to the minute: `2026-11-26 21:52–21:58 UTC`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { runWindow } from "./_load.ts";
 *
 * const began = new Date("2026-11-26T21:52:10Z");
 * assert.equal(runWindow(began, new Date("2026-11-26T21:58:59Z")), "2026-11-26 21:52–21:58 UTC");
 * ```
 */
export function runWindow(began: Date, ended = new Date()): string {
  const minute = (date: Date) => date.toISOString().slice(11, 16);
  return `${began.toISOString().slice(0, 10)} ${minute(began)}–${minute(ended)} UTC`;
}

/**
 * The middle value (the upper one of an even count): steadier than the best
 * on a shared machine.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { median } from "./_load.ts";
 *
 * assert.equal(median([3, 1, 2]), 2);
 * assert.equal(median([4, 1, 3, 2]), 3);
 * ```
 */
export function median(values: number[]): number {
  return values.toSorted((a, b) => a - b)[Math.floor(values.length / 2)];
}
