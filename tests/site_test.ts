/**
 * Static sites as people serve them: the root's index.html, and the
 * --cache-control, --cors, --spa and --dir-listing flags, over raw sockets.
 */
import assert from "node:assert/strict";
import { serve, type ServeOptions } from "../main.ts";
import { exchange, type RawResponse } from "./_http_client.ts";
import { createStaticApp } from "../_app/static.ts";

async function site(files: Record<string, string>, options: ServeOptions = {}) {
  const root = await Deno.makeTempDir({ prefix: "brigade-site-" });
  for (const [name, content] of Object.entries(files)) {
    const path = `${root}/${name}`;
    await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
    if (name.endsWith("/")) continue;
    await Deno.writeTextFile(path, content);
  }
  const server = await serve({ port: 0, workers: 1, root, logLevel: "warn", ...options });
  return {
    /** The site's folder. */
    root,
    /** An absolute URL on this server. */
    url: (path: string) => new URL(path, server.url),
    /** Sends one request (method, path, extra header lines) and returns its response. */
    async ask(method: string, path: string, headers = ""): Promise<RawResponse> {
      const request = `${method} ${path} HTTP/1.1\r\nHost: x\r\n${headers}\r\n`;
      const { responses } = await exchange(server.addr.port, request, {
        headRequests: [method === "HEAD"],
      });
      return responses[0];
    },
    async [Symbol.asyncDispose]() {
      await server.close();
      await Deno.remove(root, { recursive: true });
    },
  };
}

Deno.test("GET / serves the root's index.html when there is one, and the book's hello.html otherwise", async () => {
  {
    await using s = await site({ "index.html": "<p>site</p>", "hello.html": "<p>hello</p>" });
    const first = await s.ask("GET", "/");
    assert.deepEqual([first.status, first.body], [200, "<p>site</p>"]);
    // Again, from the worker's memory cache.
    assert.equal((await s.ask("GET", "/?again")).body, "<p>site</p>");
  }
  {
    await using s = await site({ "hello.html": "<p>hello</p>" });
    assert.deepEqual(
      [(await s.ask("GET", "/")).status, (await s.ask("GET", "/")).body],
      [200, "<p>hello</p>"],
    );
  }
});

Deno.test("--cache-control is sent with 200, 206 and 304 file responses, and nothing by default", async () => {
  const files = { "a.css": "body { color: red }\n" };
  {
    await using s = await site(files, { cacheControl: "public, max-age=60" });
    const full = await s.ask("GET", "/a.css");
    const cached = await s.ask("GET", "/a.css");
    const range = await s.ask("GET", "/a.css", "Range: bytes=0-3\r\n");
    const etag = full.headers.get("etag")!;
    const revalidated = await s.ask("GET", "/a.css", `If-None-Match: ${etag}\r\n`);
    assert.deepEqual(
      [full, cached, range, revalidated].map((r) => [r.status, r.headers.get("cache-control")]),
      [
        [200, "public, max-age=60"],
        [200, "public, max-age=60"],
        [206, "public, max-age=60"],
        [304, "public, max-age=60"],
      ],
    );
  }
  {
    await using s = await site(files);
    assert.equal((await s.ask("GET", "/a.css")).headers.get("cache-control"), undefined);
  }
});

Deno.test("--cors allows any origin on static responses and answers preflights; without it, neither", async () => {
  const files = { "font.woff2": "font" };
  {
    await using s = await site(files, { cors: true });
    const origin = "Origin: https://other.example\r\n";
    for (
      const response of [
        await s.ask("GET", "/font.woff2", origin),
        await s.ask("GET", "/font.woff2", origin),
      ]
    ) {
      assert.equal(response.status, 200);
      assert.equal(response.headers.get("access-control-allow-origin"), "*");
    }
    const missing = await s.ask("GET", "/nope.woff2", origin);
    assert.deepEqual([missing.status, missing.headers.get("access-control-allow-origin")], [
      404,
      "*",
    ]);
    const preflight = await s.ask(
      "OPTIONS",
      "/font.woff2",
      `${origin}Access-Control-Request-Method: GET\r\nAccess-Control-Request-Headers: x-trace\r\n`,
    );
    assert.equal(preflight.status, 204);
    assert.equal(preflight.headers.get("access-control-allow-origin"), "*");
    assert.equal(preflight.headers.get("access-control-allow-methods"), "GET, HEAD, OPTIONS");
    assert.equal(preflight.headers.get("access-control-allow-headers"), "x-trace");
  }
  {
    await using s = await site(files);
    const response = await s.ask("GET", "/font.woff2", "Origin: https://other.example\r\n");
    assert.equal(response.headers.get("access-control-allow-origin"), undefined);
    const preflight = await s.ask(
      "OPTIONS",
      "/font.woff2",
      "Origin: https://other.example\r\nAccess-Control-Request-Method: GET\r\n",
    );
    assert.deepEqual(
      [preflight.status, preflight.headers.get("access-control-allow-origin")],
      [204, undefined],
    );
  }
});

