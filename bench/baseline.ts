// The benchmark's baseline: Deno.serve answering GET / with the same
// hello.html bytes and the same kind of headers brigade sends.
const root = Deno.args[0] ?? new URL("../static/", import.meta.url).pathname;
const body = await Deno.readFile(`${root}/hello.html`);
Deno.serve({
  hostname: "127.0.0.1",
  port: 0,
  onListen: ({ port }) => console.log(`Listening on http://127.0.0.1:${port}/`),
}, () =>
  new Response(body, {
    headers: { "content-type": "text/html; charset=utf-8", "last-modified": "x", etag: "x" },
  }));
