/**
 * The live pool page in a real browser: headless Chromium opens `/_brigade/`
 * on a brigade started in this process with `dashboard: true`, and the page
 * follows the pool through its event stream while the test keeps both
 * workers on the book's `GET /sleep`.
 *
 * Chromium is started and driven by `_browser.ts` (`Deno.Command`,
 * puppeteer-core over Deno's WebSocket, so the test task's permissions are
 * enough). The page is read through its test hooks: `[data-worker]` tiles
 * with a `[data-state]` word, `#queued` and `#live`. The tests save
 * `docs/dashboard.png`, the page while the pool is busy.
 *
 * The tests are ignored where `/usr/bin/chromium` is missing (`.ci/run`
 * installs it).
 */
import assert from "node:assert/strict";
import {
  hasChromium,
  type HTTPResponse,
  type Page,
  watch,
  type Watched,
  withChromium,
} from "./_browser.ts";
import { serve, type ServeOptions, type Server } from "../main.ts";

/**
 * The README's screenshot, rewritten only when asked:
 * `deno task test tests/dashboard_browser_test.ts -- --update-screenshot`.
 * Otherwise the screenshot goes to a temporary file, so a test run leaves the
 * checkout as it was.
 */
const UPDATE_SCREENSHOT = Deno.args.includes("--update-screenshot");
const SCREENSHOT = new URL("../docs/dashboard.png", import.meta.url);
const FAULTS = new URL("./fixtures/fault_handler.ts", import.meta.url);
/** How long `GET /sleep` holds a worker: long enough for a few `stats` events (2 a second). */
const SLEEP_MS = 1500;
/** A deadline for each wait on the page, not a pause: the waits end when the page is there. */
const WAIT = { timeout: 15_000, polling: 50 };

/**
 * Starts brigade with the dashboard, two workers and a short `GET /sleep`
 * (and `options`), and Chromium; runs `body` with a page 1024×700 in the
 * light scheme, and what {@linkcode watch} sees of that page.
 */
async function withDashboard(
  body: (page: Page, server: Server, seen: Watched) => Promise<void>,
  options: ServeOptions = {},
): Promise<void> {
  await using server = await serve({
    port: 0,
    workers: 2,
    dashboard: true,
    sleepMs: SLEEP_MS,
    logLevel: "warn",
    ...options,
  });
  await withChromium(async (browser) => {
    const page = await browser.newPage();
    await page.setViewport({ width: 1024, height: 700 });
    await page.emulateMediaFeatures([{ name: "prefers-color-scheme", value: "light" }]);
    await body(page, server, watch(page));
  });
}

const dashboardUrl = (server: Server) => new URL("/_brigade/", server.url).href;

/** Opens the page (the event stream never ends, so "load", not network idle). */
async function open(page: Page, server: Server): Promise<HTTPResponse> {
  const response = await page.goto(dashboardUrl(server), { waitUntil: "load" });
  assert.ok(response, "the navigation has a response");
  return response;
}

/** Opens the page and waits until it is live and shows both workers idle. */
async function openLive(page: Page, server: Server): Promise<void> {
  await open(page, server);
  await page.waitForFunction(LIVE_AND_IDLE, WAIT);
}

// Conditions on the page, as strings: Deno's type check has no DOM library.

/** The stream is open and both workers are shown idle, with nothing queued. */
const LIVE_AND_IDLE = `(() => {
  const tiles = [...document.querySelectorAll("[data-worker]")];
  return document.getElementById("live").textContent === "live" &&
    tiles.length === 2 &&
    tiles.every((tile) => tile.querySelector("[data-state]").textContent === "idle") &&
    document.getElementById("queued").textContent === "0";
})()`;

/** What the tiles say now: id, state word, running count, and the oldest request's label. */
const TILES = `[...document.querySelectorAll("[data-worker]")].map((tile) => ({
  id: tile.dataset.worker,
  state: tile.querySelector("[data-state]").textContent,
  running: tile.querySelector("[data-field=running]").textContent,
  label: tile.querySelector("[data-field=oldest] code")?.textContent ?? null,
}))`;

