/** The supervisor process: restarts, give-up, signals with several processes, recycling. */
import assert from "node:assert/strict";
import { ControlConnection, HELLO_LINE } from "../_supervisor/protocol.ts";
import { exchange } from "./_http_client.ts";
import {
  brigadeArgs,
  listensOn,
  serverPids,
  type ServerProcess,
  START_ENV,
  startServerProcess,
  supervisedArgs,
  until,
} from "./_process.ts";

const FAULTS = new URL("./fixtures/fault_handler.ts", import.meta.url).pathname;

/** Supervised brigade (the default), as `deno run … main.ts` starts it. */
function supervised(flags: string[]) {
  return startServerProcess(supervisedArgs(flags), { env: START_ENV });
}

async function status(url: string, path = "/"): Promise<number> {
  try {
    const response = await fetch(new URL(path, url));
    await response.body?.cancel();
    return response.status;
  } catch {
    return 0;
  }
}

/** Waits until one process other than `old` serves, and the port answers 200. */
function replaced(server: ServerProcess, old: number, limitMs?: number): Promise<void> {
  return until(async () => {
    const pids = await serverPids(server.child.pid);
    return pids.length === 1 && pids[0] !== old && await status(server.url) === 200;
  }, limitMs);
}

/** Stops a supervised server with SIGTERM, checks it exits 0, and returns what it printed. */
async function stopServer(server: ServerProcess): Promise<{ stdout: string; stderr: string }> {
  server.child.kill("SIGTERM");
  assert.equal((await server.child.status).code, 0);
  const [stdout, stderr] = await Promise.all([server.stdout, server.stderr]);
  return { stdout, stderr };
}

/** Stops `server` at the end of a scope if the test has not: a failed test leaves no process behind. */
function stopAtEnd(server: ServerProcess): AsyncDisposable {
  return {
    async [Symbol.asyncDispose]() {
      try {
        server.child.kill("SIGTERM");
      } catch {
        return; // exited already, and was waited for
      }
      await Promise.all([server.child.status, server.stdout, server.stderr]);
    },
  };
}

/**
 * The fault handler, behind a module in a temporary folder that does not
 * finish loading while a `hold` file is next to it. A server process started
 * during `hold()` never gets its workers ready, so it cannot listen until
 * `release()`: what the process it replaces does meanwhile can be seen.
 */
