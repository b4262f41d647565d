import assert from "node:assert/strict";
import { parseFlags, serve } from "../main.ts";
import { exchange, readResponses } from "./_http_client.ts";
import { until } from "./_process.ts";

const ROOT = new URL("../static/", import.meta.url).pathname;
const HELLO = await Deno.readTextFile(`${ROOT}hello.html`);
const NOT_FOUND = await Deno.readTextFile(`${ROOT}404.html`);

function start(options: Parameters<typeof serve>[0] = {}) {
  return serve({ port: 0, workers: 2, root: ROOT, logLevel: "warn", ...options });
}

Deno.test("GET / serves static/hello.html with Date and Content-Length", async () => {
  await using server = await start();
  const response = await fetch(server.url);
  assert.equal(response.status, 200);
  assert.equal(response.headers.get("content-type"), "text/html; charset=utf-8");
  assert.ok(response.headers.get("date"));
  assert.equal(
    response.headers.get("content-length"),
    String(new TextEncoder().encode(HELLO).length),
  );
  assert.equal(await response.text(), HELLO);
});

Deno.test("GET of an unknown path gets 404 with static/404.html", async () => {
  await using server = await start();
  const response = await fetch(new URL("/no/such/page", server.url));
  assert.equal(response.status, 404);
  assert.equal(await response.text(), NOT_FOUND);
});

Deno.test("HEAD / has GET's headers and no body", async () => {
  await using server = await start();
  const { responses } = await exchange(
    server.addr.port,
    "HEAD / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
    { responses: 2, headRequests: [true, false] },
  );
  assert.equal(responses[0].status, 200);
  assert.equal(responses[0].body, "");
  assert.equal(
    responses[0].headers.get("content-length"),
    responses[1].headers.get("content-length"),
  );
  assert.equal(responses[1].body, HELLO);
});

Deno.test("a keep-alive connection answers several requests in turn", async () => {
  await using server = await start();
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
  try {
    for (const path of ["/", "/missing", "/hello.html"]) {
      await conn.write(new TextEncoder().encode(`GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`));
      const { responses, closed } = await readResponses(conn);
      assert.equal(closed, false);
      assert.equal(responses[0].status, path === "/missing" ? 404 : 200);
    }
  } finally {
    conn.close();
  }
});

Deno.test("pipelined requests are answered in request order", async () => {
  await using server = await start();
  const paths = ["/sleep", "/", "/nope", "/hello.html", "/"];
  const request = paths.map((p) => `GET ${p} HTTP/1.1\r\nHost: x\r\n\r\n`).join("");
  const { responses } = await exchange(server.addr.port, request, { responses: paths.length });
  // /sleep comes first and is slowest, yet every response keeps its place.
  assert.deepEqual(responses.map((r) => r.status), [200, 200, 404, 200, 200]);
  assert.deepEqual(responses.map((r) => r.body === HELLO), [true, true, false, true, true]);
});

Deno.test("GET / completes while /sleep is still running", async () => {
  await using server = await start({ sleepMs: 3000 });
  let sleepDone = false;
  const sleeping = fetch(new URL("/sleep", server.url)).then(async (response) => {
    await response.text();
    sleepDone = true;
    return response.status;
  });
  // Ask for / only once /sleep is on a worker, so it cannot ride along.
  await until(() => server.stats().busy > 0);
  const response = await fetch(server.url);
  assert.equal(await response.text(), HELLO);
  assert.equal(sleepDone, false, "GET / had to wait for /sleep");
  assert.equal(await sleeping, 200);
});

Deno.test("HTTP/1.0 and Connection: close end the connection after the response", async () => {
  await using server = await start();
  for (
    const request of [
      "GET / HTTP/1.0\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    ]
  ) {
    const { responses, closed } = await exchange(server.addr.port, request, { awaitClose: true });
    assert.equal(responses.length, 1);
    assert.equal(responses[0].status, 200);
    assert.equal(responses[0].headers.get("connection"), "close");
    assert.equal(closed, true);
  }
});

Deno.test("HTTP/1.0 with Connection: keep-alive stays open", async () => {
  await using server = await start();
  const { responses, closed } = await exchange(
    server.addr.port,
    "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /nope HTTP/1.0\r\n\r\n",
    { responses: 2, awaitClose: true },
  );
  assert.equal(responses[0].headers.get("connection"), "keep-alive");
  assert.deepEqual(responses.map((r) => r.status), [200, 404]);
  assert.equal(closed, true);
});

Deno.test("a malformed request gets 400 and the connection closes", async () => {
  await using server = await start();
  const { responses, closed } = await exchange(server.addr.port, "NONSENSE\r\n\r\n", {
    awaitClose: true,
  });
  assert.equal(responses[0].status, 400);
  assert.equal(closed, true);
});

Deno.test("POST to a static path gets 405 with Allow", async () => {
  await using server = await start();
  const response = await fetch(server.url, { method: "POST", body: "x" });
  assert.equal(response.status, 405);
  assert.equal(response.headers.get("allow"), "GET, HEAD, OPTIONS");
  await response.body?.cancel();
});

Deno.test("paths are percent-decoded once and never leave the root", async () => {
  await using server = await start();
  const port = server.addr.port;
  const get = async (path: string) =>
    (await exchange(port, `GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`)).responses[0].status;
  assert.equal(await get("/hello%2Ehtml"), 200);
  assert.equal(await get("/../main.ts"), 404);
  assert.equal(await get("/%2e%2e/main.ts"), 404);
  assert.equal(await get("/%252e%252e/main.ts"), 404);
});

Deno.test("serve() rejects a worker count of 0", async () => {
  await assert.rejects(() => serve({ port: 0, workers: 0 }), RangeError);
});

Deno.test("parseFlags() reads every flag and rejects bad values in one line", () => {
  assert.deepEqual(
    Object.fromEntries(
      Object.entries(
        parseFlags(["--port", "0", "--workers", "3", "--sleep-ms", "10", "--log-level", "debug"]),
      ).filter(([, v]) => v !== undefined),
    ),
    {
      port: 0,
      workers: 3,
      sleepMs: 10,
      logLevel: "debug",
      accessLog: true,
      processes: 1,
      supervisor: true,
      maxRss: 1 << 30,
      drainDelay: 0,
    },
  );
  assert.equal(parseFlags(["--help"]), "help");
  const alone = parseFlags(["--no-supervisor", "--max-rss", "0"]);
  assert.ok(alone !== "help");
  assert.deepEqual([alone.supervisor, alone.maxRss, alone.processes], [false, 0, 1]);
  for (
    const bad of [
      ["--workers", "0"],
      ["--port", "x"],
      ["--port", "70000"],
      ["--nope"],
      ["--processes", "0"],
      ["--processes", "2", "--no-supervisor"],
      ["--control", "70000"],
    ]
  ) {
    assert.throws(() => parseFlags(bad), (error: Error) => !error.message.includes("\n"));
  }
});
