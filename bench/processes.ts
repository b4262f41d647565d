/**
 * `deno task bench:processes`: what the supervisor buys, in figures.
 *
 * Faults, each under steady probe load (8 clients looping `GET /ok`):
 * - a `while (true) {}` request with `--timeout 2000`: seconds until its
 *   answer, and until the process holding the runaway thread has exited
 *   (its core reclaimed), and probes lost meanwhile;
 * - a handler that allocates until V8 aborts the process, with 1 and with 2
 *   processes: probes answered, probes lost, and seconds from the death until
 *   service is whole again;
 * - `kill -9` of a server process, with 1 and with 2 processes: the same.
 *
 * Scaling: wrk against static GET / and a 10 µs handler at `--processes` 1,
 * 2 and 4 with 4 workers in total, interleaved round by round.
 *
 * Needs wrk (`apt-get install -y wrk`) for the scaling part.
 */
import { parseArgs } from "node:util";
import {
  serverPids,
  type ServerProcess,
  START_ENV,
  startServerProcess,
  supervisedArgs,
  until,
} from "../tests/_process.ts";
import { median } from "./_load.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    only: { type: "string", default: "faults,scaling" },
    rounds: { type: "string", default: "3" },
    duration: { type: "string", default: "5" },
  },
});
const parts = values.only.split(",");
const FAULTS = "tests/fixtures/fault_handler.ts";

/** Supervised brigade; `env` (such as `DENO_V8_FLAGS`) reaches its server processes too. */
function brigade(flags: string[], env?: Record<string, string>) {
  return startServerProcess(supervisedArgs(["--log-level", "warn", ...flags]), {
    env: { ...START_ENV, ...env },
  });
}

/** Stops a supervised server and waits for it to exit; one that has exited already is left be. */
async function stop(server: ServerProcess): Promise<void> {
  try {
    server.child.kill("SIGTERM");
  } catch {
    // exited already
  }
  await server.child.status;
}

async function alive(pid: number): Promise<boolean> {
  const { success } = await new Deno.Command("test", { args: ["-d", `/proc/${pid}`] }).output();
  return success;
}

/** 8 clients looping `GET /ok`; each outcome is kept with its time. */
function probe(url: string) {
  const outcomes: { at: number; ok: boolean; refused?: boolean }[] = [];
  let running = true;
  const loops = Array.from({ length: 8 }, async () => {
    while (running) {
      let ok = false;
      let refused = false;
      try {
        const response = await fetch(new URL("/ok", url), { signal: AbortSignal.timeout(5000) });
        ok = response.status === 200 && await response.text() === "ok";
      } catch (error) {
        // Refused (nobody listening) never reached a server; anything else was lost on the way.
        refused = /refused/i.test(String((error as Error).cause ?? error));
      }
      outcomes.push({ at: performance.now(), ok, refused });
      if (!ok) await new Promise((resolve) => setTimeout(resolve, 20));
    }
  });
  return {
    outcomes,
    async stop() {
      running = false;
      await Promise.all(loops);
    },
  };
}

const s = (ms: number) => `${(ms / 1000).toFixed(2)} s`;

async function runaway(): Promise<void> {
  const server = await brigade(["--workers", "2", "--timeout", "2000", "--handler", FAULTS]);
  let stopProbes = async () => {};
  try {
    const [old] = await serverPids(server.child.pid);
    const probes = probe(server.url);
    stopProbes = probes.stop;
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const start = performance.now();
    const spin = await fetch(new URL("/spin", server.url)).then((r) => r.status, () => 0);
    const answered = performance.now() - start;
    await until(async () => !await alive(old), 30_000);
    const reclaimed = performance.now() - start;
    await new Promise((resolve) => setTimeout(resolve, 1000));
    await probes.stop();
    const lost = probes.outcomes.filter((o) => !o.ok).length;
    console.log(
      `runaway loop (--timeout 2000): /spin got ${spin} after ${
        s(answered)
      }; core reclaimed (old process gone) after ${
        s(reclaimed)
      }; probes ${probes.outcomes.length}, lost ${lost}`,
    );
  } finally {
    await stopProbes();
    await stop(server);
  }
}

