/**
 * WebSocket: `Deno.upgradeWebSocket` in a handler module, RFC 6455 on the
 * main thread (handshake, framing, masking, fragments, ping/pong, closing,
 * limits), sockets that live on one worker and hold no request slot, and
 * their ends when the worker dies or the server shuts down.
 */
import assert from "node:assert/strict";
import { serve, type ServeOptions } from "../main.ts";
import { captureStdout, until, within } from "./_process.ts";
import { exchange } from "./_http_client.ts";
import {
  Client,
  CLOSED_WITHIN_MS,
  closeOf,
  closePayload,
  frame,
  HANDSHAKE,
  RawSocket,
  wsUrl,
} from "./_websocket_client.ts";

const HANDLER = new URL("./fixtures/websocket_handler.ts", import.meta.url);
const CHAT = new URL("./fixtures/chat.ts", import.meta.url);
const TEXT = 0x1;
const BINARY = 0x2;
const CONTINUATION = 0x0;
const CLOSE = 0x8;
const PING = 0x9;
const PONG = 0xa;

/** Why `closedByServer()` was false. */
const NOT_CLOSED =
  `Cannot see the server end the connection after its close frame, received no end within ${CLOSED_WITHIN_MS} ms`;

function start(options: ServeOptions = {}) {
  return serve({ port: 0, workers: 1, handler: HANDLER, logLevel: "error", ...options });
}

/** Listens on a BroadcastChannel for the /report socket's events (how it closed). */
function report(): { name: string; events: Promise<string[]> } {
  const name = `report-${crypto.randomUUID()}`;
  const channel = new BroadcastChannel(name);
  const events = new Promise<string[]>((resolve) => {
    channel.onmessage = (event) => {
      channel.close();
      resolve(event.data);
    };
  });
  return { name, events };
}

Deno.test("Deno.upgradeWebSocket in a handler module echoes text and binary to Deno's WebSocket client", async () => {
  await using server = await start();
  const client = await Client.open(wsUrl(server, "/echo"));
  assert.equal(await client.echo("hello, brigade"), "hello, brigade");
  assert.equal(await client.echo("é ☃ 𝄞"), "é ☃ 𝄞");
  const bytes = new Uint8Array(100_000).map((_, i) => i % 251);
  assert.deepEqual(new Uint8Array(await client.echo(bytes) as ArrayBuffer), bytes);
  assert.equal(await client.echo(""), "");
  const closed = await client.close(1000);
  assert.deepEqual([closed.code, closed.wasClean], [1000, true]);
});

Deno.test("binaryType blob gives the app Blobs, and a Blob it sends goes out before what it sends next", async () => {
  await using server = await start();
  const client = await Client.open(wsUrl(server, "/blob"));
  const bytes = new Uint8Array([1, 2, 3, 250]);
  assert.deepEqual(new Uint8Array(await client.echo(bytes) as ArrayBuffer), bytes);
  assert.equal(await client.next(), "that was a Blob");
  assert.equal(await client.echo("text"), "text");
  assert.equal(await client.next(), "that was text");
  await client.close();
});

Deno.test("upgradeWebSocket imported from worker.ts works as Deno.upgradeWebSocket does", async () => {
  await using server = await start();
  const client = await Client.open(wsUrl(server, "/imported"));
  assert.equal(await client.echo("imported"), "imported");
  await client.close();
});

Deno.test("the 101 says upgrade: websocket, connection: upgrade and the RFC 6455 accept key", async () => {
  await using server = await start();
  using raw = await RawSocket.connect(server.addr.port);
  assert.match(raw.head, /^HTTP\/1\.1 101 Switching Protocols\r\n/);
  assert.match(raw.head, /\r\nupgrade: websocket\r\n/);
  assert.match(raw.head, /\r\nconnection: upgrade\r\n/);
  // RFC 6455 §1.3's own example key and answer.
  assert.match(raw.head, /\r\nsec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK\+xOo=\r\n/);
  assert.doesNotMatch(raw.head, /content-length|transfer-encoding/);
});