/**
 * Installs a recorder in the page that notes, on every change to the page,
 * each tile's state, running count and label, the largest queue depth shown
 * and what the live region announced, so that short states are not missed.
 */
const RECORD = `(() => {
  const seen = { tiles: [], maxQueued: 0, announced: [] };
  const look = () => {
    for (const tile of ${TILES}) {
      const key = JSON.stringify(tile);
      if (!seen.tiles.includes(key)) seen.tiles.push(key);
    }
    const queued = Number(document.getElementById("queued").textContent) || 0;
    seen.maxQueued = Math.max(seen.maxQueued, queued);
    const said = document.querySelector("[aria-live=polite]").textContent;
    if (said && seen.announced.at(-1) !== said) seen.announced.push(said);
  };
  new MutationObserver(look).observe(document.body, {
    subtree: true,
    childList: true,
    characterData: true,
    attributes: true,
  });
  look();
  globalThis.seen = seen;
})()`;

/** Both workers have been shown busy with `GET /sleep` (by the recorder). */
const BOTH_SLEEPING = `new Set(seen.tiles.map((key) => JSON.parse(key))
  .filter((tile) => tile.state === "busy" && tile.label === "GET /sleep")
  .map((tile) => tile.id)).size === 2`;

interface Seen {
  tiles: string[];
  maxQueued: number;
  announced: string[];
}

interface Tile {
  id: string;
  state: string;
  running: string;
  label: string | null;
}

/** What the page's recorder has noted so far (once {@linkcode RECORD} is installed). */
const recorded = async (page: Page) => await page.evaluate("seen") as Seen;

/** What the tiles say now. */
const tiles = async (page: Page) => await page.evaluate(TILES) as Tile[];

/** Waits for `condition` on the recorder, and says what the page showed if it never holds. */
async function waitForRecorded(page: Page, condition: string, what: string): Promise<void> {
  try {
    await page.waitForFunction(condition, WAIT);
  } catch (error) {
    const { tiles, maxQueued } = await recorded(page);
    throw new Error(
      `the page never showed ${what}; its tiles were\n${tiles.join("\n")}\n` +
        `and its largest queue ${maxQueued}`,
      { cause: error },
    );
  }
}

Deno.test({
  name:
    "GET /_brigade/ loads a page whose only other request is its event stream; it goes live and shows two idle workers",
  ignore: !hasChromium(),
  async fn() {
    await withDashboard(async (page, server, seen) => {
      const main = await open(page, server);
      assert.equal(main.status(), 200);
      assert.match(main.headers()["content-type"] ?? "", /^text\/html\b/);
      await page.waitForFunction(LIVE_AND_IDLE, WAIT);

      const fetched = seen.requests
        .filter((request) => !request.url().startsWith("data:"))
        .map((request) => request.url());
      assert.deepEqual(
        fetched,
        [dashboardUrl(server), new URL("events", dashboardUrl(server)).href],
        "the page and its stream, and no favicon, font or script from elsewhere",
      );
      const stream = seen.responses.find((response) => response.url().endsWith("/events"));
      assert.equal(stream?.status(), 200);
      assert.match(stream?.headers()["content-type"] ?? "", /^text\/event-stream\b/);
      assert.deepEqual(seen.failures, []);

      const shown = await tiles(page);
      assert.deepEqual(shown.map((tile) => [tile.state, tile.running, tile.label]), [
        ["idle", "0", null],
        ["idle", "0", null],
      ]);
      assert.equal(new Set(shown.map((tile) => tile.id)).size, 2, "each tile has its own id");
    });
  },
});

