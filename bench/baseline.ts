// The benchmark's baselines. Run with `deno run` it is Deno.serve, plain; as
// a module for `deno serve --parallel` it is the same handler in each of
// Deno's threads. With `--handler FILE` it serves that module's
// `default.fetch`, exactly what brigade's workers run; otherwise it answers
// every request with one file of `--root` (`--file`, hello.html by default)
// from memory, with the kind of headers brigade's static app sends (brigade
// keeps files up to 1 MiB in memory too).
import { parseArgs } from "node:util";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    root: { type: "string" },
    file: { type: "string", default: "hello.html" },
    handler: { type: "string" },
    // Set for `deno serve`, which serves the default export itself.
    "as-module": { type: "boolean" },
  },
});

async function handler(): Promise<(request: Request) => Response | Promise<Response>> {
  if (values.handler) {
    const module = await import(new URL(values.handler, `file://${Deno.cwd()}/`).href);
    return module.default.fetch;
  }
  const root = values.root ?? new URL("../static/", import.meta.url).pathname;
  const body = await Deno.readFile(`${root}/${values.file}`);
  const type = values.file.endsWith(".html")
    ? "text/html; charset=utf-8"
    : "application/octet-stream";
  return () =>
    new Response(body, { headers: { "content-type": type, "last-modified": "x", etag: "x" } });
}

const fetch = await handler();
export default { fetch };

if (!values["as-module"]) {
  const onListen = ({ port }: Deno.NetAddr) =>
    console.log(`Listening on http://127.0.0.1:${port}/`);
  Deno.serve({ hostname: "127.0.0.1", port: 0, onListen }, fetch);
}
