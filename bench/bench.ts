/**
 * `deno task bench`: wrk against brigade and against two baselines serving
 * the same bytes (Deno.serve, and `deno serve --parallel` with as many
 * threads as brigade has workers), all started here in the same run and
 * interleaved round by round, so the ratios are what matter (absolute
 * figures on a shared 2-core machine are noise). Rows: static GET /, a
 * trivial handler module (bench/hello_handler.ts, which the baselines serve
 * too), a handler spending about 10 µs of CPU (bench/cpu_handler.ts), a
 * 1 MiB file, and GET / while a /sleep blocks one of the two workers. Each
 * server's RSS is read when it is idle (before the warm-up) and loaded
 * (right after its run).
 *
 * `--compare DIR` adds a second brigade, from another checkout, to every
 * round: an interleaved A/B of two versions against the same baseline.
 *
 * Needs wrk: `apt-get install -y wrk`.
 */

import { parseArgs } from "node:util";
import { brigadeArgs, freePort, START_ENV } from "../tests/_process.ts";
import { haveWrk, median, runWindow, startServer, wrk, type WrkResult } from "./_load.ts";

/** The rows this script can run, in order. */
const CASE_NAMES = ["static", "handler", "cpu10", "file1m", "idle10k", "sleep"];

const { values } = parseArgs({
  args: Deno.args,
  options: {
    duration: { type: "string", default: "10" },
    connections: { type: "string", default: "50" },
    rounds: { type: "string", default: "3" },
    workers: { type: "string", default: "2" },
    "brigade-args": { type: "string", default: "" },
    compare: { type: "string" },
    cases: { type: "string", default: CASE_NAMES.join(",") },
  },
});
const cases = values.cases.split(",");
const unknown = cases.filter((name) => !CASE_NAMES.includes(name));
if (unknown.length > 0) {
  console.error(
    `Cannot run cases ${unknown.join(", ")}: the cases are ${
      CASE_NAMES.join(", ")
    }, received --cases ${values.cases}`,
  );
  Deno.exit(2);
}
const duration = Number(values.duration);
const connections = Number(values.connections);
const rounds = Number(values.rounds);
const began = new Date();

/** The run with the median req/s: steadier than the best on a shared machine. */
function medianRun(results: WrkResult[]): WrkResult {
  return results.toSorted((a, b) => a.rps - b.rps)[Math.floor(results.length / 2)];
}

if (!(await haveWrk())) {
  console.error("bench: wrk is not installed; install it with: apt-get install -y wrk");
  Deno.exit(1);
}

const HANDLER = new URL("./hello_handler.ts", import.meta.url).pathname;
const CPU_HANDLER = new URL("./cpu_handler.ts", import.meta.url).pathname;
const brigade = (extra: string[]) =>
  brigadeArgs([
    "--workers",
    values.workers,
    "--log-level",
    "warn",
    ...values["brigade-args"].split(" ").filter(Boolean),
    ...extra,
  ]);

/** A root with one 1 MiB file, for the file row (made by sh: the task has no --allow-write). */
const BIG_ROOT = await (async () => {
  const made = await new Deno.Command("sh", {
    args: ["-c", 'd=$(mktemp -d) && head -c 1048576 /dev/urandom > "$d/big.bin" && echo "$d"'],
    stdout: "piped",
  }).output();
  if (!made.success) throw new Error("Cannot write the 1 MiB file, received a failing sh");
  return new TextDecoder().decode(made.stdout).trim();
})();

interface Contender {
  name: string;
  /** `deno` by default. */
  command?: string;
  /** Arguments; "PORT" is replaced by a free port. */
  args: string[];
  cwd?: string;
  env?: Record<string, string>;
  /** Appended to the server's URL. */
  path?: string;
  runs: WrkResult[];
}

interface Row {
  label: string;
  baseline: Contender;
  /** `deno serve --parallel`, for the memory comparison and a second ratio. */
  parallel: Contender;
  contenders: Contender[];
}

const CASES: Record<
  string,
  { label: string; brigade: string[]; baseline: string[]; path?: string }
> = {
  static: { label: "static GET /", brigade: [], baseline: [] },
  handler: {
    label: "trivial handler module",
    brigade: ["--handler", HANDLER],
    baseline: ["--handler", HANDLER],
  },
  cpu10: {
    label: "10 µs CPU handler module",
    brigade: ["--handler", CPU_HANDLER],
    baseline: ["--handler", CPU_HANDLER],
  },
  file1m: {
    label: "1 MiB file",
    brigade: ["--root", BIG_ROOT],
    baseline: ["--root", BIG_ROOT, "--file", "big.bin"],
    path: "big.bin",
  },
};

