/**
 * `deno task bench:faults`: many concurrent clients against brigade while
 * workers are killed at random (crash, unhandled rejection, self.close,
 * Deno.exit, infinite loop) and the queue is overloaded. Prints requests
 * sent, responses by status, resets and hangs. The target is 0 hangs and
 * 0 lost responses: every request not refused with 503 gets a response.
 */

import { parseArgs } from "node:util";
import { brigadeArgs, START_ENV, startServerProcess } from "../tests/_process.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    seconds: { type: "string", default: "10" },
    clients: { type: "string", default: "64" },
    workers: { type: "string", default: "2" },
    "max-queue": { type: "string", default: "64" },
  },
});
const seconds = Number(values.seconds);
const clients = Number(values.clients);
const workers = Number(values.workers);
const maxQueue = Number(values["max-queue"]);
const HANG_MS = 15_000;

const server = await startServerProcess(
  brigadeArgs([
    `--workers=${workers}`,
    `--max-queue=${maxQueue}`,
    "--timeout=1000",
    "--queue-timeout=3000",
    "--handler=tests/fixtures/fault_handler.ts",
    "--log-level=error",
  ]),
  { env: START_ENV },
);
const { child } = server;
const base = server.url;

async function rssKiB(): Promise<number> {
  const { stdout } = await new Deno.Command("ps", { args: ["-o", "rss=", "-p", String(child.pid)] })
    .output();
  return Number(new TextDecoder().decode(stdout).trim());
}

const MIX: [number, string][] = [
  [70, "/ok"],
  [12, "/sleep?ms=100"],
  [3, "/crash"],
  [3, "/reject"],
  [3, "/close"],
  [3, "/exit"],
  [1, "/spin"],
  [5, "/throw"],
];
const total = MIX.reduce((sum, [weight]) => sum + weight, 0);
function pick(): string {
  let r = Math.random() * total;
  for (const [weight, path] of MIX) if ((r -= weight) < 0) return path;
  return "/ok";
}

const statuses = new Map<string, number>();
let sent = 0;
let resets = 0;
let hangs = 0;
const count = (key: string) => statuses.set(key, (statuses.get(key) ?? 0) + 1);

async function one(path: string): Promise<void> {
  sent++;
  try {
    const response = await fetch(new URL(path, base), { signal: AbortSignal.timeout(HANG_MS) });
    await response.arrayBuffer();
    count(String(response.status));
  } catch (error) {
    if ((error as Error).name === "TimeoutError") hangs++;
    else resets++;
  }
}

const rssBefore = await rssKiB();
const stopAt = Date.now() + seconds * 1000;
await Promise.all(Array.from({ length: clients }, async () => {
  while (Date.now() < stopAt) await one(pick());
}));
const rssAfterFaults = await rssKiB();

// Overload: ten times what the pool can hold (running + queued) of slow requests at once.
const burst = 10 * (workers + maxQueue);
await Promise.all(Array.from({ length: burst }, () => one("/sleep?ms=300")));
const rssAfterBurst = await rssKiB();

// Recovery: once the load stops, service is normal again by itself.
const before = statuses.get("200") ?? 0;
for (let i = 0; i < 20; i++) await one("/ok");
const recovered = (statuses.get("200") ?? 0) - before === 20;

const stats = await (async () => {
  child.kill("SIGTERM");
  return await child.status;
})();

const lost = resets + hangs;
console.log(
  `load-and-fault: ${clients} clients for ${seconds}s, then a burst of ${burst}; ${workers} workers, max-queue ${maxQueue}
requests sent: ${sent}
responses by status: ${[...statuses].sort().map(([s, n]) => `${s}: ${n}`).join(", ")}
resets: ${resets}
hangs: ${hangs}
lost (resets + hangs): ${lost}
server RSS: ${Math.round(rssBefore / 1024)} MiB at start, ${
    Math.round(rssAfterFaults / 1024)
  } MiB after the faults, ${Math.round(rssAfterBurst / 1024)} MiB after the burst
recovered after the load: ${recovered ? "yes" : "NO"}; server exit code ${stats.code}`,
);
Deno.exit(lost === 0 && recovered ? 0 : 1);
