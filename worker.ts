/**
 * The server's worker module. Each pool job is one HTTP request: a validated
 * head from the main thread, then its body as a stream. The worker builds a
 * web-standard `Request`, calls the handler, and streams the `Response` back.
 * The handler is the static app by default, or a user's module whose default
 * export has `fetch(request)` (the `deno serve` convention). Many requests
 * run at once on one worker: awaiting handlers interleave on its event loop.
 *
 * @module
 */

import { type App, type Sent, serveRequest } from "./_app/respond.ts";
import { createStaticApp } from "./_app/static.ts";
import { blockThread, handleJobs } from "./_worker/jobs.ts";
import type { RequestStart, ResponseEnd, ResponsePart, WorkerConfig } from "./_shared/protocol.ts";
import { upgradeWebSocket as upgrade } from "./_app/websocket.ts";

export type { Handler } from "./_app/respond.ts";

/**
 * Upgrades a WebSocket handshake to a socket, inside a handler module that
 * brigade serves; the same function as `Deno.upgradeWebSocket` there (brigade
 * installs it in every worker), for code that prefers an import. Return
 * `response` from the handler and use `socket` as a standard `WebSocket`.
 * The socket lives on its worker until it closes, holding none of the
 * worker's request slots.
 *
 * @param request The handler's request, a WebSocket handshake.
 * @param options `protocol`: a subprotocol the client offered, to agree to.
 * @returns `{ socket, response }`.
 * @throws {TypeError} If `request` is not a WebSocket handshake, or was upgraded already.
 *
 * @example An echo socket, served by brigade and called by Deno's client
 * ```ts
 * import assert from "node:assert/strict";
 * import { serve } from "./main.ts";
 *
 * // tests/fixtures/websocket_handler.ts: `const { socket, response } =
 * // Deno.upgradeWebSocket(request); socket.onmessage = (e) => socket.send(e.data);`
 * const handler = new URL("./tests/fixtures/websocket_handler.ts", import.meta.url);
 * await using server = await serve({ port: 0, workers: 1, handler, logLevel: "error" });
 * const socket = new WebSocket(new URL("/echo", server.url.replace("http", "ws")));
 * const echoed = new Promise((resolve) => socket.onmessage = (event) => resolve(event.data));
 * socket.onopen = () => socket.send("hello");
 * assert.equal(await echoed, "hello");
 * const closed = new Promise((resolve) => socket.onclose = resolve);
 * socket.close();
 * await closed;
 * ```
 */
export const upgradeWebSocket: typeof Deno.upgradeWebSocket = upgrade;

// A module written for `deno serve` calls Deno.upgradeWebSocket: here, brigade's.
Object.defineProperty(Deno, "upgradeWebSocket", {
  value: upgrade,
  configurable: true,
  writable: true,
});

/**
 * Loads the app a worker serves. A handler module follows the `deno serve`
 * contract: `fetch(request, info)`, `onListen(addr)`, called once per server
 * (by worker 0), and, on a plain object, `onError(error)` to answer a
 * handler that threw, as `Deno.serve`'s option does. Module
 * state is per worker: each worker imports the module once, and its requests
 * share that instance.
 */
async function loadApp(config: WorkerConfig, workerId: number): Promise<App> {
  if (config.handler) {
    const module = await import(config.handler);
    const app = module.default;
    const fetch = app?.fetch;
    if (typeof fetch !== "function") {
      throw new TypeError(
        `Cannot load handler: ${config.handler} must export default { fetch }, received ${typeof fetch}`,
      );
    }
    if (workerId === 0 && typeof app.onListen === "function") {
      await app.onListen({ transport: "tcp", ...config.listen });
    }
    // Only a plain `export default { fetch, onError }` names an error hook:
    // a framework's app object (Hono's, say) has an onError of its own that
    // registers a handler and must not be called with an error.
    const onError = Object.getPrototypeOf(app) === Object.prototype ? app.onError : undefined;
    if (typeof onError !== "function") {
      return { fetch: (request, info) => fetch.call(app, request, info) };
    }
    return {
      async fetch(request, info) {
        try {
          return await fetch.call(app, request, info);
        } catch (error) {
          return await onError.call(app, error);
        }
      },
    };
  }
  const app = await createStaticApp({
    root: config.root,
    sleepMs: config.sleepMs,
    cacheControl: config.cacheControl,
    cors: config.cors,
    spa: config.spa,
    dirListing: config.dirListing,
    block: blockThread,
  });
  return { fetch: app.fetch, static: app };
}

handleJobs<RequestStart, ResponseEnd, ResponsePart, WorkerConfig>(async (config, workerId) => {
  const app = await loadApp(config, workerId);
  return (start, context) => {
    const ended = ({ bodyBytes, last }: Sent): ResponseEnd => ({
      bodyBytes,
      workerId: context.workerId,
      last,
    });
    const failed = (error: unknown): never => {
      if (!context.signal.aborted) {
        console.error(`Handler failed for ${start.method} ${start.url}:`, error);
      }
      throw error;
    };
    try {
      // A cached static response is answered at once; a handler's, when its promise settles.
      const sent = serveRequest(app, start, context, config);
      return sent instanceof Promise ? sent.then(ended, failed) : ended(sent);
    } catch (error) {
      return failed(error);
    }
  };
});