async function holdableApp() {
  const dir = await Deno.makeTempDir({ prefix: "brigade-held-" });
  const hold = `${dir}/hold`;
  await Deno.writeTextFile(
    `${dir}/app.ts`,
    `while (await Deno.stat(${JSON.stringify(hold)}).then(() => true, () => false)) {\n` +
      "  await new Promise((resolve) => setTimeout(resolve, 20));\n}\n" +
      `export { default } from ${
        JSON.stringify(new URL("./fixtures/fault_handler.ts", import.meta.url).href)
      };\n`,
  );
  return {
    path: `${dir}/app.ts`,
    hold: () => Deno.writeTextFile(hold, ""),
    release: () => Deno.remove(hold),
    async [Symbol.asyncDispose]() {
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/**
 * Flags for one worker that a request to /spin leaves stuck long enough to
 * be seen: past --timeout it is pinged, a second later it counts as stuck (the
 * once-a-second check then finds every worker stuck), and only at twice
 * --timeout is it terminated.
 */
const STUCK_FOR_A_WHILE = ["--workers", "1", "--timeout", "4000", "--handler"];

Deno.test("the supervisor restarts a server process killed with SIGKILL, on the same port", async () => {
  const server = await supervised(["--workers", "1"]);
  const [first] = await serverPids(server.child.pid);
  assert.ok(first > 0);
  Deno.kill(first, "SIGKILL");
  await replaced(server, first);
  assert.match(
    (await stopServer(server)).stderr,
    new RegExp(
      `^brigade: server process ${first} exited \\(signal SIGKILL\\); restarting in \\d+ ms$`,
      "m",
    ),
  );
});

Deno.test("a server process that keeps failing to start again makes the supervisor give up with one line and exit 1", async () => {
  const dir = await Deno.makeTempDir({ prefix: "brigade-flaky-" });
  // Starts while there is no `broken` file next to it; fails to load once there is.
  await Deno.writeTextFile(
    `${dir}/app.ts`,
    'try { Deno.statSync(new URL("./broken", import.meta.url)); throw new Error("broken on purpose"); }\n' +
      'catch (error) { if ((error as Error).message === "broken on purpose") throw error; }\n' +
      'export default { fetch: () => new Response("up") };\n',
  );
  try {
    const server = await supervised(["--workers", "1", "--handler", `${dir}/app.ts`]);
    assert.equal(await status(server.url), 200);
    await Deno.writeTextFile(`${dir}/broken`, "");
    const [pid] = await serverPids(server.child.pid);
    Deno.kill(pid, "SIGKILL");
    const { code } = await server.child.status;
    const stderr = await server.stderr;
    assert.equal(code, 1, stderr);
    const giveUp = stderr.split("\n").filter((line) => line.includes("Cannot restart"));
    assert.deepEqual(giveUp, [
      "brigade: Cannot restart a server process: 5 start-ups in a row failed, received exit code 1",
    ]);
    assert.equal(stderr.match(/broken on purpose/g)?.length, 5, "five attempts, each one line");
    await server.stdout;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("with --processes 2, stats add up both processes and SIGTERM drains both before exit 0", async () => {
  const server = await supervised([
    "--processes",
    "2",
    "--workers",
    "1",
    "--sleep-ms",
    "1000",
    "--stats",
  ]);
  assert.match(server.firstLine, /with 1 workers in each of 2 processes$/);
  assert.equal((await serverPids(server.child.pid)).length, 2);
  const stats = async () => await (await fetch(new URL("/_brigade/stats", server.url))).json();
  await until(async () => {
    const { processes, workers } = await stats();
    return processes === 2 && workers === 2;
  });
  const sleeping = Array.from(
    { length: 4 },
    () =>
      fetch(new URL("/sleep", server.url)).then(async (r) => [r.status, (await r.text()).length]),
  );
  await until(async () => (await stats()).requests === 4);
  server.child.kill("SIGTERM");
  const answers = await Promise.all(sleeping);
  assert.ok(answers.every(([code, length]) => code === 200 && length > 100), String(answers));
  assert.equal((await server.child.status).code, 0, await server.stderr);
  assert.equal((await server.stdout).match(/^Shutting down\.$/gm)?.length, 2, "both drained");
});

Deno.test("whole-server counters keep dead processes' requests: they never go back after restarts", async () => {
  const server = await supervised(["--processes", "2", "--workers", "1", "--stats"]);
  const stats = async () => {
    try {
      return await (await fetch(new URL("/_brigade/stats", server.url))).json();
    } catch {
      return undefined; // between processes
    }
  };
  for (let i = 0; i < 5; i++) assert.equal(await status(server.url), 200);
  // Both processes' figures have reached the supervisor once they come back summed.
  await until(async () => {
    const whole = await stats();
    return whole?.processes === 2 && whole.completed >= 5;
  });
  const first = await serverPids(server.child.pid);
  for (const pid of first) Deno.kill(pid, "SIGKILL");
  await until(async () => {
    const pids = await serverPids(server.child.pid);
    if (pids.length !== 2 || pids.some((pid) => first.includes(pid))) return false;
    const whole = await stats();
    return whole?.processes === 2 && whole.completed >= 5;
  });
  await stopServer(server);
});

Deno.test("a server process with a stuck worker it cannot stop is replaced, and the port keeps answering", async () => {
  const server = await supervised(["--workers", "1", "--timeout", "300", "--handler", FAULTS]);
  const [old] = await serverPids(server.child.pid);
  assert.equal(await status(server.url, "/spin"), 504);
  await until(async () => {
    const pids = await serverPids(server.child.pid);
    return pids.length === 1 && pids[0] !== old;
  });
  assert.equal(await status(server.url, "/ok"), 200);
  assert.match(
    (await stopServer(server)).stderr,
    new RegExp(
      `^brigade: replacing server process ${old} in \\d+ ms: 1 stuck worker\\(s\\) were terminated`,
      "m",
    ),
  );
});

Deno.test("a server process above --max-rss is replaced, and the supervisor backs off", async () => {
  const server = await supervised(["--workers", "1", "--max-rss", "1"]);
  const [old] = await serverPids(server.child.pid);
  await replaced(server, old);
  assert.match(
    (await stopServer(server)).stderr,
    new RegExp(
      `^brigade: replacing server process ${old} in 100 ms: resident memory \\d+ MB is above --max-rss 0 MB$`,
      "m",
    ),
  );
});

Deno.test("without a supervisor, a process with a stuck worker drains and exits 1 for its platform to restart", async () => {
  const server = await startServerProcess(
    brigadeArgs(["--workers", "1", "--timeout", "300", "--handler", FAULTS]),
  );
  assert.equal(await status(server.url, "/spin"), 504);
  const { code } = await server.child.status;
  assert.equal(code, 1);
  assert.match(
    await server.stderr,
    /^brigade: 1 stuck worker\(s\) were terminated, and Deno cannot stop a spinning thread; draining so that a fresh process can take over$/m,
  );
  await server.stdout;
});

Deno.test("server processes run with the supervisor's exact flags, deny flags included, and never --allow-run", async () => {
  const dir = await Deno.makeTempDir({ prefix: "brigade-perms-" });
  await Deno.writeTextFile(`${dir}/secret.txt`, "TOPSECRET");
  await Deno.writeTextFile(
    `${dir}/app.ts`,
    "export default { fetch() {\n" +
      "  let secret = 'denied';\n" +
      `  try { secret = Deno.readTextFileSync(${
        JSON.stringify(`${dir}/secret.txt`)
      }); } catch {}\n` +
      "  const run = Deno.permissions.querySync({ name: 'run' }).state;\n" +
      "  return Response.json({ secret, run });\n" +
      "} };\n",
  );
  try {
    const server = await startServerProcess([
      "run",
      "--allow-net",
      "--allow-read",
      `--deny-read=${dir}/secret.txt`,
      "--allow-run",
      "main.ts",
      "--port",
      "0",
      "--quiet",
      "--workers",
      "1",
      "--handler",
      `${dir}/app.ts`,
    ]);
    const answer = await (await fetch(server.url)).json();
    assert.equal(answer.secret, "denied");
    assert.notEqual(answer.run, "granted");
    await stopServer(server);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a port in use makes the supervisor say so in one line, even when its holder shares ports", async () => {
  const first = await supervised(["--workers", "1"]);
  const port = new URL(first.url).port;
  const second = new Deno.Command(Deno.execPath(), {
    args: supervisedArgs(["--workers", "1"]).map((arg, i, all) =>
      all[i - 1] === "--port" ? port : arg
    ),
    cwd: new URL("..", import.meta.url).pathname,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  // Had it started, it would serve on; stop it so the test fails instead of hanging.
  const limit = setTimeout(() => second.kill("SIGKILL"), 10_000);
  const { code, stdout, stderr } = await second.output();
  clearTimeout(limit);
  const message = new TextDecoder().decode(stderr);
  assert.equal(code, 1, message);
  assert.equal(stdout.length, 0, "nothing claims to be listening");
  assert.equal(message.trimEnd().split("\n").length, 1, message);
  assert.match(message, /^brigade: cannot start: .*(AddrInUse|in use)/i);
  first.child.kill("SIGTERM");
  assert.equal((await first.child.status).code, 0);
  await Promise.all([first.stdout, first.stderr]);
});

Deno.test("the control port closes connections without the token, and serving goes on", async () => {
  const server = await supervised(["--workers", "1"]);
  const [pid] = await serverPids(server.child.pid);
  const { stdout } = await new Deno.Command("cat", { args: [`/proc/${pid}/cmdline`] }).output();
  const argv = new TextDecoder().decode(stdout).split("\0");
  const control = Number(argv[argv.indexOf("--control") + 1]);
  assert.ok(control > 0);
  const closedAfter = async (text: string) => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: control });
    if (text) await conn.write(new TextEncoder().encode(text));
    const n = await conn.read(new Uint8Array(16)).catch(() => null);
    conn.close();
    return n;
  };
  assert.equal(await closedAfter("not json\n"), null);
  assert.equal(
    await closedAfter(JSON.stringify({ type: "hello", token: "guess", pid }) + "\n"),
    null,
  );
  assert.equal(await closedAfter("x".repeat(8192)), null, "a long line before hello");
  assert.equal(await closedAfter(""), null, "silence: closed after the hello deadline");
  assert.equal(await status(server.url), 200);
  await stopServer(server);
});

Deno.test("a server process that goes silent (stopped) is killed and restarted", async () => {
  const server = await supervised(["--workers", "1"]);
  const [stopped] = await serverPids(server.child.pid);
  Deno.kill(stopped, "SIGSTOP");
  await replaced(server, stopped, 30_000);
  assert.match(
    (await stopServer(server)).stderr,
    new RegExp(`^brigade: server process ${stopped} sent nothing for 10000 ms; killing it$`, "m"),
  );
});

Deno.test("a control connection closes on a line longer than its limit, with or without its newline", async () => {
  // Half a line, and a whole line of valid JSON: neither is read as a message.
  for (
    const text of [
      "x".repeat(5000),
      JSON.stringify({ type: "hello", pad: "x".repeat(5000) }) + "\n",
    ]
  ) {
    using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const client = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
    const messages: unknown[] = [];
    const reading = new ControlConnection<unknown, never>(await listener.accept())
      .read((message) => messages.push(message), () => HELLO_LINE);
    await client.write(new TextEncoder().encode(text));
    // The reader closes its end: the client sees the end, not its own timer.
    let timer: ReturnType<typeof setTimeout> | undefined;
    const limit = new Promise<string>((resolve) => timer = setTimeout(resolve, 5000, "open"));
    const end = client.read(new Uint8Array(16)).then(
      (n) => n === null ? "closed" : "data",
      () => "closed",
    );
    assert.equal(await Promise.race([end, limit]), "closed", `${text.length} bytes`);
    clearTimeout(timer);
    await reading;
    client.close();
    assert.deepEqual(messages, []);
  }
});

Deno.test("with --processes 2, a process whose every worker is stuck stops listening before its successor is up, and the other takes the port", async () => {
  await using app = await holdableApp();
  const server = await supervised(["--processes", "2", ...STUCK_FOR_A_WHILE, app.path]);
  await using _stop = stopAtEnd(server);
  const port = Number(new URL(server.url).port);
  const pids = await serverPids(server.child.pid);
  const listening = async () => {
    const alive = await serverPids(server.child.pid);
    const listens = await Promise.all(pids.map((pid) => listensOn(pid, port)));
    return pids.filter((pid, i) => alive.includes(pid) && listens[i]);
  };
  await until(async () => (await listening()).length === 2);
  await app.hold();
  // One of the two takes the connection, and its only worker spins.
  const spin = exchange(port, "GET /spin HTTP/1.1\r\nHost: x\r\n\r\n");
  await until(async () => (await listening()).length === 1, 20_000).catch(async () => {
    throw new Error(
      `Cannot see one of processes ${pids} stop listening while its successor is held, received listeners ${await listening()}`,
    );
  });
  const [other] = await listening();
  const stuck = pids.find((pid) => pid !== other)!;
  assert.equal((await spin).responses[0].status, 504);
  // Every new connection is the other's now, and is served.
  assert.equal(await status(server.url, "/ok"), 200);
  await app.release();
  await until(async () => {
    const now = await serverPids(server.child.pid);
    return now.length === 2 && !now.includes(stuck) && await status(server.url, "/ok") === 200;
  }, 20_000);
  assert.match(
    (await stopServer(server)).stderr,
    new RegExp(
      `^brigade: replacing server process ${stuck} in \\d+ ms: every worker is stuck$`,
      "m",
    ),
  );
});

Deno.test("a process alone whose every worker is stuck keeps listening while its successor starts", async () => {
  await using app = await holdableApp();
  const server = await supervised(STUCK_FOR_A_WHILE.concat(app.path));
  await using _stop = stopAtEnd(server);
  const port = Number(new URL(server.url).port);
  const [old] = await serverPids(server.child.pid);
  await app.hold();
  const spin = exchange(port, "GET /spin HTTP/1.1\r\nHost: x\r\n\r\n");
  // The successor is started once the process has asked to be replaced (and,
  // with siblings, would have stopped listening first).
  await until(async () => (await serverPids(server.child.pid)).length === 2, 20_000);
  assert.ok(
    await listensOn(old, port),
    `Cannot see process ${old} still listen on port ${port}, received no listening socket`,
  );
  assert.equal((await spin).responses[0].status, 504);
  await app.release();
  await until(async () => {
    const now = await serverPids(server.child.pid);
    return now.length === 1 && now[0] !== old && await status(server.url, "/ok") === 200;
  }, 20_000);
  assert.match(
    (await stopServer(server)).stderr,
    new RegExp(`^brigade: replacing server process ${old} in \\d+ ms: every worker is stuck$`, "m"),
  );
});