Deno.test("the access log has the 101, with the worker that holds the socket", async () => {
  const lines: string[] = [];
  const restore = captureStdout(lines);
  try {
    await using server = await start({ accessLog: true });
    const client = await Client.open(wsUrl(server, "/echo"));
    await client.close();
  } finally {
    restore();
  }
  const logged = lines.filter((line) => line.includes("GET /echo"));
  assert.equal(logged.length, 1, lines.join("\n"));
  assert.match(logged[0], / "GET \/echo HTTP\/1\.1" 101 0 [\d.]+ms w0$/);
});

Deno.test("the socket has binaryType arraybuffer, a ws: url, and the protocol the handler agreed to", async () => {
  await using server = await start();
  const client = await Client.open(wsUrl(server, "/info?protocol=chat"), ["other", "chat"]);
  assert.equal(client.socket.protocol, "chat");
  assert.deepEqual(JSON.parse(await client.next() as string), {
    binaryType: "arraybuffer",
    protocol: "chat",
    url: `ws://127.0.0.1:${server.addr.port}/info?protocol=chat`,
    readyState: 1,
  });
  await client.close();
});

Deno.test("a protocol the client did not offer makes upgradeWebSocket throw: 500, no upgrade", async () => {
  await using server = await start();
  const { responses } = await exchange(
    server.addr.port,
    `GET /echo?protocol=chat HTTP/1.1\r\n${HANDSHAKE}Sec-WebSocket-Protocol: other\r\n\r\n`,
  );
  assert.equal(responses[0].status, 500);
});

Deno.test("a bad handshake gets 400 from the main thread; a wrong version says sec-websocket-version: 13", async () => {
  await using server = await start();
  const port = server.addr.port;
  const without = (name: string) =>
    HANDSHAKE.split("\r\n").filter((line) => !line.startsWith(name)).join("\r\n");
  const cases: [string, string][] = [
    ["no key", `GET /echo HTTP/1.1\r\n${without("Sec-WebSocket-Key")}\r\n`],
    [
      "a key of 15 bytes",
      `GET /echo HTTP/1.1\r\n${
        without("Sec-WebSocket-Key")
      }Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAA\r\n\r\n`,
    ],
    ["no Connection: upgrade", `GET /echo HTTP/1.1\r\n${without("Connection")}\r\n`],
    ["a POST", `POST /echo HTTP/1.1\r\n${HANDSHAKE}Content-Length: 0\r\n\r\n`],
    ["HTTP/1.0", `GET /echo HTTP/1.0\r\n${HANDSHAKE}\r\n`],
  ];
  for (const [what, request] of cases) {
    const { responses, closed } = await exchange(port, request, { awaitClose: true });
    assert.equal(responses[0].status, 400, what);
    assert.ok(closed, what);
  }
  const { responses } = await exchange(
    port,
    `GET /echo HTTP/1.1\r\n${without("Sec-WebSocket-Version")}Sec-WebSocket-Version: 8\r\n\r\n`,
  );
  assert.equal(responses[0].status, 400);
  assert.equal(responses[0].headers.get("sec-websocket-version"), "13");
});

Deno.test("a handler may refuse a handshake with any response, and the connection goes on as HTTP", async () => {
  await using server = await start();
  const { responses } = await exchange(
    server.addr.port,
    `GET /refuse HTTP/1.1\r\n${HANDSHAKE}\r\nGET /plain HTTP/1.1\r\nHost: x\r\n\r\n`,
    { responses: 2 },
  );
  assert.deepEqual(responses.map((r) => [r.status, r.body]), [[403, "no sockets here"], [
    200,
    "plain",
  ]]);
});

Deno.test("fragments make one message, and a ping between them is answered with its payload", async () => {
  await using server = await start();
  using raw = await RawSocket.connect(server.addr.port);
  await raw.write(frame(TEXT, "Hel", { fin: false }));
  await raw.write(frame(PING, "are you there"));
  await raw.write(frame(CONTINUATION, "lo, ", { fin: false }));
  await raw.write(frame(CONTINUATION, "world"));
  const pong = await raw.read();
  assert.deepEqual([pong?.opcode, new TextDecoder().decode(pong?.payload)], [
    PONG,
    "are you there",
  ]);
  const echo = await raw.read();
  assert.deepEqual([echo?.opcode, new TextDecoder().decode(echo?.payload)], [
    TEXT,
    "Hello, world",
  ]);
  // A binary message in fragments, one byte each.
  await raw.write(frame(BINARY, new Uint8Array([1]), { fin: false }));
  await raw.write(frame(CONTINUATION, new Uint8Array([2]), { fin: false }));
  await raw.write(frame(CONTINUATION, new Uint8Array([3])));
  const binary = await raw.read();
  assert.deepEqual([binary?.opcode, [...binary!.payload]], [BINARY, [1, 2, 3]]);
  await raw.write(frame(CLOSE, closePayload(1000)));
  assert.deepEqual(closeOf(await raw.read()), { code: 1000, reason: "" });
  assert.ok(await raw.closedByServer(), NOT_CLOSED);
});