Deno.test("--spa serves index.html for a missing path without an extension, and 404 for a missing file with one", async () => {
  const files = { "index.html": "<div id=app></div>", "app.js": "start()" };
  {
    await using s = await site(files, { spa: true });
    const route = await s.ask("GET", "/users/42");
    assert.deepEqual([route.status, route.body], [200, "<div id=app></div>"]);
    assert.equal((await s.ask("GET", "/app.js")).body, "start()");
    assert.equal((await s.ask("GET", "/missing.js")).status, 404);
  }
  {
    await using s = await site(files);
    assert.equal((await s.ask("GET", "/users/42")).status, 404);
  }
});

Deno.test("--dir-listing streams a sorted, escaped listing without dotfiles; without it a bare directory is 404", async () => {
  const files = {
    "files/b.txt": "12345",
    "files/a&<x>.txt": "1",
    "files/.secret": "hidden",
    "files/sub/": "",
    "files/sub/c.txt": "c",
  };
  {
    await using s = await site(files, { dirListing: true });
    const listing = await s.ask("GET", "/files/");
    assert.equal(listing.status, 200);
    assert.equal(listing.headers.get("transfer-encoding"), "chunked");
    assert.match(listing.headers.get("content-type")!, /^text\/html/);
    const links = [...listing.body.matchAll(/<a href="([^"]*)">([^<]*)<\/a>/g)]
      .map(([, href, text]) => `${href} ${text}`);
    assert.deepEqual(links, [
      "../ ../",
      "a%26%3Cx%3E.txt a&#38;&#60;x&#62;.txt",
      "b.txt b.txt",
      "sub/ sub/",
    ]);
    assert.match(listing.body, /b\.txt<\/a><\/td><td>5<\/td>/);
    assert.doesNotMatch(listing.body, /secret/);
  }
  {
    await using s = await site(files);
    assert.equal((await s.ask("GET", "/files/")).status, 404);
  }
});

Deno.test("a compressible file over 1 KiB is gzipped for a client that takes gzip, with Vary, its own ETag, and 304s", async () => {
  const js = "export const greet = (name) => `hello ${name}`;\n".repeat(100);
  const feed = `<?xml version="1.0"?><feed>${"<entry>x</entry>".repeat(100)}</feed>`;
  await using s = await site({
    "app.js": js,
    "tiny.js": "x();\n",
    "pic.png": "x".repeat(4096),
    "feed.atom": feed,
  });
  const gzip = "Accept-Encoding: gzip, deflate\r\n";
  // Any +xml or +json type is text too.
  assert.equal((await s.ask("GET", "/feed.atom", gzip)).headers.get("content-encoding"), "gzip");
  // The identity answer cached first must not be given to a client that takes gzip.
  assert.equal((await s.ask("GET", "/app.js")).headers.get("content-encoding"), undefined);
  const first = await s.ask("GET", "/app.js", gzip);
  const again = await s.ask("GET", "/app.js", gzip); // from the worker's cache
  for (const response of [first, again]) {
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("content-encoding"), "gzip");
    assert.equal(response.headers.get("vary"), "accept-encoding");
    assert.match(response.headers.get("etag")!, /-gzip"$/);
    assert.ok(Number(response.headers.get("content-length")) < js.length / 4);
  }
  const gzipped = await fetch(s.url("/app.js"), { headers: { "accept-encoding": "gzip" } });
  assert.equal(await gzipped.text(), js, "it decompresses to the file");
  const etag = first.headers.get("etag")!;
  assert.equal((await s.ask("GET", "/app.js", `${gzip}If-None-Match: ${etag}\r\n`)).status, 304);
  // Identity: without Accept-Encoding, with gzip refused, for a range, for small or binary files.
  for (
    const [path, headers] of [
      ["/app.js", ""],
      ["/app.js", "Accept-Encoding: gzip;q=0, br;q=0\r\n"],
      ["/app.js", `${gzip}Range: bytes=0-9\r\n`],
      ["/tiny.js", gzip],
      ["/pic.png", gzip],
    ]
  ) {
    const response = await s.ask("GET", path, headers);
    assert.equal(response.headers.get("content-encoding"), undefined, `${path} ${headers}`);
  }
  assert.equal((await s.ask("GET", "/app.js")).headers.get("vary"), "accept-encoding");
});

