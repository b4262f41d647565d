/**
 * The README's nginx upstream block, run as written (addresses replaced) in
 * front of two brigade instances. Skipped when nginx is not installed.
 */
import assert from "node:assert/strict";
import { serve } from "../main.ts";
import { freePort, until } from "./_process.ts";

const NGINX = "/usr/sbin/nginx";
const haveNginx = await Deno.stat(NGINX).then(() => true, () => false);

/** The README's `upstream … server { … }` block, from the "Scaling out" section. */
async function readmeBlock(): Promise<string> {
  const readme = await Deno.readTextFile(new URL("../README.md", import.meta.url));
  const section = readme.slice(readme.indexOf("## Scaling out"));
  const block = /```nginx\n([\s\S]*?)```/.exec(section)?.[1];
  assert.ok(block, "the Scaling out section has an nginx block");
  return block;
}

Deno.test({
  name:
    "the README's nginx upstream spreads requests over two instances and fails over when one drains",
  ignore: !haveNginx,
  async fn() {
    const instances = await Promise.all(
      [0, 1].map(() => serve({ port: 0, workers: 1, accessLog: false, logLevel: "warn" })),
    );
    const port = freePort();
    const dir = await Deno.makeTempDir({ prefix: "brigade-nginx-" });
    const block = (await readmeBlock())
      .replace("10.0.0.1:7878", `127.0.0.1:${instances[0].addr.port}`)
      .replace("10.0.0.2:7878", `127.0.0.1:${instances[1].addr.port}`)
      .replace("listen 80;", `listen 127.0.0.1:${port};`);
    assert.ok(!block.includes("10.0.0."), "both upstream addresses replaced");
    await Deno.writeTextFile(
      `${dir}/nginx.conf`,
      `daemon off;\npid ${dir}/nginx.pid;\nerror_log ${dir}/error.log;\nevents {}\n` +
        `http {\n  access_log off;\n  client_body_temp_path ${dir};\n  proxy_temp_path ${dir};\n` +
        `${block}}\n`,
    );
    const nginx = new Deno.Command(NGINX, {
      args: ["-p", dir, "-c", `${dir}/nginx.conf`],
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const base = `http://127.0.0.1:${port}/`;
    try {
      // nginx is up once it answers.
      await until(() => fetch(base).then(async (r) => (await r.body?.cancel(), true), () => false));
      for (let i = 0; i < 20; i++) {
        const response = await fetch(base);
        assert.equal(response.status, 200);
        assert.match(await response.text(), /Hello!/);
      }
      const served = instances.map((server) => server.stats().completed);
      assert.ok(served.every((count) => count > 0), `both instances served: ${served}`);
      await instances[0].close();
      const statuses = [];
      for (let i = 0; i < 20; i++) {
        const response = await fetch(base);
        statuses.push(response.status);
        await response.body?.cancel();
      }
      assert.deepEqual(statuses, Array(20).fill(200), "every request answered by the other");
    } finally {
      nginx.kill("SIGTERM");
      await nginx.status;
      await nginx.stderr.cancel();
      for (const server of instances) await server.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
