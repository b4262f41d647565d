/**
 * `deno task bench`: wrk against brigade and against a Deno.serve baseline
 * serving the same bytes, started here in the same run and interleaved round
 * by round, so the ratio between them is what matters (absolute figures on a
 * shared 2-core machine are noise). Rows: static GET /, a trivial handler
 * module (bench/hello_handler.ts, which the baseline serves too), and GET /
 * while a /sleep blocks one of the two workers.
 *
 * `--compare DIR` adds a second brigade, from another checkout, to every
 * round: an interleaved A/B of two versions against the same baseline.
 *
 * Needs wrk: `apt-get install -y wrk`.
 */

import { parseArgs } from "node:util";
import { brigadeArgs, startServerProcess } from "../tests/_process.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    duration: { type: "string", default: "10" },
    connections: { type: "string", default: "50" },
    rounds: { type: "string", default: "3" },
    workers: { type: "string", default: "2" },
    "brigade-args": { type: "string", default: "" },
    compare: { type: "string" },
    cases: { type: "string", default: "static,handler,sleep" },
  },
});
const cases = values.cases.split(",");
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
async function startServer(args: string[], cwd?: string) {
  const server = await startServerProcess(args, { cwd });
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

const HANDLER = new URL("./hello_handler.ts", import.meta.url).pathname;
const brigade = (extra: string[]) =>
  brigadeArgs([
    "--workers",
    values.workers,
    "--log-level",
    "warn",
    ...values["brigade-args"].split(" ").filter(Boolean),
    ...extra,
  ]);

interface Contender {
  name: string;
  args: string[];
  cwd?: string;
  runs: WrkResult[];
}

interface Row {
  label: string;
  baseline: Contender;
  contenders: Contender[];
}

const rows: Row[] = [];
for (const name of cases) {
  if (name === "sleep") continue;
  const handler = name === "handler" ? ["--handler", HANDLER] : [];
  const row: Row = {
    label: name === "handler" ? "trivial handler module" : "static GET /",
    baseline: {
      name: "Deno.serve",
      args: ["run", "--allow-net", "--allow-read", "bench/baseline.ts", ...handler],
      runs: [],
    },
    contenders: [{ name: "brigade", args: brigade(handler), runs: [] }],
  };
  if (values.compare) {
    row.contenders.push({
      name: `brigade @ ${values.compare}`,
      args: brigade(handler),
      cwd: values.compare,
      runs: [],
    });
  }
  rows.push(row);
}

async function measure(contender: Contender): Promise<void> {
  const server = await startServer(contender.args, contender.cwd);
  try {
    await wrk(server.url, 1); // warm-up
    contender.runs.push(await wrk(server.url, duration));
  } finally {
    await server.stop();
  }
}

for (let round = 0; round < rounds; round++) {
  for (const row of rows) {
    // Alternate the order of the brigades so neither always runs second.
    const order = round % 2 === 0 ? row.contenders : row.contenders.toReversed();
    await measure(row.baseline);
    for (const contender of order) await measure(contender);
  }
}

// GET / while one /sleep blocks one of the two workers.
let duringSleep: WrkResult | undefined;
if (cases.includes("sleep")) {
  const sleepy = await startServer(brigade(["--sleep-ms", String((duration + 3) * 1000)]));
  await wrk(sleepy.url, 1);
  const sleeping = fetch(new URL("/sleep", sleepy.url)).then((r) => r.text());
  await new Promise((resolve) => setTimeout(resolve, 200));
  duringSleep = await wrk(sleepy.url, duration);
  await sleeping;
  await sleepy.stop();
}

// Deno guards /proc; grep may read it.
const cpuinfo = await new Deno.Command("grep", { args: ["-m1", "model name", "/proc/cpuinfo"] })
  .output().then((o) => new TextDecoder().decode(o.stdout), () => "");
const cpu = /model name\s*:\s*(.+)/.exec(cpuinfo)?.[1] ?? "unknown CPU";
const fmt = (n: number) => n.toFixed(2);
let table = `
Benchmark ${
  new Date().toISOString().slice(0, 10)
} on ${navigator.hardwareConcurrency} cores (${cpu}), Deno ${Deno.version.deno}
wrk -t1 -c${connections} -d${duration}s, median of ${rounds} interleaved rounds; brigade with ${values.workers} workers

| case | server | req/s | p50 ms | p99 ms | vs Deno.serve (median of per-round ratios) |
| --- | --- | ---: | ---: | ---: | ---: |
`;
const notes: string[] = [];
let errors = 0;
for (const row of rows) {
  const base = median(row.baseline.runs);
  table += `| ${row.label} | Deno.serve | ${Math.round(base.rps)} | ${fmt(base.p50)} | ${
    fmt(base.p99)
  } | 1.00× |\n`;
  for (const contender of row.contenders) {
    const ours = median(contender.runs);
    const ratios = contender.runs.map((run, i) => run.rps / row.baseline.runs[i].rps);
    const middle = ratios.toSorted((a, b) => a - b)[Math.floor(ratios.length / 2)];
    table += `| ${row.label} | ${contender.name} | ${Math.round(ours.rps)} | ${fmt(ours.p50)} | ${
      fmt(ours.p99)
    } | ${fmt(middle)}× |\n`;
    notes.push(`${row.label}, ${contender.name}: per-round ratios ${ratios.map(fmt).join(", ")}`);
    errors += contender.runs.reduce((a, r) => a + r.errors, 0);
  }
  errors += row.baseline.runs.reduce((a, r) => a + r.errors, 0);
}
if (duringSleep) {
  const base = rows.find((row) => row.label === "static GET /")?.baseline.runs;
  const ratio = base ? fmt(duringSleep.rps / median(base).rps) + "×" : "–";
  table += `| static GET /, one /sleep blocking a worker | brigade | ${
    Math.round(duringSleep.rps)
  } | ${fmt(duringSleep.p50)} | ${fmt(duringSleep.p99)} | ${ratio} |\n`;
  errors += duringSleep.errors;
}
console.log(table);
console.log(notes.join("\n"));
console.log(`errors (non-2xx, socket errors): ${errors}`);
