/**
 * `deno task bench:soak`: does brigade's memory stay flat under sustained
 * load? Issue 9's target: "RSS after 60 s of load: within 20% of RSS after
 * 5 s (no growth)". A leak per request or per connection, or a heap that
 * only ever grows, shows up here and not in `deno task bench`'s short runs.
 *
 * For brigade with 2 workers (one server process, `--no-supervisor`, the
 * start task's env, as bench.ts starts it) on the trivial handler module
 * (bench/hello_handler.ts) and on static GET /, and for plain Deno.serve on
 * the same handler as a reference: `wrk -t1 -c50 -d<duration>s` (60 by
 * default, `--duration`) while the server's RSS is sampled every 250 ms.
 * Prints RSS idle, 5 s into the load, at its end, its peak, end / 5 s against
 * the 20% target, and RSS 2 s after the load stops (does memory come back?).
 *
 * Needs wrk: `apt-get install -y wrk`.
 */

import { parseArgs } from "node:util";
import { brigadeArgs, START_ENV } from "../tests/_process.ts";
import { haveWrk, runWindow, startServer, wrk } from "./_load.ts";
import { RssSampler } from "./_rss.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: { duration: { type: "string", default: "60" } },
});
const duration = Number(values.duration);
const began = new Date();
const CONNECTIONS = 50;
const SAMPLE_MS = 250;
/** The target: RSS at the end at most this many times RSS 5 s in. */
const LIMIT = 1.2;

if (!(duration > 5)) {
  console.error(`Cannot soak: --duration must be more than 5 seconds, received ${values.duration}`);
  Deno.exit(1);
}
if (!(await haveWrk())) {
  console.error("Cannot soak without wrk: install it with apt-get install -y wrk");
  Deno.exit(1);
}

const HANDLER = new URL("./hello_handler.ts", import.meta.url).pathname;
const brigade = (extra: string[]) =>
  brigadeArgs(["--workers", "2", "--log-level", "warn", ...extra]);
const CASES: { label: string; server: string; args: string[]; env?: Record<string, string> }[] = [
  {
    label: "trivial handler module",
    server: "brigade",
    args: brigade(["--handler", HANDLER]),
    env: START_ENV,
  },
  { label: "static GET /", server: "brigade", args: brigade([]), env: START_ENV },
  {
    label: "trivial handler module",
    server: "Deno.serve",
    args: ["run", "--allow-net", "--allow-read", "bench/baseline.ts", "--handler", HANDLER],
  },
];

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const mb = (bytes: number) => (bytes / 1e6).toFixed(1);

const rows: string[] = [];
let errors = 0;
for (const { label, server: name, args, env } of CASES) {
  const server = await startServer(args, undefined, env);
  const rss = await RssSampler.start(server.pid, SAMPLE_MS);
  try {
    const idle = rss.start;
    const load = wrk(server.url, duration, CONNECTIONS);
    await sleep(5000);
    const at5 = await rss.next();
    const run = await load;
    const { last: end, peak, peakAt } = rss; // the last sample while wrk ran
    await sleep(2000);
    const after = await rss.next();
    errors += run.errors;
    const ratio = end / at5;
    const verdict = name === "brigade" ? (ratio <= LIMIT ? "PASS" : "**MISS**") : "–";
    console.log(
      `${label}, ${name}: ${Math.round(run.rps)} req/s; RSS MB idle ${mb(idle)}, 5 s ${
        mb(at5)
      }, end ${mb(end)}, peak ${mb(peak)} at ${peakAt.toFixed(1)} s, 2 s after ${
        mb(after)
      }; end/5 s ${ratio.toFixed(2)} ${verdict}; ${rss.samples} samples`,
    );
    rows.push(
      `| ${label} | ${name} | ${Math.round(run.rps)} | ${mb(idle)} | ${mb(at5)} | ${mb(end)} | ${
        mb(peak)
      } (${peakAt.toFixed(0)} s) | ${ratio.toFixed(2)} | ${verdict} | ${mb(after)} |`,
    );
  } finally {
    await rss.stop();
    await server.stop();
  }
}

console.log(`
Soak ${
  runWindow(began)
} on ${navigator.hardwareConcurrency} cores, Deno ${Deno.version.deno}: wrk -t1 -c${CONNECTIONS} -d${duration}s, RSS every ${SAMPLE_MS} ms; brigade with 2 workers, target end ≤ ${LIMIT} × 5 s

| case | server | req/s | idle RSS MB | RSS 5 s MB | RSS end MB | peak MB (s into load) | end / 5 s | within 20% | 2 s after MB |
| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |
${rows.join("\n")}

errors (non-2xx, socket errors): ${errors}`);
