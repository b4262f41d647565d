/** The live pool page's server side, over raw sockets: the page, its events, its access rules. */
import assert from "node:assert/strict";
import { serve, type ServeOptions } from "../main.ts";
import { exchange } from "./_http_client.ts";
import { captureStdout, until } from "./_process.ts";
import { Dashboard } from "../_server/dashboard.ts";
import type { Exchange } from "../_server/exchange.ts";

function start(options: ServeOptions = {}) {
  return serve({ port: 0, workers: 2, logLevel: "warn", dashboard: true, ...options });
}

async function ask(port: number, path: string, headers = "") {
  const request = `GET ${path} HTTP/1.1\r\nHost: x\r\n${headers}\r\n`;
  return (await exchange(port, request)).responses[0];
}

/** Opens the event stream and returns its first `stats` event, with the connection still open. */
async function firstStats(port: number) {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await conn.write(new TextEncoder().encode("GET /_brigade/events HTTP/1.1\r\nHost: x\r\n\r\n"));
  const decoder = new TextDecoder();
  const buffer = new Uint8Array(65536);
  let text = "";
  while (true) {
    const n = await conn.read(buffer);
    assert.ok(n !== null, `the stream ended early: ${text}`);
    text += decoder.decode(buffer.subarray(0, n));
    const match = /event: stats\ndata: (.*)\n\n/.exec(text);
    if (match) {
      return { conn, head: text.slice(0, text.indexOf("\r\n\r\n")), stats: JSON.parse(match[1]) };
    }
  }
}

Deno.test("--dashboard serves its page and an event stream of the pool to loopback clients; without it, 404", async () => {
  {
    await using server = await start();
    const page = await ask(server.addr.port, "/_brigade/");
    assert.equal(page.status, 200);
    assert.match(page.headers.get("content-type")!, /^text\/html/);
    assert.match(page.body, /^<!doctype html>/i);
    const bare = await ask(server.addr.port, "/_brigade");
    assert.deepEqual([bare.status, bare.headers.get("location")], [301, "/_brigade/"]);
    const { conn, head, stats } = await firstStats(server.addr.port);
    assert.match(head, /^HTTP\/1\.1 200 OK\r\n/);
    assert.match(head, /\r\ncontent-type: text\/event-stream\r\n/);
    assert.match(head, /\r\ntransfer-encoding: chunked\r\n/);
    assert.deepEqual(stats.workers.map((w: { id: number; state: string }) => [w.id, w.state]), [
      [0, "idle"],
      [1, "idle"],
    ]);
    assert.equal(stats.queued, 0);
    assert.equal(typeof stats.requestsPerSecond, "number");
    conn.close();
    // The watcher left: its connection goes, and nothing keeps the server busy.
    await until(() => server.connections === 0);
  }
  {
    await using server = await start({ dashboard: false });
    assert.equal((await ask(server.addr.port, "/_brigade/")).status, 404);
    assert.equal((await ask(server.addr.port, "/_brigade/events")).status, 404);
  }
});

Deno.test("the dashboard shows a running request by method and path only, and never its query", async () => {
  await using server = await start({ sleepMs: 1000 });
  const sleeping = fetch(new URL("/sleep?secret=1", server.url));
  await until(() => server.stats().running === 1);
  const { conn, stats } = await firstStats(server.addr.port);
  const busy = stats.workers.find((w: { state: string }) => w.state === "busy");
  assert.equal(busy.oldest.label, "GET /sleep");
  assert.equal(typeof busy.oldest.ageMs, "number");
  conn.close();
  await (await sleeping).body?.cancel();
});

Deno.test("with --dashboard-token the dashboard needs the token (bearer, ?token= then cookie); without one, a proxied client is refused", async () => {
  {
    await using server = await start({ dashboardToken: "s3cret" });
    const port = server.addr.port;
    assert.equal((await ask(port, "/_brigade/")).status, 401);
    assert.equal((await ask(port, "/_brigade/", "Authorization: Bearer nope\r\n")).status, 401);
    assert.equal((await ask(port, "/_brigade/", "Authorization: Bearer s3cret\r\n")).status, 200);
    const viaQuery = await ask(port, "/_brigade/?token=s3cret");
    assert.equal(viaQuery.status, 200);
    const cookie = viaQuery.headers.get("set-cookie")!;
    assert.match(
      cookie,
      /^brigade_dashboard=s3cret; Path=\/_brigade\/; HttpOnly; SameSite=Strict$/,
    );
    const withCookie = await ask(port, "/_brigade/", `Cookie: ${cookie.split(";")[0]}\r\n`);
    assert.equal(withCookie.status, 200);
  }
  {
    await using server = await start();
    const proxied = await ask(server.addr.port, "/_brigade/", "X-Forwarded-For: 203.0.113.7\r\n");
    assert.equal(proxied.status, 403);
  }
  {
    await using server = await start({ trustProxy: true });
    assert.equal((await ask(server.addr.port, "/_brigade/")).status, 403);
  }
  {
    // Over https through the trusted proxy, the cookie is Secure.
    await using server = await start({ trustProxy: true, dashboardToken: "s3cret" });
    const https = "X-Forwarded-For: 203.0.113.7\r\nX-Forwarded-Proto: https\r\n";
    const viaQuery = await ask(server.addr.port, "/_brigade/?token=s3cret", https);
    assert.match(viaQuery.headers.get("set-cookie")!, /; Secure$/);
  }
});

