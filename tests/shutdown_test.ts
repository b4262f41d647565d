/** Graceful shutdown of the real server process on SIGTERM/SIGINT. */
import assert from "node:assert/strict";

import { STOP_WINDOW_MS } from "../main.ts";
import { brigadeArgs, START_ENV, startServerProcess, until } from "./_process.ts";

function startProcess(args: string[]) {
  return startServerProcess(brigadeArgs(["--stats", ...args]), { env: START_ENV });
}

async function inFlight(url: string, wanted: number): Promise<void> {
  await until(async () => {
    const stats = await (await fetch(new URL("/_brigade/stats", url))).json();
    return stats.requests >= wanted;
  });
}

for (const signal of ["SIGTERM", "SIGINT"] as const) {
  Deno.test(`${signal} lets every accepted request finish, then exits 0`, async () => {
    const server = await startProcess(["--workers", "2", "--sleep-ms", "1000"]);
    // All slow, so that all six are accepted and in flight at the signal.
    const paths = ["/sleep", "/sleep", "/sleep?a", "/sleep?b", "/sleep?c", "/sleep?d"];
    const requests = paths.map(async (path) => {
      const response = await fetch(new URL(path, server.url));
      return { status: response.status, body: await response.text() };
    });
    await inFlight(server.url, paths.length);
    server.child.kill(signal);
    const answers = await Promise.all(requests);
    assert.deepEqual(answers.map((a) => a.status), [200, 200, 200, 200, 200, 200]);
    assert.ok(answers.every((a) => a.body.includes("</html>")), "every body is complete");
    const status = await server.child.status;
    const stdout = await server.stdout;
    assert.equal(status.code, 0, await server.stderr);
    assert.match(stdout, /^Shutting down\.$/m);
    assert.equal(stdout.match(/^Shutting down worker \d+$/gm)?.length, 2);
    await assert.rejects(fetch(server.url), "no longer accepting");
  });
}

Deno.test("a drain past --shutdown-timeout cuts what is left and exits non-zero with a count", async () => {
  const server = await startProcess([
    "--workers",
    "1",
    "--sleep-ms",
    "30000",
    "--shutdown-timeout",
    "200",
  ]);
  const sleeping = fetch(new URL("/sleep", server.url)).then((r) => r.status, () => "reset");
  await inFlight(server.url, 1);
  server.child.kill("SIGTERM");
  const status = await server.child.status;
  assert.equal(status.code, 1);
  assert.match(await server.stderr, /cut 1 connections/);
  await server.stdout;
  assert.notEqual(await sleeping, 200);
});

Deno.test("a second signal after the stop window exits at once with a count", async () => {
  const server = await startProcess(["--workers", "1", "--sleep-ms", "30000"]);
  const sleeping = fetch(new URL("/sleep", server.url)).then((r) => r.status, () => "reset");
  await inFlight(server.url, 1);
  server.child.kill("SIGTERM");
  await server.printed("Shutting down.");
  // The behaviour under test is about time: copies within the window count once.
  await new Promise((resolve) => setTimeout(resolve, STOP_WINDOW_MS + 100));
  server.child.kill("SIGTERM");
  const status = await server.child.status;
  assert.equal(status.code, 130);
  assert.match(await server.stderr, /Second signal: exiting now; cut 1 requests in flight/);
  await server.stdout;
  assert.notEqual(await sleeping, 200);
});

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  Deno.test(`${signal} to the process group of deno task start (as Ctrl-C does) drains and exits 0`, async () => {
    const server = await startServerProcess([
      "task",
      "--quiet",
      "start",
      "--port",
      "0",
      "--workers",
      "1",
      "--sleep-ms",
      "1500",
      "--quiet",
      "--stats",
    ], { ownGroup: true });
    const sleeping = fetch(new URL("/sleep", server.url)).then(async (r) => ({
      status: r.status,
      body: await r.text(),
    }));
    await inFlight(server.url, 1);
    // Both `deno task` and the server get this; `deno task` forwards a copy.
    Deno.kill(-server.child.pid, signal);
    const answer = await sleeping;
    assert.equal(answer.status, 200);
    assert.match(answer.body, /<\/html>/);
    const status = await server.child.status;
    const stderr = await server.stderr;
    assert.equal(status.code, 0, stderr);
    assert.doesNotMatch(stderr, /Second signal/);
    assert.match(await server.stdout, /^Shutting down\.$/m);
  });
}

Deno.test("with --drain-delay, a stopping server keeps serving but health answers 503, then drains", async () => {
  const server = await startProcess(["--workers", "1", "--drain-delay", "1500"]);
  const health = async () => {
    const response = await fetch(new URL("/_brigade/health", server.url));
    return [response.status, await response.text()];
  };
  assert.deepEqual(await health(), [200, "serving\n"]);
  server.child.kill("SIGTERM");
  await server.printed("Draining in 1500 ms");
  assert.deepEqual(await health(), [503, "draining\n"]);
  const page = await fetch(server.url);
  assert.equal(page.status, 200, "still serving the app");
  await page.body?.cancel();
  assert.equal((await server.child.status).code, 0);
  assert.match(await server.stdout, /^Shutting down\.$/m);
  await server.stderr;
});
