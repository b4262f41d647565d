/** Static serving: validators, ranges, content types, directories, large files, access log. */
import assert from "node:assert/strict";
import { serve } from "../main.ts";
import { exchange } from "./_http_client.ts";
import { captureStdout, until } from "./_process.ts";

async function withRoot(files: Record<string, string | Uint8Array>) {
  const root = await Deno.makeTempDir({ prefix: "brigade-static-" });
  for (const [name, content] of Object.entries(files)) {
    const path = `${root}/${name}`;
    await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
    if (typeof content === "string") await Deno.writeTextFile(path, content);
    else await Deno.writeFile(path, content);
  }
  const server = await serve({ port: 0, workers: 2, root, logLevel: "warn" });
  return {
    server,
    root,
    async [Symbol.asyncDispose]() {
      await server.close();
      await Deno.remove(root, { recursive: true });
    },
  };
}

/** The default static root, one worker, the access log on in `logFormat`. */
function loggingServer(logFormat: "common" | "combined" | "json") {
  const root = new URL("../static/", import.meta.url).pathname;
  return serve({ port: 0, workers: 1, root, logLevel: "warn", accessLog: true, logFormat });
}

async function get(url: string | URL, headers: Record<string, string> = {}, method = "GET") {
  const response = await fetch(url, { headers, method });
  const body = new Uint8Array(await response.arrayBuffer());
  return { status: response.status, headers: response.headers, body };
}

Deno.test("ETag and Last-Modified are sent, stable, and answer If-None-Match and If-Modified-Since with 304", async () => {
  await using site = await withRoot({ "a.txt": "hello\n" });
  const url = new URL("/a.txt", site.server.url);
  const first = await get(url);
  const etag = first.headers.get("etag")!;
  const lastModified = first.headers.get("last-modified")!;
  assert.match(etag, /^W\/"[0-9a-f]+-[0-9a-f]+"$/);
  assert.equal((await get(url)).headers.get("etag"), etag, "the same file keeps its ETag");
  assert.equal((await get(url, { "if-none-match": etag })).status, 304);
  assert.equal((await get(url, { "if-none-match": `"other", ${etag}` })).status, 304);
  assert.equal((await get(url, { "if-none-match": "*" })).status, 304);
  assert.equal((await get(url, { "if-none-match": etag }, "HEAD")).status, 304);
  assert.equal((await get(url, { "if-none-match": '"other"' })).status, 200);
  assert.equal((await get(url, { "if-modified-since": lastModified })).status, 304);
  assert.equal(
    (await get(url, { "if-modified-since": "Thu, 01 Jan 1970 00:00:00 GMT" })).status,
    200,
  );
  // If-None-Match wins over If-Modified-Since.
  assert.equal(
    (await get(url, { "if-none-match": '"other"', "if-modified-since": lastModified })).status,
    200,
  );
});

Deno.test("ETag is stable across a restart of the server", async () => {
  await using site = await withRoot({ "a.txt": "same bytes\n" });
  const before = (await get(new URL("/a.txt", site.server.url))).headers.get("etag");
  assert.ok(before, "Cannot compare ETags across a restart, received no ETag");
  await using again = await serve({ port: 0, workers: 1, root: site.root, logLevel: "warn" });
  const after = (await get(new URL("/a.txt", again.url))).headers.get("etag");
  assert.equal(after, before);
});

Deno.test("Range requests get 206, suffix ranges work, unsatisfiable gets 416, malformed gets 200", async () => {
  await using site = await withRoot({ "d.txt": "0123456789" });
  const url = new URL("/d.txt", site.server.url);
  const text = (r: { body: Uint8Array }) => new TextDecoder().decode(r.body);
  const part = await get(url, { range: "bytes=2-5" });
  assert.equal(part.status, 206);
  assert.equal(part.headers.get("content-range"), "bytes 2-5/10");
  assert.equal(text(part), "2345");
  const open = await get(url, { range: "bytes=7-" });
  assert.deepEqual([open.status, text(open)], [206, "789"]);
  const suffix = await get(url, { range: "bytes=-3" });
  assert.deepEqual([suffix.status, text(suffix)], [206, "789"]);
  const past = await get(url, { range: "bytes=5-100" });
  assert.deepEqual([past.status, text(past)], [206, "56789"]);
  const unsatisfiable = await get(url, { range: "bytes=10-20" });
  assert.equal(unsatisfiable.status, 416);
  assert.equal(unsatisfiable.headers.get("content-range"), "bytes */10");
  for (const malformed of ["bytes=a-b", "bytes=5-2", "items=0-1", "bytes=0-1,3-4", "bytes=-"]) {
    const whole = await get(url, { range: malformed });
    assert.deepEqual([whole.status, text(whole)], [200, "0123456789"], malformed);
  }
  const stale = await get(url, { range: "bytes=0-1", "if-range": '"not-it"' });
  assert.equal(stale.status, 200, "a non-matching If-Range sends the whole file");
});

