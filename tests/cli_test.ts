import assert from "node:assert/strict";

const PROJECT = new URL("..", import.meta.url).pathname;

/** Starts `deno task start` with `args`, as a user would, and waits for its first line. */
async function startTask(args: string[]) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["task", "--quiet", "start", ...args],
    cwd: PROJECT,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await lines.read();
    if (done) break;
    text += value;
  }
  return { child, firstLine: text.split("\n")[0], lines };
}

Deno.test("deno task start listens with least privilege, serves /, and exits 0 on SIGTERM", async () => {
  const { child, firstLine, lines } = await startTask(["--port", "0", "--workers", "2", "--quiet"]);
  const match = /^Listening on (http:\/\/127\.0\.0\.1:(\d+)\/) with 2 workers$/.exec(firstLine);
  assert.ok(match, `unexpected first line: ${firstLine}`);
  const response = await fetch(match[1]);
  assert.equal(response.status, 200);
  assert.match(await response.text(), /Hello!/);
  child.kill("SIGTERM");
  let rest = "";
  for (let r = await lines.read(); !r.done; r = await lines.read()) rest += r.value;
  const status = await child.status;
  const stderr = await new Response(child.stderr).text();
  assert.equal(status.code, 0, stderr);
  assert.match(rest, /^Shutting down\.$/m);
  assert.match(rest, /^Shutting down worker \d+$/m);
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
