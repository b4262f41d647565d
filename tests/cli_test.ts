import assert from "node:assert/strict";
import {
  brigadeArgs,
  serverPids,
  type ServerProcess,
  START_ENV,
  startServerProcess,
  supervisedArgs,
} from "./_process.ts";
import { serve } from "../main.ts";
import { FLAGS } from "../_server/flags.ts";

const PROJECT = new URL("..", import.meta.url).pathname;

Deno.test("deno task start listens with least privilege, serves /, and exits 0 on SIGTERM", async () => {
  const { child, firstLine, stdout, stderr } = await startServerProcess([
    "task",
    "--quiet",
    "start",
    "--port",
    "0",
    "--workers",
    "2",
    "--quiet",
  ]);
  const match = /^Listening on (http:\/\/127\.0\.0\.1:(\d+)\/) with 2 workers$/.exec(firstLine);
  assert.ok(match, `unexpected first line: ${firstLine}`);
  const response = await fetch(match[1]);
  assert.equal(response.status, 200);
  assert.match(await response.text(), /Hello!/);
  child.kill("SIGTERM");
  const status = await child.status;
  const rest = await stdout;
  assert.equal(status.code, 0, await stderr);
  assert.match(rest, /^Shutting down\.$/m);
  assert.match(rest, /^Shutting down worker \d+$/m);
});

/**
 * The V8 flags process `pid` runs with: its `--v8-flags=` arguments and its
 * `DENO_V8_FLAGS` (through `cat`: Deno reads `/proc/<pid>` only with `--allow-all`).
 */
async function v8FlagsOf(pid: number): Promise<string[]> {
  const read = async (file: string) => {
    const { stdout } = await new Deno.Command("cat", { args: [`/proc/${pid}/${file}`] }).output();
    return new TextDecoder().decode(stdout).split("\0");
  };
  const given = [
    ...(await read("cmdline")).filter((arg) => arg.startsWith("--v8-flags=")),
    ...(await read("environ")).filter((entry) => entry.startsWith("DENO_V8_FLAGS=")),
  ].map((text) => text.slice(text.indexOf("=") + 1));
  return [...new Set(given.flatMap((flags) => flags.split(",")))].sort();
}

Deno.test("server processes started as the tests and benchmarks start them get the V8 flags deno task start gives its own", async () => {
  const started: ServerProcess[] = [];
  const same = async (pid: number | undefined, how: string, expected: string[]) => {
    assert.ok(pid, `Cannot find the server process started with ${how}, received none`);
    const flags = await v8FlagsOf(pid);
    assert.deepEqual(
      flags,
      expected,
      `Cannot give the server process started with ${how} the start task's V8 flags ${
        JSON.stringify(expected)
      }, received ${JSON.stringify(flags)}`,
    );
  };
  try {
    const task = await startServerProcess(["task", "--quiet", "start", "--port", "0", "--quiet"]);
    started.push(task);
    const [supervisor] = await serverPids(task.child.pid);
    const [fromTask] = await serverPids(supervisor);
    assert.ok(fromTask, "Cannot find deno task start's server process, received none");
    const expected = await v8FlagsOf(fromTask);
    const alone = await startServerProcess(brigadeArgs([]));
    started.push(alone);
    await same(alone.child.pid, "brigadeArgs()", expected);
    const supervised = await startServerProcess(supervisedArgs([]), { env: START_ENV });
    started.push(supervised);
    await same(
      (await serverPids(supervised.child.pid))[0],
      "supervisedArgs() and START_ENV",
      expected,
    );
  } finally {
    for (const { child, stdout, stderr } of started) {
      child.kill("SIGTERM");
      await Promise.all([child.status, stdout, stderr]);
    }
  }
});

Deno.test("a bad flag prints one line and exits 2", async () => {
  for (const args of [["--workers", "0"], ["--port", "abc"], ["--bogus"]]) {
    const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-net", "--allow-read", "main.ts", ...args],
      cwd: PROJECT,
    }).output();
    const message = new TextDecoder().decode(stderr);
    assert.equal(code, 2, message);
    assert.equal(stdout.length, 0);
    assert.equal(message.trimEnd().split("\n").length, 1, message);
    assert.match(message, /^brigade: /);
  }
});

Deno.test("--help prints the flags and exits 0", async () => {
  const { code, stdout } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "main.ts", "--help"],
    cwd: PROJECT,
  }).output();
  assert.equal(code, 0);
  const text = new TextDecoder().decode(stdout);
  for (const flag of ["--port", "--hostname", "--workers", "--root", "--sleep-ms", "--log-level"]) {
    assert.ok(text.includes(flag), flag);
  }
});