Deno.test("content types come from the media-type table, with charset for text", async () => {
  const files: Record<string, string> = {};
  const expected: Record<string, string> = {
    "a.html": "text/html; charset=utf-8",
    "a.css": "text/css; charset=utf-8",
    "a.js": "text/javascript; charset=utf-8",
    "a.mjs": "text/javascript; charset=utf-8",
    "a.json": "application/json; charset=utf-8",
    "a.svg": "image/svg+xml",
    "a.png": "image/png",
    "a.jpg": "image/jpeg",
    "a.gif": "image/gif",
    "a.webp": "image/webp",
    "a.ico": "image/vnd.microsoft.icon",
    "a.wasm": "application/wasm",
    "a.txt": "text/plain; charset=utf-8",
    "a.woff2": "font/woff2",
    "a.vcf": "text/x-vcard; charset=utf-8",
    "a.xslt": "application/xslt+xml",
    "a.geojson": "application/geo+json",
    "A.MP4": "video/mp4",
    "a.unknownext": "application/octet-stream",
  };
  for (const name of Object.keys(expected)) files[name] = "x";
  await using site = await withRoot(files);
  for (const [name, type] of Object.entries(expected)) {
    const response = await get(new URL(`/${name}`, site.server.url));
    assert.equal(response.headers.get("content-type"), type, name);
  }
});

Deno.test("a directory serves its index.html, and redirects to add the slash", async () => {
  await using site = await withRoot({ "docs/index.html": "<p>docs</p>" });
  const { responses } = await exchange(
    site.server.addr.port,
    "GET /docs?x=1 HTTP/1.1\r\nHost: x\r\n\r\n",
  );
  assert.equal(responses[0].status, 301);
  assert.equal(responses[0].headers.get("location"), "/docs/?x=1");
  const index = await get(new URL("/docs/", site.server.url));
  assert.deepEqual([index.status, new TextDecoder().decode(index.body)], [200, "<p>docs</p>"]);
  const bare = await get(new URL("/empty-dir/", site.server.url));
  assert.equal(bare.status, 404);
  // Extra leading slashes never make a protocol-relative redirect to another host.
  const doubled = await exchange(site.server.addr.port, "GET //docs HTTP/1.1\r\nHost: x\r\n\r\n");
  assert.equal(doubled.responses[0].status, 301);
  assert.equal(doubled.responses[0].headers.get("location"), "/docs/");
});

Deno.test("a file larger than the in-memory limit is streamed whole and by range", async () => {
  const big = new Uint8Array(3 * 1024 * 1024 + 17);
  for (let i = 0; i < big.length; i++) big[i] = (i * 31) & 0xff;
  await using site = await withRoot({ "big.bin": big });
  const url = new URL("/big.bin", site.server.url);
  const whole = await get(url);
  assert.equal(whole.status, 200);
  assert.equal(whole.headers.get("content-length"), String(big.length));
  assert.deepEqual(whole.body, big);
  const part = await get(url, { range: "bytes=2000000-2000009" });
  assert.equal(part.status, 206);
  assert.deepEqual(part.body, big.subarray(2000000, 2000010));
  const head = await fetch(url, { method: "HEAD" });
  assert.equal(head.headers.get("content-length"), String(big.length));
  await head.body?.cancel();
});

Deno.test("a changed file is served fresh once the cache revalidates", async () => {
  await using site = await withRoot({ "c.txt": "one" });
  const url = new URL("/c.txt", site.server.url);
  assert.equal(new TextDecoder().decode((await get(url)).body), "one");
  await Deno.writeTextFile(`${site.root}/c.txt`, "two!");
  // Within a second the cached copy may still be served; after it, never.
  let body = "";
  await until(
    async () => (body = new TextDecoder().decode((await get(url)).body)) === "two!",
    5000,
  );
  assert.equal(body, "two!");
});

Deno.test("the access log has one Common Log Format line per request with status, bytes and worker", async () => {
  const lines: string[] = [];
  const restore = captureStdout(lines);
  try {
    await using server = await loggingServer("common");
    await exchange(server.addr.port, "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n");
    // Refused on the main thread: logged with its line, escaped, and its own duration.
    await exchange(server.addr.port, 'GET /\x1b[31m"x HTTP/1.1\r\nHost: x\r\n\r\n', {
      awaitClose: true,
    });
  } finally {
    restore();
  }
  assert.equal(lines.length, 2, lines.join("\n"));
  assert.match(
    lines[0],
    /^127\.0\.0\.1 - - \[\d{2}\/\w{3}\/\d{4}:\d{2}:\d{2}:\d{2} \+0000\] "GET \/nope HTTP\/1\.1" 404 \d+ [\d.]+ms w0$/,
  );
  assert.match(lines[1], / "GET \/\\x1B\[31m\\x22x HTTP\/1\.1" 400 0 (\d+\.\d+)ms main$/);
  const ms = Number(/ ([\d.]+)ms main$/.exec(lines[1])![1]);
  assert.ok(ms < 60_000, `a duration, not the server's uptime: ${ms}`);
});

Deno.test("--log-format combined adds Referer and User-Agent, json writes one escaped object per line", async () => {
  const lines: string[] = [];
  const restore = captureStdout(lines);
  const request =
    'GET /nope HTTP/1.1\r\nHost: x\r\nReferer: http://a/"q"\r\nUser-Agent: t\\x\r\n\r\n';
  try {
    for (const logFormat of ["combined", "json"] as const) {
      await using server = await loggingServer(logFormat);
      await exchange(server.addr.port, request);
    }
  } finally {
    restore();
  }
  assert.equal(lines.length, 2, lines.join("\n"));
  assert.match(lines[0], /" 404 \d+ "http:\/\/a\/\\x22q\\x22" "t\\x5Cx" [\d.]+ms w0$/);
  const entry = JSON.parse(lines[1]);
  assert.deepEqual(
    [entry.remote, entry.request, entry.status, entry.referer, entry.userAgent, entry.worker],
    ["127.0.0.1", "GET /nope HTTP/1.1", 404, 'http://a/"q"', "t\\x", "w0"],
  );
  assert.equal(typeof entry.ms, "number");
  assert.ok(!Number.isNaN(Date.parse(entry.time)));
});