Deno.test("the app's close code and reason reach the client", async () => {
  await using server = await start();
  const client = await Client.open(wsUrl(server, "/close"));
  client.socket.send(JSON.stringify({ code: 4001, reason: "done here" }));
  const closed = await client.closed;
  assert.deepEqual([closed.code, closed.reason, closed.wasClean], [4001, "done here", true]);
});

Deno.test("the client's close code and reason reach the app's close event", async () => {
  await using server = await start();
  const { name, events } = report();
  const client = await Client.open(wsUrl(server, `/report?channel=${name}`));
  await client.close(4002, "bye");
  assert.deepEqual(await events, ["close 4002 bye true"]);
});

Deno.test("a message over --ws-max-message closes the socket with 1009, and the app sees it", async () => {
  await using server = await start({ wsMaxMessage: 1024 });
  const { name, events } = report();
  const client = await Client.open(wsUrl(server, `/report?channel=${name}`));
  assert.equal(await client.echo("x".repeat(1024)), "x".repeat(1024));
  client.socket.send("x".repeat(1025));
  // The close, not an echo, comes first.
  const first = await Promise.race([client.next(), client.closed.then((event) => event.code)]);
  assert.equal(first, 1009);
  assert.deepEqual(await events, ["error", "close 1009 Messages are limited to 1024 bytes false"]);
});

Deno.test("fragments that add up to more than --ws-max-message close with 1009", async () => {
  await using server = await start({ wsMaxMessage: 1024 });
  using raw = await RawSocket.connect(server.addr.port);
  await raw.write(frame(BINARY, new Uint8Array(1000), { fin: false }));
  await raw.write(frame(CONTINUATION, new Uint8Array(25), { fin: false }));
  await raw.write(frame(CONTINUATION, new Uint8Array(1)));
  assert.equal(closeOf(await raw.read()).code, 1009);
  assert.ok(await raw.closedByServer(), NOT_CLOSED);
});

Deno.test("a text message that is not UTF-8 closes the socket with 1007, and nothing after it is answered", async () => {
  await using server = await start();
  using raw = await RawSocket.connect(server.addr.port);
  // A valid start, then a truncated sequence split across fragments, and
  // a ping in the same write.
  await raw.write(frame(TEXT, new Uint8Array([0x68, 0x69, 0xe2, 0x82]), { fin: false }));
  const last = frame(CONTINUATION, new Uint8Array([0x28]));
  const ping = frame(PING, "after the error");
  const both = new Uint8Array(last.length + ping.length);
  both.set(last);
  both.set(ping, last.length);
  await raw.write(both);
  assert.equal(closeOf(await raw.read()).code, 1007);
  // No pong: the connection ends right after the close frame (not at the
  // server's 5 s close timeout).
  assert.equal(await raw.read(CLOSED_WITHIN_MS), null);
});

Deno.test("an unmasked client frame closes the socket with 1002", async () => {
  await using server = await start();
  using raw = await RawSocket.connect(server.addr.port);
  await raw.write(frame(TEXT, "not masked", { mask: false }));
  assert.equal(closeOf(await raw.read()).code, 1002);
  assert.ok(await raw.closedByServer(), NOT_CLOSED);
});

