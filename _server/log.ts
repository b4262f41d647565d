/**
 * Logging for the server: leveled diagnostics, and an access log in Common
 * Log Format that is buffered and written once per event-loop turn, so a busy
 * server makes one write per batch rather than per request.
 */

import { encoder } from "../_shared/http.ts";

/** How much the server says. */
export type LogLevel = "debug" | "info" | "warn" | "error";

/** Every log level, quietest last. */
export const LOG_LEVELS: readonly LogLevel[] = ["debug", "info", "warn", "error"];

/** A logger that drops messages below its level. */
export class Logger {
  #rank: number;

  /** @param level The quietest level still printed. */
  constructor(level: LogLevel) {
    this.#rank = LOG_LEVELS.indexOf(level);
    this.debug = this.#rank <= 0 ? (message) => console.log(message) : undefined;
  }

  /** Prints at debug level, the book's per-job lines; `undefined` above debug level. */
  readonly debug: ((message: string) => void) | undefined;

  /** Prints at info level: start-up and shutdown. */
  info(message: string): void {
    if (this.#rank <= 1) console.log(message);
  }

  /** Prints at warn level: clients cut off, workers replaced. */
  warn(message: string): void {
    if (this.#rank <= 2) console.error(message);
  }

  /** Prints at error level. */
  error(message: string): void {
    console.error(message);
  }
}

/**
 * Escapes a client-controlled log field as nginx does: control bytes, DEL,
 * bytes above 0x7e, `"` and `\` become `\xHH`, so a request line can neither
 * drive a terminal nor break the line's fields.
 */
export function escapeLogField(text: string): string {
  let out = "";
  let plain = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0x20 && c < 0x7f && c !== 0x22 && c !== 0x5c) continue;
    out += text.slice(plain, i) + "\\x" + c.toString(16).toUpperCase().padStart(2, "0");
    plain = i + 1;
  }
  return plain === 0 ? text : out + text.slice(plain);
}

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/** Access log line formats. */
export const LOG_FORMATS = ["common", "combined", "json"] as const;
/** One of {@linkcode LOG_FORMATS}. */
export type LogFormat = typeof LOG_FORMATS[number];

/** What one access log line says. */
export interface AccessEntry {
  /** Client address (the proxy's client with --trust-proxy). */
  remote: string;
  /** The request line as received. */
  requestLine: string;
  status: number;
  /** Body bytes sent. */
  bytes: number;
  /** Milliseconds from framing to written. */
  ms: number;
  /** The worker that answered, or -1 for the main thread. */
  workerId: number;
  /** The request's Referer and User-Agent (combined and json formats). */
  referer: string;
  userAgent: string;
}

/**
 * Access log lines, written in batches: Common Log Format plus duration and
 * worker; `combined` adds the Referer and User-Agent; `json` is one object
 * per line.
 */
export class AccessLog {
  #format: LogFormat;
  #lines: string[] = [];
  #scheduled = false;
  #second = -1;
  #stamp = "";

  /** @param format The line format. */
  constructor(format: LogFormat = "common") {
    this.#format = format;
  }

  /** Whether lines need the request's Referer and User-Agent. */
  get wantsHeaders(): boolean {
    return this.#format !== "common";
  }

  /** Adds one line. */
  write(entry: AccessEntry): void {
    const worker = entry.workerId < 0 ? "main" : `w${entry.workerId}`;
    const ms = entry.ms.toFixed(2);
    let line: string;
    if (this.#format === "json") {
      line = JSON.stringify({
        time: new Date().toISOString(),
        remote: entry.remote,
        request: entry.requestLine,
        status: entry.status,
        bytes: entry.bytes,
        ms: Number(ms),
        worker,
        referer: entry.referer,
        userAgent: entry.userAgent,
      });
    } else {
      line = `${entry.remote} - - [${this.#now()}] "${
        escapeLogField(entry.requestLine)
      }" ${entry.status} ${entry.bytes}`;
      if (this.#format === "combined") {
        line += ` "${escapeLogField(entry.referer || "-")}" "${
          escapeLogField(entry.userAgent || "-")
        }"`;
      }
      line += ` ${ms}ms ${worker}`;
    }
    this.#lines.push(line + "\n");
    if (!this.#scheduled) {
      this.#scheduled = true;
      queueMicrotask(this.#flush);
    }
  }

  /** Writes any buffered lines now. */
  flush(): void {
    this.#flush();
  }

  #flush = (): void => {
    this.#scheduled = false;
    if (this.#lines.length === 0) return;
    const bytes = encoder.encode(this.#lines.join(""));
    this.#lines = [];
    let offset = 0;
    while (offset < bytes.length) offset += Deno.stdout.writeSync(bytes.subarray(offset));
  };

  #now(): string {
    const now = Date.now();
    const second = Math.floor(now / 1000);
    if (second !== this.#second) {
      this.#second = second;
      const d = new Date(second * 1000);
      const pad = (n: number) => String(n).padStart(2, "0");
      this.#stamp = `${pad(d.getUTCDate())}/${MONTHS[d.getUTCMonth()]}/${d.getUTCFullYear()}:${
        pad(d.getUTCHours())
      }:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())} +0000`;
    }
    return this.#stamp;
  }
}