const rows: Row[] = [];
for (const name of cases) {
  const spec = CASES[name];
  if (spec === undefined) continue;
  const row: Row = {
    label: spec.label,
    baseline: {
      name: "Deno.serve",
      args: ["run", "--allow-net", "--allow-read", "bench/baseline.ts", ...spec.baseline],
      path: spec.path,
      runs: [],
    },
    parallel: {
      name: `deno serve --parallel (${values.workers})`,
      // deno serve announces itself on stderr: exec keeps the pid (for RSS) and moves it to stdout.
      args: [
        "-c",
        'exec "$0" "$@" 2>&1',
        Deno.execPath(),
        "serve",
        "--parallel",
        "--allow-net",
        "--allow-read",
        "--host",
        "127.0.0.1",
        "--port",
        "PORT",
        "bench/baseline.ts",
        "--as-module",
        ...spec.baseline,
      ],
      command: "sh",
      env: { DENO_JOBS: values.workers },
      path: spec.path,
      runs: [],
    },
    contenders: [{
      name: "brigade",
      args: brigade(spec.brigade),
      env: START_ENV,
      path: spec.path,
      runs: [],
    }],
  };
  if (values.compare) {
    row.contenders.push({
      name: `brigade @ ${values.compare}`,
      args: brigade(spec.brigade),
      env: START_ENV,
      cwd: values.compare,
      path: spec.path,
      runs: [],
    });
  }
  rows.push(row);
}

/** Resident memory of process `pid` in MB (Deno guards /proc; grep may read it). */
async function rssMB(pid: number): Promise<number> {
  const { stdout } = await new Deno.Command("grep", { args: ["VmRSS", `/proc/${pid}/status`] })
    .output();
  // VmRSS is in KiB; MB are 10^6 bytes here, as in bench/_rss.ts.
  return Number(/(\d+)/.exec(new TextDecoder().decode(stdout))?.[1] ?? NaN) * 1024 / 1e6;
}

async function measure(contender: Contender): Promise<void> {
  const args = contender.args.map((arg) => arg === "PORT" ? String(freePort()) : arg);
  const server = await startServer(args, contender.cwd, contender.env, contender.command);
  const url = new URL(contender.path ?? "", server.url).href;
  try {
    const idleMB = await rssMB(server.pid);
    await wrk(url, 1, connections); // warm-up
    const run = await wrk(url, duration, connections);
    contender.runs.push({ ...run, idleMB, loadedMB: await rssMB(server.pid) });
  } finally {
    await server.stop();
  }
}