Deno.test("shutting down ends the event streams at once instead of waiting for them", async () => {
  const server = await start({ shutdownTimeout: 5000 });
  const { conn } = await firstStats(server.addr.port);
  // A stream left open would be cut when the drain timed out.
  const report = await server.close();
  assert.equal(report.cut, 0);
  conn.close();
});

Deno.test("HEAD on the dashboard's paths gets heads only, so a request pipelined behind it is read right", async () => {
  await using server = await start({ dashboardToken: "s3cret" });
  const next = "GET /_brigade/health HTTP/1.1\r\nHost: x\r\n\r\n";
  for (
    const [request, status] of [
      ["HEAD /_brigade HTTP/1.1\r\nHost: x\r\n\r\n", 301],
      ["HEAD /_brigade/ HTTP/1.1\r\nHost: x\r\n\r\n", 401],
      ["HEAD /_brigade/ HTTP/1.1\r\nHost: x\r\nAuthorization: bearer s3cret\r\n\r\n", 200],
      ["HEAD /_brigade/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret\r\n\r\n", 405],
    ] as const
  ) {
    const { responses } = await exchange(server.addr.port, request + next, {
      responses: 2,
      headRequests: [true, false],
    });
    assert.deepEqual(
      responses.map((r) => [r.status, r.body]),
      [[status, ""], [200, "serving\n"]],
      request,
    );
  }
});

Deno.test("the dashboard's token never reaches the access log, and X-Real-IP counts as a proxy", async () => {
  const lines: string[] = [];
  const restore = captureStdout(lines);
  try {
    await using server = await start({ dashboardToken: "s3cret", accessLog: true });
    await ask(server.addr.port, "/_brigade/?token=s3cret&x=1");
  } finally {
    restore();
  }
  assert.equal(lines.length, 1, lines.join("\n"));
  assert.match(lines[0], /"GET \/_brigade\/\?token=\[redacted\]&x=1 HTTP\/1\.1" 200 \d+/);
  assert.doesNotMatch(lines[0], /s3cret/);
  await using open = await start();
  assert.equal((await ask(open.addr.port, "/_brigade/", "X-Real-IP: 203.0.113.7\r\n")).status, 403);
});

Deno.test("an event stream's chunk sizes count bytes, so a non-ASCII log line keeps the stream framed", () => {
  const pushed: Uint8Array[] = [];
  const watcher = {
    finished: false,
    buffered: 0,
    open(head: Uint8Array) {
      pushed.push(head);
    },
    push(bytes: Uint8Array) {
      pushed.push(bytes);
      return true;
    },
    end() {},
  };
  const dashboard = new Dashboard({
    trustProxy: false,
    stats: () => ({
      workers: [],
      queued: 0,
      connections: 0,
      responsesTotal: 0,
      wait: { p50: 0, p90: 0, p99: 0, max: 0 },
      run: { p50: 0, p90: 0, p99: 0, max: 0 },
      responses: {},
      replaced: 0,
    }),
  });
  dashboard.watch(watcher as unknown as Exchange, 1, false);
  dashboard.log("Worker 0 crashed: échec — 💥; replaced by worker 2");
  dashboard.close();
  for (const chunk of pushed.slice(1)) {
    const text = new TextDecoder().decode(chunk);
    const sizeLine = text.slice(0, text.indexOf("\r\n"));
    const dataBytes = chunk.length - sizeLine.length - 4;
    assert.equal(parseInt(sizeLine, 16), dataBytes, text);
  }
  assert.ok(pushed.some((c) => new TextDecoder().decode(c).includes("💥")));
});

Deno.test("shutdown does not start a request pipelined behind an event stream", async () => {
  const server = await start();
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
  await conn.write(new TextEncoder().encode(
    "GET /_brigade/events HTTP/1.1\r\nHost: x\r\n\r\nGET /_brigade/health HTTP/1.1\r\nHost: x\r\n\r\n",
  ));
  let text = "";
  const buffer = new Uint8Array(65536);
  const read = async () => {
    const n = await conn.read(buffer);
    if (n !== null) text += new TextDecoder().decode(buffer.subarray(0, n));
    return n;
  };
  while (!text.includes("event: stats") && await read() !== null);
  await server.close();
  while (await read() !== null);
  conn.close();
  assert.match(text, /event: stats/);
  assert.match(text, /\r\n0\r\n\r\n$/, "the stream ended");
  assert.doesNotMatch(text, /serving/, "the pipelined request did not run");
});