Deno.test("protocol errors close with 1002: a stray continuation, a new message inside one, a long ping, a bad code", async () => {
  await using server = await start();
  const cases: [string, Uint8Array[]][] = [
    ["a continuation of nothing", [frame(CONTINUATION, "x")]],
    ["a text inside a fragmented message", [
      frame(TEXT, "a", { fin: false }),
      frame(TEXT, "b"),
    ]],
    ["a ping of 126 bytes", [frame(PING, new Uint8Array(126))]],
    ["a fragmented ping", [frame(PING, "p", { fin: false })]],
    ["opcode 3", [frame(0x3, "x")]],
    ["close code 1005 on the wire", [frame(CLOSE, closePayload(1005))]],
    ["a reserved bit", [(() => {
      const bytes = frame(TEXT, "x");
      bytes[0] |= 0x40;
      return bytes;
    })()]],
  ];
  for (const [what, frames] of cases) {
    using raw = await RawSocket.connect(server.addr.port);
    for (const bytes of frames) await raw.write(bytes);
    assert.equal(closeOf(await raw.read()).code, 1002, what);
    assert.ok(await raw.closedByServer(), `${what}: ${NOT_CLOSED}`);
  }
});

Deno.test("an idle client is pinged after --ws-ping-interval, and cut when it does not answer", async () => {
  await using server = await start({ wsPingInterval: 300 });
  const { name, events } = report();
  using raw = await RawSocket.connect(server.addr.port, `/report?channel=${name}`);
  const ping = await raw.read();
  assert.equal(ping?.opcode, PING);
  // Silent: the server cuts the connection, and the app sees an abnormal close.
  assert.equal(await raw.read(), null);
  assert.deepEqual(await events, ["error", "close 1006  false"]);
});

Deno.test("a client that answers pings stays open past several ping intervals", async () => {
  await using server = await start({ wsPingInterval: 200 });
  using raw = await RawSocket.connect(server.addr.port);
  for (let i = 0; i < 3; i++) {
    const ping = await raw.read();
    assert.equal(ping?.opcode, PING);
    await raw.write(frame(PONG, ping!.payload));
  }
  await raw.write(frame(TEXT, "still here"));
  const echo = await raw.read();
  assert.equal(new TextDecoder().decode(echo?.payload), "still here");
});

Deno.test("a socket whose worker dies closes with 1011, and the server goes on", async () => {
  await using server = await start();
  const client = await Client.open(wsUrl(server, "/crash"));
  client.socket.send("crash now");
  const closed = await within(client.closed, "the close after the crash");
  assert.equal(closed.code, 1011);
  const again = await Client.open(wsUrl(server, "/echo"));
  assert.equal(await again.echo("after"), "after");
  await again.close();
  assert.equal(server.stats().replaced, 1);
});

Deno.test("server.close() closes open sockets with 1001 and drains without cutting", async () => {
  const server = await start({ stats: true });
  const clients = await Promise.all([1, 2, 3].map(() => Client.open(wsUrl(server, "/echo"))));
  assert.equal(server.stats().websockets, 3);
  const report = await server.close();
  const closes = await within(
    Promise.all(clients.map((client) => client.closed)),
    "the closes at shutdown",
  );
  assert.deepEqual(closes.map((event) => [event.code, event.wasClean]), [
    [1001, true],
    [1001, true],
    [1001, true],
  ]);
  assert.equal(report.cut, 0);
});

Deno.test("a client that does not answer the 1001 is cut at --shutdown-timeout", async () => {
  const server = await start({ shutdownTimeout: 300 });
  using raw = await RawSocket.connect(server.addr.port);
  const report = await server.close();
  assert.equal(report.cut, 1);
  assert.equal(closeOf(await raw.read()).code, 1001);
  assert.equal(await raw.read(), null);
});

Deno.test("an open socket holds no request slot, and --timeout does not apply to it", async () => {
  await using server = await start({ workerConcurrency: 1, timeout: 200 });
  const client = await Client.open(wsUrl(server, "/echo"));
  // The one slot of the one worker is free: a request runs at once.
  const response = await fetch(new URL("/plain", server.url));
  assert.equal(await response.text(), "plain");
  assert.deepEqual([server.stats().running, server.stats().streams], [0, 1]);
  // Well past the deadline, the socket still answers.
  await new Promise((resolve) => setTimeout(resolve, 600));
  assert.equal(await client.echo("later"), "later");
  await client.close();
});

