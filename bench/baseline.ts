// The benchmark's baseline: Deno.serve, plain. With `--handler FILE` it
// serves that module's `default.fetch`, exactly what brigade's workers run;
// otherwise GET / gets the same hello.html bytes and kind of headers brigade
// sends.
import { parseArgs } from "node:util";

const { values } = parseArgs({
  args: Deno.args,
  options: { root: { type: "string" }, handler: { type: "string" } },
});
const onListen = ({ port }: Deno.NetAddr) => console.log(`Listening on http://127.0.0.1:${port}/`);
if (values.handler) {
  const module = await import(new URL(values.handler, `file://${Deno.cwd()}/`).href);
  Deno.serve({ hostname: "127.0.0.1", port: 0, onListen }, module.default.fetch);
} else {
  const root = values.root ?? new URL("../static/", import.meta.url).pathname;
  const body = await Deno.readFile(`${root}/hello.html`);
  Deno.serve({ hostname: "127.0.0.1", port: 0, onListen }, () =>
    new Response(body, {
      headers: { "content-type": "text/html; charset=utf-8", "last-modified": "x", etag: "x" },
    }));
}