Deno.test("a precompressed .br or .gz sibling is served to a client that takes that coding", async () => {
  const css = "body { color: red }\n".repeat(100);
  await using s = await site({ "site.css": css, "site.css.br": "BROTLI", "site.css.gz": "GZIP" });
  const br = await s.ask("GET", "/site.css", "Accept-Encoding: gzip, br\r\n");
  assert.deepEqual([br.headers.get("content-encoding"), br.body], ["br", "BROTLI"]);
  assert.match(br.headers.get("content-type")!, /^text\/css/);
  const gz = await s.ask("GET", "/site.css", "Accept-Encoding: gzip\r\n");
  assert.deepEqual([gz.headers.get("content-encoding"), gz.body], ["gzip", "GZIP"]);
  const plain = await s.ask("GET", "/site.css");
  assert.deepEqual([plain.headers.get("content-encoding"), plain.body], [undefined, css]);
});

Deno.test("a file dated in the future is sent with a Last-Modified of now, never later than Date", async () => {
  await using s = await site({ "future.txt": "from tomorrow\n" });
  const tomorrow = new Date(Date.now() + 86_400_000);
  await Deno.utime(`${s.root}/future.txt`, tomorrow, tomorrow);
  const response = await s.ask("GET", "/future.txt");
  assert.equal(response.status, 200);
  const lastModified = Date.parse(response.headers.get("last-modified")!);
  assert.ok(lastModified <= Date.parse(response.headers.get("date")!), "not after Date");
});

Deno.test("negotiation reads every Accept-Encoding line, and an identity 304 says Vary too", async () => {
  const js = "export const greet = (name) => `hello ${name}`;\n".repeat(100);
  await using s = await site({ "app.js": js });
  // Warm the gzip answer into the worker's cache.
  for (let i = 0; i < 2; i++) await s.ask("GET", "/app.js", "Accept-Encoding: gzip\r\n");
  const refused = await s.ask(
    "GET",
    "/app.js",
    "Accept-Encoding: *\r\nAccept-Encoding: gzip;q=0, br;q=0\r\n",
  );
  assert.equal(refused.headers.get("content-encoding"), undefined);
  const etag = (await s.ask("GET", "/app.js")).headers.get("etag")!;
  const notModified = await s.ask("GET", "/app.js", `If-None-Match: ${etag}\r\n`);
  assert.deepEqual([notModified.status, notModified.headers.get("vary")], [304, "accept-encoding"]);
});

Deno.test("--dir-listing leaves out a symlink that leads outside the root", async () => {
  await using s = await site({ "files/kept.txt": "k" }, { dirListing: true });
  const outside = await Deno.makeTempFile({ prefix: "brigade-outside-" });
  try {
    await Deno.writeTextFile(outside, "secret");
    await Deno.symlink(outside, `${s.root}/files/escape.txt`);
    await Deno.symlink(`${s.root}/files/kept.txt`, `${s.root}/files/inside.txt`);
    const listing = await s.ask("GET", "/files/");
    assert.match(listing.body, /kept\.txt/);
    assert.match(listing.body, /inside\.txt/);
    assert.doesNotMatch(listing.body, /escape/);
  } finally {
    await Deno.remove(outside);
  }
});

Deno.test("--spa gzips index.html once for all client-side routes, not once per request", async () => {
  const root = await Deno.makeTempDir({ prefix: "brigade-spa-" });
  await Deno.writeTextFile(`${root}/index.html`, "<div id=app></div>\n".repeat(200));
  const Original = globalThis.CompressionStream;
  let made = 0;
  globalThis.CompressionStream = class extends Original {
    constructor(format: CompressionFormat) {
      super(format);
      made++;
    }
  };
  try {
    const app = await createStaticApp({
      root,
      sleepMs: 0,
      block: () => Promise.resolve(),
      spa: true,
    });
    for (const route of ["/users/1", "/users/2", "/settings"]) {
      const response = await app.fetch(
        new Request(`http://x${route}`, { headers: { "accept-encoding": "gzip" } }),
      );
      assert.equal(response.headers.get("content-encoding"), "gzip", route);
      await response.body?.cancel();
    }
    assert.equal(made, 1);
  } finally {
    globalThis.CompressionStream = Original;
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("behind --trust-proxy an https request gets the right file from the worker's cache", async () => {
  await using s = await site(
    // Host is "x": the https URL is https://x/hello.html.
    { "hello.html": "root hello", "x/hello.html": "OTHER" },
    { trustProxy: true },
  );
  // Warm the cache with the file whose path looks like a host.
  assert.equal((await s.ask("GET", "/x/hello.html")).body, "OTHER");
  for (let i = 0; i < 2; i++) {
    const response = await s.ask("GET", "/hello.html", "X-Forwarded-Proto: https\r\n");
    assert.equal(response.body, "root hello");
  }
});
