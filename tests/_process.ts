/**
 * Helpers shared by the tests and the benchmark scripts: start brigade (or
 * any server that prints "Listening on URL") as a child process, and wait for
 * a condition without guessing at sleep lengths.
 */
import config from "../deno.json" with { type: "json" };

/** A running server process. */
export interface ServerProcess {
  child: Deno.ChildProcess;
  /** The URL from the "Listening on" line. */
  url: string;
  /** The first line the server printed. */
  firstLine: string;
  /** Resolves once stdout has shown `text`. */
  printed(text: string): Promise<void>;
  /** All of stdout, once the process has closed it. */
  stdout: Promise<string>;
  /** All of stderr, once the process has closed it. */
  stderr: Promise<string>;
}

/** Options for {@linkcode startServerProcess}. */
export interface StartOptions {
  /**
   * Start the process as the leader of a new process group (through
   * `setsid`), so a test can signal the whole group as a terminal does.
   */
  ownGroup?: boolean;
  /** Where to run it; the project folder by default. */
  cwd?: string;
  /** Variables to add to the inherited environment. */
  env?: Record<string, string>;
  /** The program to run instead of `deno`. */
  command?: string;
}

/** The environment `deno task start` sets (`DENO_V8_FLAGS`), which its server processes inherit. */
export const START_ENV: Record<string, string> = Object.fromEntries(
  config.tasks.start.split(" ").filter((arg) => /^[A-Z][A-Z0-9_]*=/.test(arg)).map((arg) => {
    const at = arg.indexOf("=");
    return [arg.slice(0, at), arg.slice(at + 1)];
  }),
);

/**
 * The V8 flags `deno task start` sets (through `DENO_V8_FLAGS`, so that its
 * server processes inherit them), as `--v8-flags=…`: benchmarks measure the
 * server as users start it.
 */
export const START_RUNTIME_FLAGS: string[] = START_ENV.DENO_V8_FLAGS === undefined
  ? []
  : [`--v8-flags=${START_ENV.DENO_V8_FLAGS}`];

/**
 * `deno` arguments that start one brigade server process (no supervisor)
 * from this checkout on a free port with the access log off, with the start
 * task's runtime flags: `flags` follow.
 */
export function brigadeArgs(flags: string[]): string[] {
  return [
    "run",
    ...START_RUNTIME_FLAGS,
    "--allow-net",
    "--allow-read",
    "main.ts",
    "--port",
    "0",
    "--quiet",
    "--no-supervisor",
    ...flags,
  ];
}

/**
 * `deno` arguments that start brigade as `deno task start` does, with its
 * supervisor, on a free port with the access log off: `flags` follow. Start
 * it with `env: START_ENV` so its server processes get the start task's V8
 * flags.
 */
export function supervisedArgs(flags: string[]): string[] {
  return [
    "run",
    "--allow-net",
    "--allow-read",
    "--allow-run",
    "main.ts",
    "--port",
    "0",
    "--quiet",
    ...flags,
  ];
}

/**
 * The server processes a supervisor runs now, from `/proc` (through `cat`:
 * Deno reads `/proc/<pid>` only with `--allow-all`).
 */
export async function serverPids(supervisor: number): Promise<number[]> {
  const { stdout } = await new Deno.Command("cat", {
    args: [`/proc/${supervisor}/task/${supervisor}/children`],
  }).output();
  return new TextDecoder().decode(stdout).trim().split(/\s+/).filter(Boolean).map(Number);
}

/**
 * Whether process `pid` holds a socket listening on TCP `port` on this host,
 * from `/proc` (through `cat` and `ls`, as {@linkcode serverPids} does).
 */
export async function listensOn(pid: number, port: number): Promise<boolean> {
  const run = async (command: string, args: string[]) => {
    const { stdout } = await new Deno.Command(command, { args, stderr: "null" }).output();
    return new TextDecoder().decode(stdout);
  };
  const hexPort = `:${port.toString(16).toUpperCase().padStart(4, "0")}`;
  // Each row: slot, local address:port, remote address, state (0A: listening), …, inode.
  const listening = new Set(
    (await run("cat", ["/proc/net/tcp", "/proc/net/tcp6"])).split("\n")
      .map((row) => row.trim().split(/\s+/))
      .filter((fields) => fields[1]?.endsWith(hexPort) && fields[3] === "0A")
      .map((fields) => fields[9]),
  );
  const fds = await run("ls", ["-l", `/proc/${pid}/fd`]);
  return [...fds.matchAll(/socket:\[(\d+)\]/g)].some(([, inode]) => listening.has(inode));
}

/**
 * Runs `deno <args>` in the project folder and resolves once it prints its
 * "Listening on URL" line.
 */
export async function startServerProcess(
  args: string[],
  options: StartOptions = {},
): Promise<ServerProcess> {
  const program = options.command ?? Deno.execPath();
  const child = new Deno.Command(options.ownGroup ? "setsid" : program, {
    args: options.ownGroup ? [program, ...args] : args,
    cwd: options.cwd ?? new URL("..", import.meta.url).pathname,
    env: options.env,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let out = "";
  while (!out.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) break;
    out += value;
  }
  const firstLine = out.split("\n")[0];
  const url = /Listening on (\S+)/.exec(firstLine)?.[1];
  // Keep reading so the child never blocks on a full pipe.
  const stdout = (async () => {
    for (let r = await reader.read(); !r.done; r = await reader.read()) out += r.value;
    return out;
  })();
  const stderr = new Response(child.stderr).text();
  if (url === undefined) {
    throw new Error(`server did not start: ${firstLine} ${await stderr}`);
  }
  return {
    child,
    url,
    firstLine,
    stdout,
    stderr,
    async printed(text: string) {
      await until(() => out.includes(text)).catch(() => {
        throw new Error(
          `Cannot see ${JSON.stringify(text)} on stdout, received ${JSON.stringify(out)}`,
        );
      });
    },
  };
}

/** A port nobody listens on now (for a process that must be told its port). */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  listener.close();
  return listener.addr.port;
}

/**
 * `promise`, or a rejection after `limitMs`: a safety net so that a broken
 * server fails a test or a benchmark instead of hanging it. Leaves no timer
 * behind.
 */
export async function within<T>(promise: Promise<T>, what: string, limitMs = 10_000): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${limitMs} ms`)), limitMs);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** Waits for `condition`, checking every 10 ms; throws after `limitMs`. */
export async function until(
  condition: () => boolean | Promise<boolean>,
  limitMs = 10_000,
): Promise<void> {
  const deadline = Date.now() + limitMs;
  while (!await condition()) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Collects the lines written to stdout (the access log) until the returned function is called. */
export function captureStdout(lines: string[]): () => void {
  const write = Deno.stdout.writeSync;
  Deno.stdout.writeSync = (bytes: Uint8Array) => {
    lines.push(...new TextDecoder().decode(bytes).split("\n").filter(Boolean));
    return bytes.length;
  };
  return () => Deno.stdout.writeSync = write;
}
