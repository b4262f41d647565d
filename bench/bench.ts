/**
 * `deno task bench`: wrk against brigade and against a Deno.serve baseline
 * serving the same hello.html bytes, started here in the same run, so the
 * ratio between them is what matters (absolute figures on a shared 2-core
 * machine are noise). Also measures GET / latency while a /sleep is in
 * flight on a 2-worker pool.
 *
 * Needs wrk: `apt-get install -y wrk`.
 */

import { parseArgs } from "node:util";
import { startServerProcess } from "../tests/_process.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    duration: { type: "string", default: "10" },
    connections: { type: "string", default: "50" },
    rounds: { type: "string", default: "3" },
    workers: { type: "string", default: "2" },
    "brigade-args": { type: "string", default: "" },
  },
});
const duration = Number(values.duration);
const connections = Number(values.connections);
const rounds = Number(values.rounds);

interface WrkResult {
  rps: number;
  p50: number;
  p99: number;
  errors: number;
}

async function haveWrk(): Promise<boolean> {
  try {
    await new Deno.Command("wrk", { args: ["--version"], stdout: "null", stderr: "null" }).output();
    return true;
  } catch {
    return false;
  }
}

/** Starts a server process and resolves once it prints its URL. */
async function startServer(args: string[]) {
  const server = await startServerProcess(args);
  return {
    url: server.url,
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

async function wrk(url: string, seconds: number): Promise<WrkResult> {
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

/** The run with the median req/s: steadier than the best on a shared machine. */
function median(results: WrkResult[]): WrkResult {
  return results.toSorted((a, b) => a.rps - b.rps)[Math.floor(results.length / 2)];
}

if (!(await haveWrk())) {
  console.error("bench: wrk is not installed; install it with: apt-get install -y wrk");
  Deno.exit(1);
}

const brigadeArgs = [
  "run",
  "--allow-net",
  "--allow-read",
  "main.ts",
  "--port",
  "0",
  "--workers",
  values.workers,
  "--quiet",
  "--log-level",
  "warn",
  ...values["brigade-args"].split(" ").filter(Boolean),
];

const baselineRuns: WrkResult[] = [];
const brigadeRuns: WrkResult[] = [];
for (let round = 0; round < rounds; round++) {
  const baseline = await startServer(["run", "--allow-net", "--allow-read", "bench/baseline.ts"]);
  await wrk(baseline.url, 1); // warm-up
  baselineRuns.push(await wrk(baseline.url, duration));
  await baseline.stop();

  const brigade = await startServer(brigadeArgs);
  await wrk(brigade.url, 1);
  brigadeRuns.push(await wrk(brigade.url, duration));
  await brigade.stop();
}

// GET / while one /sleep holds a worker of the two.
const sleepy = await startServer([...brigadeArgs, "--sleep-ms", String((duration + 3) * 1000)]);
await wrk(sleepy.url, 1);
const sleeping = fetch(new URL("/sleep", sleepy.url)).then((r) => r.text());
await new Promise((resolve) => setTimeout(resolve, 200));
const duringSleep = await wrk(sleepy.url, duration);
await sleeping;
await sleepy.stop();

const base = median(baselineRuns);
const ours = median(brigadeRuns);
const ratios = brigadeRuns.map((run, i) => run.rps / baselineRuns[i].rps).toSorted((a, b) => a - b);
// Deno guards /proc; grep may read it.
const cpuinfo = await new Deno.Command("grep", { args: ["-m1", "model name", "/proc/cpuinfo"] })
  .output().then((o) => new TextDecoder().decode(o.stdout), () => "");
const cpu = /model name\s*:\s*(.+)/.exec(cpuinfo)?.[1] ?? "unknown CPU";
const fmt = (n: number) => n.toFixed(2);
console.log(`
Benchmark ${
  new Date().toISOString().slice(0, 10)
} on ${navigator.hardwareConcurrency} cores (${cpu}), Deno ${Deno.version.deno}
wrk -t1 -c${connections} -d${duration}s GET /, median of ${rounds} interleaved rounds; brigade with ${values.workers} workers

| server | req/s | p50 ms | p99 ms | vs Deno.serve |
| --- | ---: | ---: | ---: | ---: |
| Deno.serve (baseline) | ${Math.round(base.rps)} | ${fmt(base.p50)} | ${fmt(base.p99)} | 1.00× |
| brigade | ${Math.round(ours.rps)} | ${fmt(ours.p50)} | ${fmt(ours.p99)} | ${
  fmt(ours.rps / base.rps)
}× |
| brigade, one /sleep in flight | ${Math.round(duringSleep.rps)} | ${fmt(duringSleep.p50)} | ${
  fmt(duringSleep.p99)
} | ${fmt(duringSleep.rps / base.rps)}× |
`);
console.log(
  `per-round ratios: ${ratios.map(fmt).join(", ")}; all rounds (req/s): baseline ${
    baselineRuns.map((r) => Math.round(r.rps)).join(", ")
  }; ` +
    `brigade ${brigadeRuns.map((r) => Math.round(r.rps)).join(", ")}; errors ${
      [...baselineRuns, ...brigadeRuns, duringSleep].reduce((a, r) => a + r.errors, 0)
    }`,
);
