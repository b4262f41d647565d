/**
 * `deno task bench:ws`: WebSocket echo messages per second, brigade against
 * Deno.serve + Deno.upgradeWebSocket serving the same module
 * (bench/ws_echo_handler.ts), both started here and interleaved round by
 * round; the ratio is the figure (absolute numbers on a shared 2-core
 * machine are noise).
 *
 * Each of `--sockets` clients sends a message, waits for its echo, and sends
 * the next, for `--duration` seconds: every message counted made the round
 * trip. The clients run in this process.
 */

import { parseArgs } from "node:util";
import { brigadeArgs, START_ENV, startServerProcess } from "../tests/_process.ts";
import { median } from "./_load.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    duration: { type: "string", default: "3" },
    sockets: { type: "string", default: "50" },
    rounds: { type: "string", default: "3" },
    workers: { type: "string", default: "2" },
    size: { type: "string", default: "64" },
  },
});
const duration = Number(values.duration) * 1000;
const sockets = Number(values.sockets);
const rounds = Number(values.rounds);
const message = "x".repeat(Number(values.size));
const HANDLER = "bench/ws_echo_handler.ts";

/** Echo round trips per second over `sockets` connections for `duration`. */
async function measure(url: string): Promise<number> {
  const wsUrl = url.replace(/^http/, "ws");
  const clients = await Promise.all(Array.from({ length: sockets }, () => open(wsUrl)));
  let count = 0;
  let running = true;
  const loops = clients.map((socket) =>
    new Promise<void>((resolve) => {
      socket.onmessage = () => {
        count++;
        if (running) socket.send(message);
        else resolve();
      };
      socket.send(message);
    })
  );
  const started = performance.now();
  await new Promise((resolve) => setTimeout(resolve, duration));
  running = false;
  const elapsed = performance.now() - started;
  const counted = count;
  await Promise.all(loops);
  await Promise.all(clients.map(close));
  return counted / (elapsed / 1000);
}

function open(url: string): Promise<WebSocket> {
  const socket = new WebSocket(url);
  return new Promise((resolve, reject) => {
    socket.onopen = () => resolve(socket);
    socket.onerror = (event) => reject(new Error((event as ErrorEvent).message));
  });
}

function close(socket: WebSocket): Promise<void> {
  const closed = new Promise<void>((resolve) => socket.onclose = () => resolve());
  socket.close();
  return closed;
}

const servers = [
  {
    name: "Deno.serve",
    process: await startServerProcess([
      "run",
      "--allow-net",
      "--allow-read",
      "bench/baseline.ts",
      "--handler",
      HANDLER,
    ]),
  },
  {
    name: "brigade",
    process: await startServerProcess(
      brigadeArgs(["--workers", values.workers, "--handler", HANDLER]),
      { env: START_ENV },
    ),
  },
];
const results = new Map<string, number[]>(servers.map((server) => [server.name, []]));
try {
  for (let round = 1; round <= rounds; round++) {
    for (const server of servers) {
      const rate = await measure(server.process.url);
      results.get(server.name)!.push(rate);
      console.log(`round ${round}: ${server.name.padEnd(10)} ${Math.round(rate)} msgs/s`);
    }
  }
} finally {
  for (const server of servers) {
    server.process.child.kill("SIGTERM");
    await server.process.child.status;
  }
}
const baseline = median(results.get("Deno.serve")!);
const brigade = median(results.get("brigade")!);
const ratios = results.get("brigade")!.map((rate, i) => rate / results.get("Deno.serve")![i]);
console.log(
  `\n${sockets} sockets, ${message.length}-byte messages, ${rounds} rounds of ${
    duration / 1000
  } s, medians:`,
);
console.log(`Deno.serve ${Math.round(baseline)} msgs/s`);
console.log(`brigade    ${Math.round(brigade)} msgs/s (${values.workers} workers)`);
console.log(
  `ratio      ${(brigade / baseline).toFixed(2)}× (per round: ${
    ratios.map((r) => r.toFixed(2)).join(", ")
  })`,
);
