/**
 * The handler module `bench/stream.ts` serves (`--handler bench/stream_handler.ts`).
 * Every route is what an ordinary user handler would do; nothing here knows
 * about brigade's internals.
 *
 * - `GET /`: a short text body (the "quick" route).
 * - `GET /whoami`: this worker's id.
 * - `GET /ticks?n=&every=`: a stream of `n` lines `i <Date.now()>\n`, line 0
 *   at once, then one every `every` ms on a fixed schedule; each line carries
 *   the time it was enqueued.
 * - `GET /sse?n=&every=`: `text/event-stream` of `n` events, event `i` due at
 *   `t0 + i * every`; each event's data is `{"i","t0","t"}` (t = enqueue time).
 * - `GET /bytes?size=&chunk=`: `size` bytes from a pull-based stream that
 *   allocates one fresh `chunk`-byte array per pull, never the whole body
 *   (with `&reuse`, enqueues views of one array instead: a diagnostic).
 * - `GET /blob?size=`: `size` bytes allocated at once, `new Response(bytes)`.
 * - `GET /wait?ms=`: answers after awaiting a timer for `ms`.
 * - `POST /cpu?ms=`: reads the body, then spins the thread for `ms` of
 *   synchronous CPU; answers `{"worker","bodyBytes"}`.
 * - `POST /upload`: reads the body as a stream, counting bytes without
 *   keeping them; answers the count.
 *
 * @module
 */

/** Made once per module instance, that is once per worker. */
const WORKER = crypto.randomUUID().slice(0, 8);
const encoder = new TextEncoder();

function int(url: URL, name: string, fallback: number): number {
  const value = Number(url.searchParams.get(name) ?? fallback);
  return Number.isFinite(value) && value >= 0 ? Math.floor(value) : fallback;
}

/** Resolves after `ms`, or at once when `signal` aborts. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, Math.max(0, ms));
    signal.addEventListener("abort", done, { once: true });
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
  });
}

/** A stream of `n` pieces, piece `i` made by `make(i)` at `t0 + i * every`. */
function scheduled(
  n: number,
  every: number,
  signal: AbortSignal,
  make: (i: number, t0: number) => string,
): ReadableStream<Uint8Array> {
  const t0 = Date.now();
  let i = 0;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (i >= n || signal.aborted) return controller.close();
      await sleep(t0 + i * every - Date.now(), signal);
      if (signal.aborted) return controller.close();
      controller.enqueue(encoder.encode(make(i, t0)));
      i++;
    },
  }, { highWaterMark: 0 });
}

function bytes(size: number, chunk: number, reuse: boolean): ReadableStream<Uint8Array> {
  let left = size;
  let n = 0;
  const shared = reuse ? new Uint8Array(chunk).fill(97) : undefined;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (left <= 0) return controller.close();
      let piece: Uint8Array;
      if (shared) piece = shared.subarray(0, Math.min(chunk, left));
      else {
        piece = new Uint8Array(Math.min(chunk, left));
        piece.fill(97 + (n++ % 26));
      }
      left -= piece.length;
      controller.enqueue(piece);
    },
  }, { highWaterMark: 0 });
}

function spin(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    // Synchronous CPU, as a handler doing real work would hold the thread.
  }
}

export default {
  async fetch(req: Request): Promise<Response> {
    const url = new URL(req.url);
    switch (url.pathname) {
      case "/":
        return new Response("ok\n");
      case "/whoami":
        return new Response(`${WORKER}\n`);
      case "/ticks": {
        const n = int(url, "n", 20);
        const every = int(url, "every", 50);
        return new Response(
          scheduled(n, every, req.signal, (i) => `${i} ${Date.now()}\n`),
          { headers: { "content-type": "text/plain" } },
        );
      }
      case "/sse": {
        const n = int(url, "n", 60);
        const every = int(url, "every", 1000);
        const stream = scheduled(
          n,
          every,
          req.signal,
          (i, t0) => `id: ${i}\ndata: ${JSON.stringify({ i, t0, t: Date.now() })}\n\n`,
        );
        return new Response(stream, {
          headers: { "content-type": "text/event-stream", "cache-control": "no-store" },
        });
      }
      case "/bytes": {
        const size = int(url, "size", 1 << 20);
        const chunk = Math.max(1, int(url, "chunk", 64 << 10));
        const reuse = url.searchParams.has("reuse");
        return new Response(bytes(size, chunk, reuse), {
          headers: { "content-type": "application/octet-stream" },
        });
      }
      case "/blob": {
        const size = int(url, "size", 1 << 20);
        return new Response(new Uint8Array(size).fill(98), {
          headers: { "content-type": "application/octet-stream" },
        });
      }
      case "/wait":
        await sleep(int(url, "ms", 200), req.signal);
        return new Response("waited\n");
      case "/cpu": {
        const body = req.body ? (await req.arrayBuffer()).byteLength : 0;
        spin(int(url, "ms", 400));
        return Response.json({ worker: WORKER, bodyBytes: body });
      }
      case "/upload": {
        let count = 0;
        if (req.body) {
          for await (const chunk of req.body) count += chunk.length;
        }
        return new Response(`${count}\n`);
      }
      default:
        return new Response("Not Found\n", { status: 404 });
    }
  },
};
