/**
 * Headless Chromium for the browser tests, driven by puppeteer-core.
 *
 * Chromium is started here with `Deno.Command` and puppeteer connects to it
 * over Deno's own WebSocket. `puppeteer.launch()` would go through
 * `node:child_process` and the `ws` package, which read environment variables
 * and so would need `--allow-env` in the test task; this way the task's
 * permissions are enough, and the test owns the browser's process.
 *
 * This is puppeteer's browser build, which cannot write files: where a test
 * wants a screenshot on disk it takes the bytes from `page.screenshot()` and
 * writes them with `Deno.writeFile`, not with the `path` option.
 *
 * Tests that need Chromium are ignored where {@linkcode CHROMIUM} is missing
 * (`.ci/run` installs it): `ignore: !hasChromium()`.
 */
import puppeteer, {
  type Browser,
  type ConnectionTransport,
  type GoToOptions,
  type HTTPRequest,
  type HTTPResponse,
  type Page,
} from "npm:puppeteer-core@^25.16.0/lib/puppeteer/puppeteer-core-browser.js";

export type { Browser, GoToOptions, HTTPResponse, Page };

/** The Chromium the tests run. */
export const CHROMIUM = "/usr/bin/chromium";

const FLAGS = [
  "--headless=new",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  // No connections of Chromium's own (updates, sync, field trials): on a
  // closed network they are refused, and the test only wants the page's.
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** Whether {@linkcode CHROMIUM} is there to run. */
export function hasChromium(): boolean {
  try {
    return Deno.statSync(CHROMIUM).isFile;
  } catch {
    return false;
  }
}

/** The CDP connection, over Deno's WebSocket. */
class DenoWebSocketTransport implements ConnectionTransport {
  onmessage?: (message: string) => void;
  onclose?: () => void;
  /** Settles once the socket is closed, whichever side closed it. */
  readonly closed: Promise<void>;
  #socket: WebSocket;

  private constructor(socket: WebSocket) {
    this.#socket = socket;
    this.closed = new Promise((resolve) => {
      socket.addEventListener("close", () => {
        resolve();
        this.onclose?.();
      });
    });
    socket.addEventListener("message", (event) => this.onmessage?.(event.data));
  }

  static open(url: string): Promise<DenoWebSocketTransport> {
    const socket = new WebSocket(url);
    return new Promise((resolve, reject) => {
      socket.addEventListener("open", () => resolve(new DenoWebSocketTransport(socket)), {
        once: true,
      });
      socket.addEventListener("error", () => reject(new Error(`cannot connect to ${url}`)), {
        once: true,
      });
    });
  }

  send(message: string): void {
    this.#socket.send(message);
  }

  close(): void {
    this.#socket.close();
  }
}

/** Starts Chromium with a fresh profile, runs `body` with it, and shuts it down again. */
export async function withChromium(body: (browser: Browser) => Promise<void>): Promise<void> {
  const profile = await Deno.makeTempDir({ prefix: "brigade-chromium-" });
  const chromium = new Deno.Command(CHROMIUM, {
    args: [...FLAGS, `--user-data-dir=${profile}`, "--remote-debugging-port=0", "about:blank"],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  // Chromium names its DevTools endpoint on stderr; the rest of stderr is
  // kept for the error message should it never get that far.
  let stderr = "";
  const { promise: endpoint, resolve: found, reject: missing } = Promise.withResolvers<string>();
  const drained = (async () => {
    for await (const text of chromium.stderr.pipeThrough(new TextDecoderStream())) {
      if (stderr.length < 65536) stderr += text;
      const match = /DevTools listening on (ws:\/\/\S+)/.exec(stderr);
      if (match) found(match[1]);
    }
    missing(new Error(`Chromium exited before it listened for DevTools:\n${stderr}`));
  })();
  // A deadline, not a wait: it only turns a Chromium that hangs at start into an error.
  const deadline = setTimeout(() => {
    missing(new Error(`Chromium did not listen for DevTools within 30 s:\n${stderr}`));
  }, 30_000);
  let transport: DenoWebSocketTransport | undefined;
  let browser: Browser | undefined;
  try {
    const url = await endpoint;
    clearTimeout(deadline);
    transport = await DenoWebSocketTransport.open(url);
    browser = await puppeteer.connect({ transport, defaultViewport: null });
    await body(browser);
  } finally {
    clearTimeout(deadline);
    let closed = false;
    try {
      // Browser.close: Chromium exits by itself, which closes the socket.
      if (browser?.connected) {
        await browser.close();
        closed = true;
      }
    } finally {
      if (!closed) {
        try {
          chromium.kill("SIGKILL");
        } catch {
          // It has exited already.
        }
      }
      await chromium.status;
      await drained;
      await transport?.closed;
      await Deno.remove(profile, { recursive: true });
    }
  }
}

/** What a page has requested and been answered, and what went wrong in it. */
export interface Watched {
  requests: HTTPRequest[];
  responses: HTTPResponse[];
  /** Failed requests, uncaught page errors and `console.error` messages. */
  failures: string[];
  /** Forgets what was seen so far. */
  clear(): void;
}

/** What the page's requests and responses were, from puppeteer's events. */
export function watch(page: Page): Watched {
  const requests: HTTPRequest[] = [];
  const responses: HTTPResponse[] = [];
  const failures: string[] = [];
  page.on("request", (request) => requests.push(request));
  page.on("response", (response) => responses.push(response));
  page.on("requestfailed", (request) => {
    failures.push(`${request.url()}: ${request.failure()?.errorText}`);
  });
  page.on("pageerror", (error) => failures.push(`page error: ${error}`));
  page.on("console", (message) => {
    if (message.type() === "error") failures.push(`console error: ${message.text()}`);
  });
  return {
    requests,
    responses,
    failures,
    clear() {
      requests.length = 0;
      responses.length = 0;
      failures.length = 0;
    },
  };
}