Deno.test({
  name:
    "with three GET /sleep at once on two workers the page shows both workers busy with GET /sleep and a queued request, then both idle with an empty queue once the responses are in",
  ignore: !hasChromium(),
  async fn() {
    await withDashboard(async (page, server, seen) => {
      await openLive(page, server);
      await page.evaluate(RECORD);

      const sleeps = Promise.allSettled([1, 2, 3].map(async () => {
        const response = await fetch(new URL("/sleep", server.url));
        await response.text();
        return response.status;
      }));
      try {
        await waitForRecorded(page, BOTH_SLEEPING, "both workers busy with GET /sleep");
        // The page as it is now, both workers busy for about 1.5 s more. The
        // bytes are written here: puppeteer's browser build cannot write files.
        const png = await page.screenshot();
        assert.deepEqual([...png.subarray(1, 4)], [0x50, 0x4e, 0x47], "a PNG");
        if (UPDATE_SCREENSHOT) await Deno.writeFile(SCREENSHOT, png);
        await waitForRecorded(page, "seen.maxQueued >= 1", "the third GET /sleep queued");
      } finally {
        // The responses are in before the test goes on, or ends.
        await sleeps;
      }
      for (const result of await sleeps) {
        assert.equal(result.status === "fulfilled" && result.value, 200, "GET /sleep");
      }
      await page.waitForFunction(LIVE_AND_IDLE, WAIT);

      const { tiles: noted, announced } = await recorded(page);
      for (const tile of noted.map((key) => JSON.parse(key) as Tile)) {
        if (tile.label === null) continue;
        assert.equal(tile.state, "busy", "a worker with a request is busy");
        assert.equal(tile.label, "GET /sleep", "the only request the workers ran");
      }
      // The live region said when each worker changed state, both ways.
      const said = announced.join(", ");
      for (const { id } of await tiles(page)) {
        assert.match(said, new RegExp(`\\bworker ${id} busy\\b`), said);
        assert.match(said, new RegExp(`\\bworker ${id} idle\\b`), said);
      }
      assert.deepEqual(seen.failures, []);
    });
  },
});

Deno.test({
  name:
    "a worker that crashes shows in the page's log and replacement count, and its replacement's tile takes its place",
  ignore: !hasChromium(),
  async fn() {
    await withDashboard(async (page, server, seen) => {
      await openLive(page, server);
      const before = (await tiles(page)).map((tile) => tile.id);

      const crashed = await fetch(new URL("/crash", server.url));
      assert.equal(crashed.status, 500);
      await crashed.body?.cancel();
      await page.waitForFunction(
        `document.getElementById("replaced").textContent === "1" &&
          document.querySelectorAll("#log li").length === 1 &&
          ${LIVE_AND_IDLE}`,
        WAIT,
      );

      const after = (await tiles(page)).map((tile) => tile.id);
      const gone = before.filter((id) => !after.includes(id));
      const added = after.filter((id) => !before.includes(id));
      assert.equal(gone.length, 1, `one worker left: ${before} -> ${after}`);
      assert.equal(added.length, 1, `one worker joined: ${before} -> ${after}`);
      assert.equal(after.indexOf(added[0]), before.indexOf(gone[0]), "in the crashed one's place");
      const line = await page.evaluate(`document.querySelector("#log li span").textContent`);
      assert.match(
        String(line),
        new RegExp(`^Worker ${gone[0]} crashed: .+; replaced by worker ${added[0]}$`),
      );
      assert.deepEqual(seen.failures, []);
    }, { handler: FAULTS });
  },
});

Deno.test({
  name:
    "the dashboard fits 360 and 1440 px wide without sideways scrolling, and follows prefers-color-scheme",
  ignore: !hasChromium(),
  async fn() {
    await withDashboard(async (page, server, seen) => {
      await openLive(page, server);
      const layout = `({
        overflow: document.documentElement.scrollWidth - document.documentElement.clientWidth,
        background: getComputedStyle(document.body).backgroundColor,
      })`;
      const backgrounds = new Set<string>();
      for (const width of [360, 1440]) {
        for (const scheme of ["light", "dark"]) {
          await page.setViewport({ width, height: 800 });
          await page.emulateMediaFeatures([{ name: "prefers-color-scheme", value: scheme }]);
          const { overflow, background } = await page.evaluate(layout) as {
            overflow: number;
            background: string;
          };
          assert.equal(overflow, 0, `${width} px, ${scheme}: the page is wider than the window`);
          backgrounds.add(`${scheme} ${background}`);
        }
      }
      assert.equal(backgrounds.size, 2, [...backgrounds].join("; "));
      assert.deepEqual(seen.failures, []);
    });
  },
});