Deno.test("stats and metrics count open sockets", async () => {
  await using server = await start({ stats: true, metrics: true });
  const metric = async () => {
    const text = await (await fetch(new URL("/_brigade/metrics", server.url))).text();
    return text.match(/^brigade_websockets (\d+)$/m)?.[1];
  };
  const clients = await Promise.all([1, 2].map(() => Client.open(wsUrl(server, "/echo"))));
  const stats = await (await fetch(new URL("/_brigade/stats", server.url))).json();
  assert.equal(stats.websockets, 2);
  assert.equal(await metric(), "2");
  await Promise.all(clients.map((client) => client.close()));
  await until(() => server.stats().websockets === 0);
  assert.equal(await metric(), "0");
});

Deno.test("a worker that does not take its messages stops the main thread reading that socket", async () => {
  await using server = await start();
  using raw = await RawSocket.connect(server.addr.port, "/stall");
  await raw.write(frame(TEXT, "stall"));
  // 32 MiB while the worker's thread is blocked for 2 s: the main thread
  // reads one window of it, then stops, so the write cannot finish before
  // the worker wakes and takes what it was sent.
  const messages = new Uint8Array((32 << 20) + 32 * 14);
  const one = frame(BINARY, new Uint8Array(1 << 20));
  for (let i = 0; i < 32; i++) messages.set(one, i * one.length);
  const written = raw.write(messages).then(() => "written");
  const awake = raw.read().then((frame) => new TextDecoder().decode(frame?.payload));
  assert.equal(await Promise.race([written, awake]), "awake");
  assert.equal(await within(written, "the rest of the write"), "written");
});

Deno.test("bufferedAmount counts the bytes sent that the main thread has not written, and returns to 0", async () => {
  await using server = await start();
  const client = await Client.open(wsUrl(server, "/buffered"));
  client.socket.send("fill");
  assert.equal((await client.next() as ArrayBuffer).byteLength, 8 << 20);
  // Right after the send, nothing of it was written: the whole frame, head included.
  assert.equal(await client.next(), String((8 << 20) + 10));
  // Everything was written (and credited) before the client could ask.
  assert.equal(await client.echo("now?"), "0");
  await client.close();
});

Deno.test("an app that sends faster than its client reads is held, then closed with 1008 past 16 MiB", async () => {
  await using server = await start();
  using raw = await RawSocket.connect(server.addr.port, "/flood");
  // The app queued 1 MiB sends until bufferedAmount passed the limit; the
  // one already on its way completes, then the close follows.
  const first = await raw.read();
  assert.deepEqual([first?.opcode, first?.payload.length], [BINARY, 1 << 20]);
  assert.equal(closeOf(await raw.read()).code, 1008);
});

Deno.test("requests that do not ask for an upgrade are unaffected, on the same server", async () => {
  await using server = await start();
  const client = await Client.open(wsUrl(server, "/echo"));
  const response = await fetch(new URL("/plain", server.url), { headers: { upgrade: "h2c" } });
  assert.equal(await response.text(), "plain");
  await client.close();
});

Deno.test("the README's chat app relays a message to every client across two workers", async () => {
  await using server = await serve({ port: 0, workers: 2, handler: CHAT, logLevel: "error" });
  const clients = await Promise.all([1, 2, 3, 4].map(() => Client.open(wsUrl(server, "/"))));
  clients[0].socket.send("hello, room");
  const heard = await Promise.all(clients.map((client) => client.next()));
  assert.deepEqual(heard, ["hello, room", "hello, room", "hello, room", "hello, room"]);
  assert.deepEqual(server.stats().streams, 4);
  await Promise.all(clients.map((client) => client.close()));
});

Deno.test("1,000 concurrent sockets on 2 workers each get their own echo", async () => {
  await using server = await start({ workers: 2 });
  const clients = await Promise.all(
    Array.from({ length: 1000 }, () => Client.open(wsUrl(server, "/echo"))),
  );
  assert.equal(server.stats().websockets, 1000);
  const echoes = await Promise.all(clients.map((client, i) => client.echo(`socket ${i}`)));
  assert.ok(echoes.every((echo, i) => echo === `socket ${i}`));
  await Promise.all(clients.map((client) => client.close()));
  await until(() => server.stats().websockets === 0);
});
