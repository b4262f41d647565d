/**
 * Table-driven raw-socket cases: each sends exact bytes and asserts the exact
 * statuses that come back, whether the server closed the connection, and
 * that the server still answers a normal request afterwards.
 */
import assert from "node:assert/strict";
import { serve } from "../main.ts";
import { readResponses } from "./_http_client.ts";

interface Case {
  name: string;
  send: string;
  /** Statuses of the final responses, in order (100 Continue included). */
  expect: number[];
  /** Whether the server must close the connection after them. */
  close: boolean;
  /** Which responses answer HEAD requests (no body). */
  head?: boolean[];
}

const H = "Host: x\r\n";
const get = (path = "/", extra = "") => `GET ${path} HTTP/1.1\r\n${H}${extra}\r\n`;
const post = (headers: string, body: string) => `POST / HTTP/1.1\r\n${H}${headers}\r\n${body}`;
const chunked = (body: string) => post("Transfer-Encoding: chunked\r\n", body);

const hidden = "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n";
const ok = (name: string, send: string, status = 200): Case => ({
  name,
  send,
  expect: [status],
  close: false,
});
const bad = (name: string, send: string, status = 400): Case => ({
  name,
  send,
  expect: [status],
  close: true,
});

const CASES: Case[] = [
  // Length headers (RFC 9112 §6).
  bad(
    "Content-Length and Transfer-Encoding together",
    post("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n"),
  ),
  bad(
    "Transfer-Encoding before Content-Length",
    post("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", "0\r\n\r\n"),
  ),
  bad(
    "duplicate identical Content-Length",
    post("Content-Length: 1\r\nContent-Length: 1\r\n", "x"),
  ),
  bad("differing Content-Length", post("Content-Length: 1\r\nContent-Length: 2\r\n", "xx")),
  bad("Content-Length list", post("Content-Length: 1, 1\r\n", "x")),
  bad("Content-Length +5", post("Content-Length: +5\r\n", "hello")),
  bad("Content-Length -1", post("Content-Length: -1\r\n", "")),
  bad("Content-Length 0x5", post("Content-Length: 0x5\r\n", "hello")),
  bad("Content-Length with inner space", post("Content-Length: 1 2\r\n", "x")),
  bad("empty Content-Length", post("Content-Length: \r\n", "")),
  bad("overflowing Content-Length", post("Content-Length: 99999999999999999999999\r\n", "")),
  bad("Content-Length 1e3", post("Content-Length: 1e3\r\n", "")),
  ok("Content-Length with surrounding whitespace", post("Content-Length:  1 \r\n", "x"), 405),
  ok("Content-Length: 0", post("Content-Length: 0\r\n", ""), 405),
  bad("Transfer-Encoding gzip alone", post("Transfer-Encoding: gzip\r\n", "")),
  bad("empty Transfer-Encoding", post("Transfer-Encoding: \r\n", "")),
  bad(
    "empty Transfer-Encoding beside Content-Length",
    post("Transfer-Encoding: \r\nContent-Length: 3\r\n", "abc"),
  ),
  bad("chunked not last", post("Transfer-Encoding: chunked, gzip\r\n", "")),
  bad("identity coding", post("Transfer-Encoding: identity\r\n", "")),
  bad("chunked twice", post("Transfer-Encoding: chunked, chunked\r\n", "0\r\n\r\n")),
  bad(
    "gzip, chunked is not implemented",
    post("Transfer-Encoding: gzip, chunked\r\n", "0\r\n\r\n"),
    501,
  ),
  bad(
    "unknown coding split over two fields",
    post("Transfer-Encoding: foo\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n"),
    501,
  ),
  bad(
    "Transfer-Encoding in HTTP/1.0",
    "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
  ),
  ok("chunked, any case", post("Transfer-Encoding: Chunked\r\n", "1\r\nx\r\n0\r\n\r\n"), 405),
  ok("chunked with extension", chunked("1;name=value\r\nx\r\n0\r\n\r\n"), 405),
  ok("chunked with trailer", chunked("1\r\nx\r\n0\r\nX-Trailer: yes\r\n\r\n"), 405),
  ok(
    "Transfer-Encoding with an empty list element",
    post("Transfer-Encoding: , chunked\r\n", "0\r\n\r\n"),
    405,
  ),
  ok("chunked, upper-case hex size", chunked("A\r\n0123456789\r\n0\r\n\r\n"), 405),
  bad("chunk size not hex", chunked("g\r\nx\r\n0\r\n\r\n")),
  bad("chunk size with sign", chunked("+1\r\nx\r\n0\r\n\r\n")),
  bad("negative chunk size", chunked("-1\r\nx\r\n0\r\n\r\n")),
  bad("chunk size with leading space", chunked(" 1\r\nx\r\n0\r\n\r\n")),
  bad("chunk size with trailing space", chunked("1 \r\nx\r\n0\r\n\r\n")),
  bad("chunk size 0x1", chunked("0x1\r\nx\r\n0\r\n\r\n")),
  bad("chunk size of 17 hex digits", chunked("00000000000000001\r\nx\r\n0\r\n\r\n")),
  bad("empty chunk size", chunked("\r\nx\r\n0\r\n\r\n")),
  bad("chunk data not followed by CRLF", chunked("1\r\nxy\r\n0\r\n\r\n")),
  bad("chunk size line with bare LF", chunked("1\nx\r\n0\r\n\r\n")),
  bad("oversized chunk extension", chunked(`1;${"e".repeat(5000)}\r\nx\r\n0\r\n\r\n`), 413),
  bad("chunked body over --max-body", chunked("100001\r\n"), 413),
  bad("trailer without colon", chunked("0\r\nnope\r\n\r\n")),

  // Field syntax (RFC 9110 §5, RFC 9112 §5).
  bad("whitespace between field name and colon", `GET / HTTP/1.1\r\nHost : x\r\n\r\n`),
  bad("tab between field name and colon", `GET / HTTP/1.1\r\n${H}X-A\t: b\r\n\r\n`),
  bad("obs-fold", get("/", "X-A: b\r\n c\r\n")),
  bad("obs-fold with tab", get("/", "X-A: b\r\n\tc\r\n")),
  bad("bare CR in a value", get("/", "X-A: a\rb\r\n")),
  // A CR inside a line must not end it: each of these smuggles a field past the parser.
  bad("bare CR smuggling a Content-Length", post("X: 1\rXContent-Length: 5\r\n", "hello")),
  bad(
    "bare CR smuggling a Transfer-Encoding",
    post("X-A: a\r Transfer-Encoding: chunked\r\n", "0\r\n\r\n"),
  ),
  bad("bare CR in the request line", "GET / HTTP/1.1\rXHost: x\r\n\r\n"),
  bad("bare CR in a trailer field", chunked("0\r\nX: a\rb\r\n\r\n")),
  bad("NUL in a value", get("/", "X-A: a\0b\r\n")),
  bad("DEL in a value", get("/", "X-A: a\x7fb\r\n")),
  bad("non-token character in a name", get("/", "X(A): b\r\n")),
  bad("space inside a name", get("/", "X A: b\r\n")),
  bad("line without a colon", get("/", "NoColonHere\r\n")),
  bad("empty field name", get("/", ": value\r\n")),
  bad("bare LF line endings", "GET / HTTP/1.1\nHost: x\n\n"),
  bad("bare LF after the request line", "GET / HTTP/1.1\nHost: x\r\n\r\n"),
  ok("obs-text in a value is allowed", get("/", "X-A: caf\xe9\r\n")),
  ok("empty value is allowed", get("/", "X-Empty:\r\n")),
  ok("many ordinary fields", get("/", "X-A: 1\r\n".repeat(50))),

  // Host (RFC 9112 §3.2).
  bad("missing Host on HTTP/1.1", "GET / HTTP/1.1\r\n\r\n"),
  bad("duplicate Host", `GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n`),
  bad("Host with a space", `GET / HTTP/1.1\r\nHost: a b\r\n\r\n`),
  bad("Host with a slash", `GET / HTTP/1.1\r\nHost: a/b\r\n\r\n`),
  bad("Host with userinfo", `GET / HTTP/1.1\r\nHost: user@a\r\n\r\n`),
  bad("Host with a bad port", `GET / HTTP/1.1\r\nHost: a:80x\r\n\r\n`),
  ok("Host with a port", `GET / HTTP/1.1\r\nHost: example.com:8080\r\n\r\n`),
  ok("IPv6 Host", `GET / HTTP/1.1\r\nHost: [::1]:7878\r\n\r\n`),
  // Hosts that URL parsing would refuse are refused here, not answered with a 500.
  bad("Host 1.2.3.4.5", `GET / HTTP/1.1\r\nHost: 1.2.3.4.5\r\n\r\n`),
  bad("Host 999999999999", `GET / HTTP/1.1\r\nHost: 999999999999\r\n\r\n`),
  bad("Host with a port over 65535", `GET / HTTP/1.1\r\nHost: a:99999\r\n\r\n`),
  bad("Host %", `GET / HTTP/1.1\r\nHost: %\r\n\r\n`),
  bad("Host with only a port", `GET / HTTP/1.1\r\nHost: :80\r\n\r\n`),
  bad("Host with an encoded NUL", `GET / HTTP/1.1\r\nHost: a%00b\r\n\r\n`),
  bad("absolute-form with a port over 65535", `GET http://a:99999/ HTTP/1.1\r\nHost: a\r\n\r\n`),
  bad(
    "an invalid head with a large body is refused at once, unread",
    `POST / HTTP/1.1\r\nHost: a b\r\nContent-Length: 1000000\r\n\r\n`,
  ),
  { name: "HTTP/1.0 without Host", send: "GET / HTTP/1.0\r\n\r\n", expect: [200], close: true },

  // Request line (RFC 9112 §3).
  ok("lower-case method is another method", "get / HTTP/1.1\r\nHost: x\r\n\r\n", 501),
  bad("method with a non-token character", "G(T / HTTP/1.1\r\nHost: x\r\n\r\n"),
  bad("HTTP/2.0 is not supported", "GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
  bad("HTTP/3.1 is not supported", "GET / HTTP/3.1\r\nHost: x\r\n\r\n", 505),
  ok("HTTP/1.2 is answered as 1.1", "GET / HTTP/1.2\r\nHost: x\r\n\r\n"),
  bad("version without minor", "GET / HTTP/1\r\nHost: x\r\n\r\n"),
  bad("version in lower case", "GET / http/1.1\r\nHost: x\r\n\r\n"),
  bad("version with two-digit major", "GET / HTTP/01.1\r\nHost: x\r\n\r\n"),
  bad("two spaces after the method", "GET  / HTTP/1.1\r\nHost: x\r\n\r\n"),
  bad("trailing space after the version", "GET / HTTP/1.1 \r\nHost: x\r\n\r\n"),
  bad("HTTP/0.9 request line", "GET /\r\n\r\n"),
  bad("method alone", "GET\r\n\r\n"),
  bad("target without a slash", "GET hello.html HTTP/1.1\r\nHost: x\r\n\r\n"),
  bad("target with a fragment", "GET /hello.html#top HTTP/1.1\r\nHost: x\r\n\r\n"),
  bad("authority-form for GET", "GET example.com:80 HTTP/1.1\r\nHost: x\r\n\r\n"),
  bad("asterisk-form for GET", "GET * HTTP/1.1\r\nHost: x\r\n\r\n"),
  ok("absolute-form target", "GET http://x/hello.html HTTP/1.1\r\nHost: x\r\n\r\n"),
  ok("absolute-form without a path", "GET http://x HTTP/1.1\r\nHost: x\r\n\r\n"),
  ok("absolute-form https", "GET https://x/ HTTP/1.1\r\nHost: x\r\n\r\n"),
  bad("absolute-form with an empty authority", "GET http:///x HTTP/1.1\r\nHost: x\r\n\r\n"),
  ok("OPTIONS *", "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", 204),
  ok("leading empty lines are ignored", `\r\n\r\n${get()}`),

  // Sizes.
  bad("request line over 8 KiB", `GET /${"a".repeat(9000)} HTTP/1.1\r\n${H}\r\n`, 414),
  bad("header section over 16 KiB", get("/", `X-Big: ${"a".repeat(17000)}\r\n`), 431),
  bad("many fields over 16 KiB", get("/", `X-A: ${"b".repeat(90)}\r\n`.repeat(200)), 431),
  bad("body over --max-body is refused unread", post("Content-Length: 2000000\r\n", ""), 413),

  // Methods.
  ok("DELETE gets 405", `DELETE / HTTP/1.1\r\n${H}\r\n`, 405),
  ok("PUT gets 405", `PUT / HTTP/1.1\r\n${H}Content-Length: 1\r\n\r\nx`, 405),
  ok("unknown method gets 501", `BREW / HTTP/1.1\r\n${H}\r\n`, 501),
  ok("TRACE gets 501", `TRACE / HTTP/1.1\r\n${H}\r\n`, 501),
  ok("CONNECT gets 501", `CONNECT / HTTP/1.1\r\n${H}\r\n`, 501),
  ok("TRACK gets 501", `TRACK / HTTP/1.1\r\n${H}\r\n`, 501),
  {
    name: "HEAD has no body",
    send: `HEAD / HTTP/1.1\r\n${H}\r\n`,
    expect: [200],
    close: false,
    head: [true],
  },

  // Expect: 100-continue.
  {
    name: "Expect: 100-continue with the body sent anyway",
    send: post("Content-Length: 1\r\nExpect: 100-continue\r\n", "x"),
    expect: [405],
    close: false,
  },
  {
    name: "Expect: 100-continue from HTTP/1.0 gets no 100",
    send: "POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx",
    expect: [405],
    close: true,
  },
  bad(
    "Expect: 100-continue on a body too large gets 413, no 100",
    post("Content-Length: 9000000\r\nExpect: 100-continue\r\n", ""),
    413,
  ),

  // Bodies are framed and consumed; desync attempts.
  {
    name: "GET with a body, then a pipelined GET",
    send: `GET / HTTP/1.1\r\n${H}Content-Length: 5\r\n\r\nhello${get("/nope")}`,
    expect: [200, 404],
    close: false,
  },
  {
    name: "request hidden in a Content-Length body is not answered",
    send: post("Content-Length: 30\r\n", "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n".slice(0, 30)) +
      get(),
    expect: [405, 200],
    close: false,
  },
  {
    name: "request hidden in a chunked body is not answered",
    send: chunked(`${hidden.length.toString(16)}\r\n${hidden}\r\n0\r\n\r\n`) + get(),
    expect: [405, 200],
    close: false,
  },
  {
    name: "CL.TE smuggling attempt gets one 400 and a close",
    send: post("Content-Length: 4\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n") + get("/nope"),
    expect: [400],
    close: true,
  },
  {
    name: "TE.CL smuggling attempt gets one 400 and a close",
    send: post("Transfer-Encoding: chunked\r\nContent-Length: 40\r\n", "0\r\n\r\n") + get("/nope"),
    expect: [400],
    close: true,
  },
  {
    name: "obfuscated Transfer-Encoding with a space is refused, not ignored",
    send: post("Transfer-Encoding : chunked\r\n", "0\r\n\r\n") + get("/nope"),
    expect: [400],
    close: true,
  },
  {
    name: "a good request then a malformed one",
    send: get() + "GET / HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n" + get("/nope"),
    expect: [200, 400],
    close: true,
  },
  {
    name: "pipelined requests after Connection: close are not answered",
    send: get("/", "Connection: close\r\n") + get("/nope"),
    expect: [200],
    close: true,
  },

  // Paths: decoding and traversal.
  // A bad path is the handler's 400, not a framing error: the connection stays.
  ok("malformed percent-encoding", get("/%zz"), 400),
  ok("truncated percent-encoding", get("/%"), 400),
  ok("encoded NUL", get("/hello.html%00"), 400),
  ok("encoded dot in a name is decoded once", get("/hello%2ehtml")),
  ok("..", get("/../main.ts"), 404),
  ok("%2e%2e", get("/%2e%2e/main.ts"), 404),
  ok(".%2e", get("/.%2e/main.ts"), 404),
  ok("%2e.", get("/%2e./main.ts"), 404),
  ok("..%2f climbing inside one segment", get("/sub/..%2f..%2fmain.ts"), 404),
  ok("..%5c with backslashes", get("/..%5c..%5cmain.ts"), 404),
  ok("backslash as separator", get("/sub\\..\\..\\main.ts"), 404),
  ok("double-encoded %252e stays literal", get("/%252e%252e/main.ts"), 404),
  ok("dotfile", get("/.secret"), 404),
  ok("dotfile in a subdirectory", get("/sub/.secret"), 404),
  ok("symlink inside the root is served", get("/inside-link.html")),
  ok("symlink escaping the root is not served", get("/escape-link"), 404),
  ok("directory symlink escaping the root is not served", get("/escape-dir/secret.txt"), 404),
  ok("directory without a slash redirects", get("/sub"), 301),
  ok("directory with a slash serves index.html", get("/sub/")),
  ok("query string is not part of the file name", get("/hello.html?x=1")),
  ok("a file path with a trailing slash names nothing", get("/hello.html/"), 404),
  ok("a file path with a trailing /. names nothing", get("/hello.html/."), 404),

  // Validators and ranges (RFC 9110 §13, §14).
  ok(
    "a suffix range of an empty file is unsatisfiable",
    get("/empty.txt", "Range: bytes=-5\r\n"),
    416,
  ),
  ok(
    "If-Modified-Since that is not an HTTP-date is ignored",
    get("/", "If-Modified-Since: 3000\r\n"),
  ),
  ok(
    "If-Modified-Since as an obsolete asctime date is honoured",
    get("/", "If-Modified-Since: Fri Jan  1 00:00:00 2100\r\n"),
    304,
  ),
  ok("If-Match that matches nothing gets 412", get("/", 'If-Match: "nope"\r\n'), 412),
  ok("If-Match: * passes", get("/", "If-Match: *\r\n")),
  ok(
    "If-Unmodified-Since before the file changed gets 412",
    get("/", "If-Unmodified-Since: Sat, 01 Jan 2000 00:00:00 GMT\r\n"),
    412,
  ),
  ok(
    "If-Unmodified-Since after the file changed passes",
    get("/", "If-Unmodified-Since: Fri, 01 Jan 2100 00:00:00 GMT\r\n"),
  ),
];

async function makeRoot(): Promise<{ root: string; cleanup(): Promise<void> }> {
  const root = await Deno.makeTempDir({ prefix: "brigade-root-" });
  const outside = await Deno.makeTempDir({ prefix: "brigade-outside-" });
  await Deno.writeTextFile(`${root}/hello.html`, "<h1>Hello!</h1>\n");
  await Deno.writeTextFile(`${root}/404.html`, "<h1>Oops!</h1>\n");
  await Deno.writeTextFile(`${root}/empty.txt`, "");
  await Deno.writeTextFile(`${root}/.secret`, "hidden\n");
  await Deno.mkdir(`${root}/sub`);
  await Deno.writeTextFile(`${root}/sub/index.html`, "<h1>sub</h1>\n");
  await Deno.writeTextFile(`${root}/sub/.secret`, "hidden\n");
  await Deno.writeTextFile(`${outside}/secret.txt`, "outside the root\n");
  await Deno.symlink(`${root}/hello.html`, `${root}/inside-link.html`);
  await Deno.symlink(`${outside}/secret.txt`, `${root}/escape-link`);
  await Deno.symlink(outside, `${root}/escape-dir`);
  return {
    root,
    async cleanup() {
      await Deno.remove(root, { recursive: true });
      await Deno.remove(outside, { recursive: true });
    },
  };
}

const encode = (text: string) => Uint8Array.from(text, (c) => c.charCodeAt(0));

Deno.test(`hostile and edge-case requests (${CASES.length} cases) get the exact status and close`, async (t) => {
  assert.ok(CASES.length >= 80);
  const { root, cleanup } = await makeRoot();
  await using server = await serve({ port: 0, workers: 2, root, logLevel: "warn" });
  const port = server.addr.port;
  try {
    for (const c of CASES) {
      await t.step(c.name, async () => {
        const conn = await Deno.connect({ hostname: "127.0.0.1", port });
        try {
          await conn.write(encode(c.send));
          const got = await readResponses(conn, {
            responses: c.expect.length,
            awaitClose: c.close,
            headRequests: c.head,
            limitMs: 5000,
          });
          assert.deepEqual(got.responses.map((r) => r.status), c.expect);
          assert.equal(got.closed, c.close, c.close ? "should close" : "should stay open");
          const last = got.responses.at(-1)!;
          assert.ok(last.headers.has("date"), "every response has Date");
          if (last.status !== 304 && last.status !== 204) {
            assert.ok(last.headers.has("content-length"), "every response has Content-Length");
          }
          if (c.close) {
            assert.equal(last.headers.get("connection"), "close");
          } else {
            // Still open and in sync: the next request gets its own answer.
            await conn.write(encode(get()));
            const next = await readResponses(conn, { limitMs: 5000 });
            assert.deepEqual(next.responses.map((r) => r.status), [200]);
          }
        } finally {
          conn.close();
        }
        // And the server still serves everyone else.
        const after = await fetch(new URL("/hello.html", server.url));
        assert.equal(after.status, 200);
        await after.body?.cancel();
      });
    }
  } finally {
    await cleanup();
  }
});
