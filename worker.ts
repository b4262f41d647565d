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

export type { Handler } from "./_app/respond.ts";

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
      const sent = serveRequest(app, start, context, config.window);
      return sent instanceof Promise ? sent.then(ended, failed) : ended(sent);
    } catch (error) {
      return failed(error);
    }
  };
});
