/** The `deno serve` contract for handler modules: fetch(request, info), onListen, onError, and a Hono app. */
import assert from "node:assert/strict";
import { serve } from "../main.ts";
import { readResponses } from "./_http_client.ts";

const CONTRACT = "tests/fixtures/contract_handler.ts";

/** GETs `path` on its own connection; returns the response and the client's own port. */
async function get(port: number, path: string, headers = "") {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(new TextEncoder().encode(`GET ${path} HTTP/1.1\r\nHost: x\r\n${headers}\r\n`));
    const { responses } = await readResponses(conn);
    return { response: responses[0], clientPort: (conn.localAddr as Deno.NetAddr).port };
  } finally {
    conn.close();
  }
}

Deno.test("a deno serve handler gets info.remoteAddr of its client and an info.completed promise", async () => {
  await using server = await serve({ port: 0, workers: 1, handler: CONTRACT, logLevel: "warn" });
  const { response, clientPort } = await get(server.addr.port, "/");
  assert.equal(response.status, 200);
  assert.deepEqual(JSON.parse(response.body), {
    remoteAddr: { transport: "tcp", hostname: "127.0.0.1", port: clientPort },
    completed: true,
    url: "http://x/",
  });
});

Deno.test("onListen is called once per server, by worker 0, with the listening address", async () => {
  await using server = await serve({ port: 0, workers: 2, handler: CONTRACT, logLevel: "warn" });
  const seen = new Set<string>();
  // Requests spread over both workers: one says where it listens, the other never heard.
  for (let i = 0; i < 8; i++) seen.add((await get(server.addr.port, "/listened")).response.body);
  assert.deepEqual(
    seen,
    new Set([
      JSON.stringify({ transport: "tcp", hostname: "127.0.0.1", port: server.addr.port }),
      "null",
    ]),
  );
});

Deno.test("onError answers for a handler that threw", async () => {
  await using server = await serve({ port: 0, workers: 1, handler: CONTRACT, logLevel: "warn" });
  const { response } = await get(server.addr.port, "/throw");
  assert.deepEqual([response.status, response.body], [500, "onError: the handler threw"]);
});

Deno.test("a Hono app runs unchanged: its routes, its own error handler, and getConnInfo with the client's address", async () => {
  await using server = await serve({
    port: 0,
    workers: 1,
    handler: "tests/fixtures/hono_app.ts",
    logLevel: "warn",
  });
  const { response, clientPort } = await get(server.addr.port, "/ip");
  assert.equal(response.status, 200);
  assert.deepEqual(JSON.parse(response.body), {
    address: "127.0.0.1",
    port: clientPort,
    transport: "tcp",
  });
  assert.equal((await get(server.addr.port, "/hello/brigade")).response.body, "hello brigade");
  const failed = (await get(server.addr.port, "/throw")).response;
  assert.deepEqual([failed.status, failed.body], [500, "hono caught: route failed"]);
});

Deno.test("--trust-proxy takes the client and scheme from the last X-Forwarded-* element only, and never from Forwarded", async () => {
  const seen = async (server: { addr: Deno.NetAddr }, headers: string) => {
    const body = JSON.parse((await get(server.addr.port, "/", headers)).response.body);
    return [body.remoteAddr.hostname, new URL(body.url).protocol];
  };
  const xff = "X-Forwarded-For: 10.9.9.9, 203.0.113.7\r\nX-Forwarded-Proto: https\r\n";
  {
    await using server = await serve({
      port: 0,
      workers: 1,
      handler: CONTRACT,
      logLevel: "warn",
      trustProxy: true,
    });
    assert.deepEqual(await seen(server, xff), ["203.0.113.7", "https:"]);
    assert.deepEqual(await seen(server, "X-Forwarded-For: 2001:db8::1\r\n"), [
      "2001:db8::1",
      "http:",
    ]);
    // A client's own Forwarded, which proxies pass through, changes nothing.
    const forged = `Forwarded: for=127.0.0.1;proto=https\r\n${xff.replace("https", "http")}`;
    assert.deepEqual(await seen(server, forged), ["203.0.113.7", "http:"]);
    // Not an address: ignored, so the connection's own peer stays.
    for (const value of ["evil", ":::::", "1.2.3.4.5"]) {
      assert.deepEqual(await seen(server, `X-Forwarded-For: ${value}\r\n`), ["127.0.0.1", "http:"]);
    }
  }
  {
    await using server = await serve({ port: 0, workers: 1, handler: CONTRACT, logLevel: "warn" });
    assert.deepEqual(await seen(server, xff), ["127.0.0.1", "http:"]);
  }
});

Deno.test("a handler's request has every field as sent, on its copies too, and its form body parses", async () => {
  await using server = await serve({ port: 0, workers: 1, handler: CONTRACT, logLevel: "warn" });
  const body = '--XB\r\nContent-Disposition: form-data; name="name"\r\n\r\nbrigade\r\n--XB--\r\n';
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
  try {
    await conn.write(
      new TextEncoder().encode(
        "POST /headers HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=XB\r\n" +
          `Cookie: a=1; b=2\r\nX-Dup: 1\r\nX-Dup: 2\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
      ),
    );
    const { responses } = await readResponses(conn);
    const seen = JSON.parse(responses[0].body);
    const fields = [
      ["content-length", String(body.length)],
      ["content-type", "multipart/form-data; boundary=XB"],
      ["cookie", "a=1; b=2"],
      ["host", "x"],
      ["x-dup", "1, 2"],
    ];
    assert.deepEqual(seen, { fields, clone: fields, copy: fields, form: { name: "brigade" } });
  } finally {
    conn.close();
  }
});