Deno.test("the README's flag table lists every flag, in order, with its default", async () => {
  const readme = await Deno.readTextFile(new URL("../README.md", import.meta.url));
  const flags = readme.split(/^## /m).find((section) => section.startsWith("Flags\n"));
  assert.ok(flags, "README has a Flags section");
  const rows = flags.split("\n").filter((line) => line.startsWith("| `--"))
    .map((line) => line.split("|").map((cell) => cell.trim().replaceAll("`", "")));
  assert.deepEqual(
    rows.map(([, flag, fallback]) => [flag.split(" ")[0], fallback]),
    FLAGS.map((flag) => [`--${flag.name}`, flag.default]),
  );
});

Deno.test("a start-up failure (missing root or permission, handler module missing, broken or without default fetch) prints one line and exits 1", async () => {
  const missing = await Deno.makeTempDir({ prefix: "brigade-missing-" });
  await Deno.remove(missing);
  const apps = await Deno.makeTempDir({ prefix: "brigade-bad-apps-" });
  await Deno.writeTextFile(`${apps}/syntax.ts`, "export default {\n");
  await Deno.writeTextFile(`${apps}/no_default.ts`, "export const fetch = () => new Response();\n");
  const allowRead = `--allow-read=${PROJECT},${apps}`;
  const cases = [
    { args: [allowRead, "main.ts", "--root", missing], cause: /Requires read access/ },
    { args: ["--allow-read", "main.ts", "--root", missing], cause: /No such file/ },
    {
      args: ["--allow-read", "main.ts", "--handler", `${missing}/app.ts`],
      cause: /Module not found/,
    },
    { args: ["--allow-read", "main.ts", "--handler", `${apps}/syntax.ts`], cause: /SyntaxError/ },
    {
      args: ["--allow-read", "main.ts", "--handler", `${apps}/no_default.ts`],
      cause: /must export default \{ fetch \}/,
    },
  ];
  // Alone, and as the supervisor's first server process: either way one line, exit 1.
  for (
    const { args, cause } of cases.flatMap((c) => [
      { ...c, args: [...c.args, "--no-supervisor"] },
      { ...c, args: ["--allow-run", ...c.args] },
    ])
  ) {
    const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-net", ...args, "--port", "0"],
      cwd: PROJECT,
    }).output();
    const message = new TextDecoder().decode(stderr);
    assert.equal(code, 1, message);
    assert.equal(new TextDecoder().decode(stdout), "", "nothing claims to be listening");
    assert.equal(message.trimEnd().split("\n").length, 1, message);
    assert.match(message, /^brigade: cannot start: Cannot start worker \d, received /);
    assert.match(message, cause);
  }
  await Deno.remove(apps, { recursive: true });
});

Deno.test("without --allow-run the supervisor says so in one line and exits 1", async () => {
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-net", "--allow-read", "main.ts", "--port", "0"],
    cwd: PROJECT,
  }).output();
  const message = new TextDecoder().decode(stderr);
  assert.equal(code, 1, message);
  assert.equal(stdout.length, 0);
  assert.equal(message.trimEnd().split("\n").length, 1, message);
  assert.match(
    message,
    /^brigade: cannot start: Cannot start server processes without --allow-run/,
  );
});

Deno.test("deno task start -- --port 0 passes the flags through the separator", async () => {
  const { child, firstLine } = await startServerProcess([
    "task",
    "--quiet",
    "start",
    "--",
    "--port",
    "0",
  ]);
  assert.match(firstLine, /^Listening on http:\/\/127\.0\.0\.1:\d+\/ with \d+ workers$/);
  child.kill("SIGTERM");
  assert.equal((await child.status).code, 0);
});

Deno.test("serve({ handler }) resolves a relative module path against the caller's working directory", async () => {
  // A folder name with URL syntax in it: it must stay part of the path.
  const dir = await Deno.makeTempDir({ prefix: "brigade-app-#%41-" });
  await Deno.writeTextFile(
    `${dir}/app.ts`,
    'export default { fetch: () => new Response("from the app folder") };\n',
  );
  const before = Deno.cwd();
  Deno.chdir(dir);
  try {
    await using server = await serve({
      port: 0,
      workers: 1,
      handler: "./app.ts",
      logLevel: "warn",
    });
    const response = await fetch(server.url);
    assert.equal(await response.text(), "from the app folder");
  } finally {
    Deno.chdir(before);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the README's app recipe serves an app from its own folder with its own import map and lock", async () => {
  const app = await Deno.makeTempDir({ prefix: "brigade-recipe-" });
  await Deno.writeTextFile(`${app}/deno.json`, JSON.stringify({ imports: { hono: "npm:hono@4" } }));
  await Deno.writeTextFile(
    `${app}/app.ts`,
    'import { Hono } from "hono";\n' +
      "const app = new Hono();\n" +
      'app.get("/", (c) => c.text("hello from my app"));\n' +
      "export default app;\n",
  );
  const ourLock = await Deno.readTextFile(`${PROJECT}/deno.lock`);
  try {
    // The recipe, run from the app's folder.
    const { child, url } = await startServerProcess([
      "run",
      "--config",
      "deno.json",
      "--allow-net",
      `--allow-read=.,${PROJECT}`,
      "--allow-run",
      `${PROJECT}/main.ts`,
      "--port",
      "0",
      "--quiet",
      "--handler",
      "app.ts",
    ], { cwd: app });
    const response = await fetch(url);
    assert.equal(await response.text(), "hello from my app");
    child.kill("SIGTERM");
    assert.equal((await child.status).code, 0);
    assert.equal(
      await Deno.readTextFile(`${PROJECT}/deno.lock`),
      ourLock,
      "brigade's lock untouched",
    );
    assert.match(await Deno.readTextFile(`${app}/deno.lock`), /npm:hono@4/, "the app's own lock");
  } finally {
    await Deno.remove(app, { recursive: true });
  }
});