async function death(kind: "oom" | "kill9", processes: number): Promise<void> {
  const flags = ["--processes", String(processes), "--workers", "1", "--handler", FAULTS];
  // A 256 MB heap limit makes the abort quick; it is the same abort at 4 GB.
  const server = await brigade(
    flags,
    kind === "oom" ? { DENO_V8_FLAGS: "--max-semi-space-size=1,--max-old-space-size=256" } : {},
  );
  let stopProbes = async () => {};
  try {
    const before = await serverPids(server.child.pid);
    const probes = probe(server.url);
    stopProbes = probes.stop;
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const faultAt = performance.now();
    let victim: number;
    if (kind === "kill9") {
      victim = before[0];
      Deno.kill(victim, "SIGKILL");
    } else {
      // Whichever process takes this connection dies of it.
      fetch(new URL("/hog", server.url)).then((r) => r.body?.cancel(), () => {});
      await until(
        async () =>
          (await serverPids(server.child.pid)).some((p) => !before.includes(p)) ||
          (await Promise.all(before.map(alive))).includes(false),
        30_000,
      );
      victim = (await Promise.all(before.map(async (p) => [p, await alive(p)] as const)))
        .find(([, up]) => !up)?.[0] ?? before[0];
    }
    await until(async () => !await alive(victim), 30_000);
    const diedAt = performance.now();
    await until(async () => {
      const pids = await serverPids(server.child.pid);
      return pids.length === processes && !pids.includes(victim);
    }, 30_000);
    // Whole again: the full count of processes, and 20 probes in a row answered.
    await until(() => {
      const last = probes.outcomes.slice(-20);
      return last.length === 20 && last.every((o) => o.ok) && last[0].at > diedAt;
    }, 30_000);
    const restored = performance.now() - diedAt;
    await probes.stop();
    const during = probes.outcomes.filter((o) => o.at >= faultAt);
    const answered = during.filter((o) => o.ok).length;
    const refused = during.filter((o) => o.refused).length;
    console.log(
      `${kind === "oom" ? "heap exhausted (V8 abort)" : "kill -9"}, ${processes} process${
        processes > 1 ? "es" : ""
      }: probes ${during.length}, answered ${(100 * answered / during.length).toFixed(1)}%, lost ${
        during.length - answered - refused
      } in flight, refused ${refused} while nothing listened; whole again ${
        s(restored)
      } after the death (fault to death ${s(diedAt - faultAt)})`,
    );
  } finally {
    await stopProbes();
    await stop(server);
  }
}

async function wrk(url: string, seconds: number): Promise<number> {
  const { stdout } = await new Deno.Command("wrk", {
    args: ["-t2", "-c50", `-d${seconds}s`, url],
    stdout: "piped",
  }).output();
  return Number(/Requests\/sec:\s+([\d.]+)/.exec(new TextDecoder().decode(stdout))?.[1]);
}

async function scaling(): Promise<void> {
  const configs = [[1, 4], [2, 2], [4, 1]] as const;
  const cases = [["static GET /", []], ["10 µs handler", [
    "--handler",
    "bench/cpu_handler.ts",
  ]]] as const;
  const results = new Map<string, number[]>();
  for (let round = 0; round < Number(values.rounds); round++) {
    for (const [name, extra] of cases) {
      for (const [processes, workers] of configs) {
        const server = await brigade([
          "--processes",
          String(processes),
          "--workers",
          String(workers),
          ...extra,
        ]);
        try {
          await wrk(server.url, 1); // warm-up
          const rps = await wrk(server.url, Number(values.duration));
          const key = `${name} | ${processes} × ${workers}`;
          results.set(key, [...results.get(key) ?? [], rps]);
        } finally {
          await stop(server);
        }
      }
    }
  }
  console.log("\n| case | processes × workers | req/s (median) | vs 1 process |");
  console.log("| --- | --- | ---: | ---: |");
  for (const [name] of cases) {
    const one = median(results.get(`${name} | 1 × 4`)!);
    for (const [processes, workers] of configs) {
      const rps = median(results.get(`${name} | ${processes} × ${workers}`)!);
      console.log(
        `| ${name} | ${processes} × ${workers} | ${Math.round(rps)} | ${(rps / one).toFixed(2)}× |`,
      );
    }
  }
}

if (parts.includes("faults")) {
  await runaway();
  for (const processes of [1, 2]) {
    await death("oom", processes);
    await death("kill9", processes);
  }
}
if (parts.includes("scaling")) await scaling();
