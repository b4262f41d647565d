/**
 * Resident memory of a process for the benchmark scripts: {@linkcode RssSampler}
 * samples VmRSS from `/proc/<pid>/status` through a small bash loop (Deno
 * refuses /proc reads without --allow-all, so the scripts need --allow-run
 * instead).
 *
 * @module
 */

import { within } from "../tests/_process.ts";

const MB = 1e6;

/**
 * Prints `<EPOCHREALTIME> <VmRSS kB>` of process `$1` every `$2` seconds,
 * using only bash builtins (`read -t` on stdin is the sleep: no fork per
 * sample), on its own clock so a busy bench event loop cannot thin out the
 * samples. Stops when stdin closes or the process is gone.
 */
const RSS_LOOP = `pid=$1; every=$2
while [ -r "/proc/$pid/status" ]; do
  while read -r key value rest; do
    if [ "$key" = "VmRSS:" ]; then echo "$EPOCHREALTIME $value"; break; fi
  done < "/proc/$pid/status"
  read -r -t "$every" _
  [ $? -gt 128 ] || exit 0
done`;

/** Longest wait for a sample, beyond the sampling interval. */
const SAMPLE_WAIT_MS = 5000;

/**
 * Samples the VmRSS of one process every `everyMs` until stopped, keeping the
 * first, the latest and the largest sample. All figures are in bytes.
 *
 * ```ts ignore
 * const rss = await RssSampler.start(pid, 100);
 * try {
 *   // ... load the server ...
 *   console.log(rss.describe());
 * } finally {
 *   await rss.stop();
 * }
 * ```
 */
export class RssSampler {
  /** The first sample. */
  start = 0;
  /** The largest sample since the first one or the last {@linkcode RssSampler.resetPeak}. */
  peak = 0;
  /** Seconds from the first sample to the one that set {@linkcode RssSampler.peak}. */
  peakAt = 0;
  /** The latest sample. */
  last = 0;
  /** How many samples have been taken. */
  samples = 0;
  #pid: number;
  #waitMs: number;
  #firstAt = 0;
  #lastAt = 0;
  #child: Deno.ChildProcess;
  #done: Promise<void>;
  #ended = false;
  #first = Promise.withResolvers<void>();
  #waiters: PromiseWithResolvers<number>[] = [];
  #stopped: Promise<void> | undefined;

  private constructor(pid: number, everyMs: number) {
    this.#pid = pid;
    this.#waitMs = everyMs + SAMPLE_WAIT_MS;
    const child = this.#child = new Deno.Command("bash", {
      args: ["-c", RSS_LOOP, "rss", String(pid), String(everyMs / 1000)],
      stdin: "piped",
      stdout: "piped",
      stderr: "null",
    }).spawn();
    this.#first.promise.catch(() => {});
    this.#done = (async () => {
      try {
        let text = "";
        for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
          text += chunk;
          let eol;
          while ((eol = text.indexOf("\n")) >= 0) {
            const [at, kb] = text.slice(0, eol).split(" ").map(Number);
            this.#add(at, kb * 1024);
            text = text.slice(eol + 1);
          }
        }
      } catch {
        // The pipe broke: sampling is over all the same.
      } finally {
        this.#ended = true;
        const error = this.#endedError();
        this.#first.reject(error);
        for (const waiter of this.#waiters.splice(0)) waiter.reject(error);
      }
    })();
  }

  /**
   * Starts sampling process `pid` every `everyMs` ms; resolves once the first
   * sample (the {@linkcode RssSampler.start} figure) is in. Rejects if none
   * comes within 5 s past `everyMs`, or the process is gone.
   */
  static async start(pid: number, everyMs = 50): Promise<RssSampler> {
    const sampler = new RssSampler(pid, everyMs);
    try {
      await within(sampler.#first.promise, "first RSS sample", sampler.#waitMs);
    } catch (error) {
      await sampler.stop();
      throw error;
    }
    return sampler;
  }

  #add(at: number, bytes: number): void {
    if (!Number.isFinite(at) || !Number.isFinite(bytes) || bytes <= 0) return;
    this.last = bytes;
    this.#lastAt = at;
    if (this.samples++ === 0) {
      this.start = this.peak = bytes;
      this.#firstAt = at;
      this.#first.resolve();
    }
    if (bytes > this.peak) {
      this.peak = bytes;
      this.peakAt = at - this.#firstAt;
    }
    for (const waiter of this.#waiters.splice(0)) waiter.resolve(bytes);
  }

  #endedError(): Error {
    return new Error(`RSS sampling of pid ${this.#pid} has ended`);
  }

  /**
   * Resolves with a sample taken after this call. Rejects if sampling has
   * ended (stopped, or the process is gone) or no sample comes within 5 s
   * past the interval.
   */
  async next(): Promise<number> {
    if (this.#ended) throw this.#endedError();
    const waiter = Promise.withResolvers<number>();
    this.#waiters.push(waiter);
    try {
      return await within(waiter.promise, "next RSS sample", this.#waitMs);
    } finally {
      const at = this.#waiters.indexOf(waiter);
      if (at >= 0) this.#waiters.splice(at, 1);
    }
  }

  /** Starts the peak over from the latest sample. */
  resetPeak(): void {
    this.peak = this.last;
    this.peakAt = this.#lastAt - this.#firstAt;
  }

  /** Stops sampling; resolves once the loop has exited. Safe to call twice. */
  stop(): Promise<void> {
    this.#stopped ??= (async () => {
      await this.#child.stdin.close().catch(() => {});
      await within(this.#child.status, "RSS sampler exit", 5000).catch(() => {
        try {
          this.#child.kill("SIGKILL");
        } catch {
          // Already exited.
        }
      });
      await this.#done;
    })();
    return this.#stopped;
  }

  /** One line: start, peak (when, and growth over start), latest, and the sample count. */
  describe(): string {
    return `start ${mb(this.start)}, peak ${mb(this.peak)} at ${this.peakAt.toFixed(1)} s (+${
      mb(this.peak - this.start)
    }), end ${mb(this.last)}, ${this.samples} samples`;
  }
}

function mb(bytes: number): string {
  return `${(bytes / MB).toFixed(1)} MB`;
}
