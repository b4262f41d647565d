/**
 * The command-line flags, defined once: main.ts builds its parser and its
 * defaults from this list, `--help` prints it, and a test checks the README's
 * flag table against it.
 */

/** One flag. */
export interface FlagSpec {
  name: string;
  /** The value's placeholder, such as `<n>`; absent for a boolean flag. */
  value?: string;
  /** The default as the README's table shows it ("off" for a boolean, "none" when unset). */
  default: string;
  help: string;
}

/** Every flag, in the order `--help` and the README list them. */
export const FLAGS: readonly FlagSpec[] = [
  { name: "port", value: "<n>", default: "7878", help: "port to listen on, 0 for any free port" },
  { name: "hostname", value: "<host>", default: "127.0.0.1", help: "address to listen on" },
  { name: "workers", value: "<n>", default: "number of CPUs", help: "worker count" },
  {
    name: "worker-concurrency",
    value: "<n>",
    default: "64",
    help: "requests one worker runs at once",
  },
  { name: "root", value: "<dir>", default: "static", help: "directory to serve" },
  { name: "sleep-ms", value: "<ms>", default: "5000", help: "how long GET /sleep takes" },
  {
    name: "cache-control",
    value: "<value>",
    default: "none",
    help: "Cache-Control header for static files",
  },
  { name: "cors", default: "off", help: "allow any origin to use static files (CORS)" },
  { name: "spa", default: "off", help: "serve index.html for missing paths without an extension" },
  { name: "dir-listing", default: "off", help: "list directories that have no index.html" },
  {
    name: "handler",
    value: "<module>",
    default: "none",
    help: "serve with a module's default { fetch } instead of files",
  },
  {
    name: "log-level",
    value: "<level>",
    default: "info",
    help: "debug, info, warn or error",
  },
  { name: "quiet", default: "off", help: "no access log" },
  {
    name: "log-format",
    value: "<format>",
    default: "common",
    help: "access log lines: common, combined or json",
  },
  {
    name: "trust-proxy",
    default: "off",
    help: "client address and scheme from one proxy's X-Forwarded-For/-Proto",
  },
  { name: "max-body", value: "<bytes>", default: "1048576", help: "largest request body" },
  { name: "max-head", value: "<bytes>", default: "16384", help: "largest request head" },
  { name: "max-requests", value: "<n>", default: "1000", help: "requests per connection" },
  { name: "max-connections", value: "<n>", default: "10000", help: "open connections" },
  {
    name: "max-queue",
    value: "<n>",
    default: "1024",
    help: "requests waiting for a worker",
  },
  {
    name: "queue-timeout",
    value: "<ms>",
    default: "10000",
    help: "longest wait for a worker, then 503",
  },
  {
    name: "timeout",
    value: "<ms>",
    default: "30000",
    help: "time for a worker to start a response",
  },
  {
    name: "write-timeout",
    value: "<ms>",
    default: "10000",
    help: "longest stall of one response write",
  },
  { name: "idle-timeout", value: "<ms>", default: "5000", help: "keep-alive idle timeout" },
  {
    name: "head-timeout",
    value: "<ms>",
    default: "10000",
    help: "time for a request head to arrive",
  },
  {
    name: "ws-max-message",
    value: "<bytes>",
    default: "1048576",
    help: "largest WebSocket message, all fragments together",
  },
  {
    name: "ws-ping-interval",
    value: "<ms>",
    default: "30000",
    help: "WebSocket silence before a ping; as long again closes it (0: off)",
  },
  {
    name: "shutdown-timeout",
    value: "<ms>",
    default: "10000",
    help: "drain time on SIGINT/SIGTERM",
  },
  {
    name: "drain-delay",
    value: "<ms>",
    default: "0",
    help: "after SIGINT/SIGTERM, serve this long with health at 503, then drain",
  },
  { name: "stats", default: "off", help: "serve pool figures as JSON at GET /_brigade/stats" },
  { name: "metrics", default: "off", help: "serve Prometheus metrics at GET /_brigade/metrics" },
  { name: "dashboard", default: "off", help: "serve the live pool page at GET /_brigade/" },
  {
    name: "dashboard-token",
    value: "<token>",
    default: "none",
    help: "token the dashboard requires (else loopback clients only)",
  },
  {
    name: "processes",
    value: "<n>",
    default: "1",
    help: "server processes sharing the port (each with --workers workers)",
  },
  { name: "no-supervisor", default: "off", help: "run one server process alone, unsupervised" },
  {
    name: "max-rss",
    value: "<bytes>",
    default: "1073741824",
    help: "resident memory past which a server process is replaced, 0 for no limit",
  },
  {
    name: "control",
    value: "<port>",
    default: "none",
    help: "the supervisor's control port (the supervisor sets it)",
  },
  { name: "help", default: "off", help: "show this help" },
];

/** The `--help` text. */
export function usage(): string {
  const lines = FLAGS.map((flag) => {
    const left = `  --${flag.name}${flag.value ? ` ${flag.value}` : ""}`;
    const shown = flag.value !== undefined && flag.default !== "none";
    return `${left.padEnd(Math.max(27, left.length + 1))}${flag.help}${
      shown ? ` (default ${flag.default})` : ""
    }`;
  });
  return `Usage: deno task start [options]\n\nOptions:\n${lines.join("\n")}`;
}

/** The flag list as `node:util` `parseArgs` options. */
export function parseArgsOptions(): Record<string, { type: "string" | "boolean" }> {
  return Object.fromEntries(
    FLAGS.map((flag) => [flag.name, { type: flag.value ? "string" : "boolean" }]),
  );
}

/** The default of flag `name`, as the list says it. */
export function flagDefault(name: string): string {
  const flag = FLAGS.find((flag) => flag.name === name);
  if (flag === undefined) throw new Error(`Cannot find a flag, received ${name}`);
  return flag.default;
}

/** The default of flag `name`, as a number: the server's defaults come from this list too. */
export function numericDefault(name: string): number {
  const value = Number(flagDefault(name));
  if (!Number.isFinite(value)) throw new Error(`Cannot find a numeric default, received ${name}`);
  return value;
}