// Whatever happens from here on, the 1 MiB file's folder goes.
try {
  for (let round = 0; round < rounds; round++) {
    for (const row of rows) {
      // Alternate the order of the brigades so neither always runs second.
      const order = round % 2 === 0 ? row.contenders : row.contenders.toReversed();
      await measure(row.baseline);
      await measure(row.parallel);
      for (const contender of order) await measure(contender);
    }
  }

  // Memory per idle keep-alive connection: 10,000 clients each make one request and stay.
  const IDLE_CONNECTIONS = 10_000;
  const idleRows: string[] = [];
  if (cases.includes("idle10k")) {
    const servers: [string, string[], Record<string, string>?][] = [
      ["Deno.serve", ["run", "--allow-net", "--allow-read", "bench/baseline.ts"]],
      // brigade closes idle connections after --idle-timeout (5 s); keep them for the count.
      ["brigade", brigade(["--idle-timeout", "120000", "--max-connections", "20000"]), START_ENV],
    ];
    const request = new TextEncoder().encode("GET / HTTP/1.1\r\nHost: bench\r\n\r\n");
    for (const [name, args, env] of servers) {
      const server = await startServer(args, undefined, env);
      const conns: Deno.Conn[] = [];
      try {
        const { port } = new URL(server.url);
        const before = await rssMB(server.pid);
        const buffer = new Uint8Array(4096);
        for (let i = 0; i < IDLE_CONNECTIONS; i += 250) {
          await Promise.all(Array.from({ length: 250 }, async () => {
            const conn = await Deno.connect({ hostname: "127.0.0.1", port: Number(port) });
            conns.push(conn);
            await conn.write(request);
            await conn.read(buffer); // the head and (small) body arrive together
          }));
        }
        const after = await rssMB(server.pid);
        idleRows.push(
          `| ${name} | ${before.toFixed(0)} | ${after.toFixed(0)} | ${
            ((after - before) * 1000 / IDLE_CONNECTIONS).toFixed(1)
          } |`,
        );
      } finally {
        for (const conn of conns) conn.close();
        await server.stop();
      }
    }
  }

  // GET / while one /sleep blocks one of the two workers.
  let duringSleep: WrkResult | undefined;
  if (cases.includes("sleep")) {
    const sleepy = await startServer(
      brigade(["--sleep-ms", String((duration + 3) * 1000)]),
      undefined,
      START_ENV,
    );
    try {
      await wrk(sleepy.url, 1, connections);
      const sleeping = fetch(new URL("/sleep", sleepy.url)).then((r) => r.text());
      await new Promise((resolve) => setTimeout(resolve, 200));
      duringSleep = await wrk(sleepy.url, duration, connections);
      await sleeping;
    } finally {
      await sleepy.stop();
    }
  }

  // Deno guards /proc; grep may read it.
  const cpuinfo = await new Deno.Command("grep", { args: ["-m1", "model name", "/proc/cpuinfo"] })
    .output().then((o) => new TextDecoder().decode(o.stdout), () => "");
  const cpu = /model name\s*:\s*(.+)/.exec(cpuinfo)?.[1] ?? "unknown CPU";
  const fmt = (n: number) => n.toFixed(2);
  const mb = (n: number | undefined) => n === undefined ? "–" : n.toFixed(0);
  let table = `
  Benchmark ${
    runWindow(began)
  } on ${navigator.hardwareConcurrency} cores (${cpu}), Deno ${Deno.version.deno}
  wrk -t1 -c${connections} -d${duration}s, median of ${rounds} interleaved rounds; brigade with ${values.workers} workers

  | case | server | req/s | p50 ms | p99 ms | vs Deno.serve | vs --parallel | idle RSS MB | loaded RSS MB |
  | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
  `;
  const notes: string[] = [];
  let errors = 0;
  /** The median over rounds of `contender`'s per-round ratio to `base`. */
  const ratio = (contender: Contender, base: Contender) =>
    median(contender.runs.map((run, i) => run.rps / base.runs[i].rps));
  for (const row of rows) {
    for (const contender of [row.baseline, row.parallel, ...row.contenders]) {
      const ours = medianRun(contender.runs);
      const vsServe = contender === row.baseline
        ? "1.00×"
        : `${fmt(ratio(contender, row.baseline))}×`;
      const vsParallel = contender === row.parallel
        ? "1.00×"
        : `${fmt(ratio(contender, row.parallel))}×`;
      table += `| ${row.label} | ${contender.name} | ${Math.round(ours.rps)} | ${fmt(ours.p50)} | ${
        fmt(ours.p99)
      } | ${vsServe} | ${vsParallel} | ${mb(median(contender.runs.map((r) => r.idleMB!)))} | ${
        mb(median(contender.runs.map((r) => r.loadedMB!)))
      } |\n`;
      if (row.contenders.includes(contender)) {
        const ratios = contender.runs.map((run, i) => fmt(run.rps / row.baseline.runs[i].rps));
        notes.push(
          `${row.label}, ${contender.name}: per-round ratios to Deno.serve ${ratios.join(", ")}`,
        );
      }
      errors += contender.runs.reduce((a, r) => a + r.errors, 0);
    }
  }
  if (duringSleep) {
    const base = rows.find((row) => row.label === "static GET /")?.baseline.runs;
    const vs = base ? fmt(duringSleep.rps / medianRun(base).rps) + "×" : "–";
    table += `| static GET /, one /sleep blocking a worker | brigade | ${
      Math.round(duringSleep.rps)
    } | ${fmt(duringSleep.p50)} | ${fmt(duringSleep.p99)} | ${vs} | – | – | – |\n`;
    errors += duringSleep.errors;
  }
  console.log(table);
  if (idleRows.length > 0) {
    console.log(`${IDLE_CONNECTIONS} idle keep-alive connections, each after one GET /:\n`);
    console.log("| server | RSS before MB | RSS with them MB | KB per connection |");
    console.log("| --- | ---: | ---: | ---: |");
    console.log(idleRows.join("\n") + "\n");
  }
  console.log(notes.join("\n"));
  console.log(`errors (non-2xx, socket errors): ${errors}`);
} finally {
  await new Deno.Command("rm", { args: ["-r", BIG_ROOT] }).output();
}
