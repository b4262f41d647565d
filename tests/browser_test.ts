/**
 * A real browser: headless Chromium, driven by puppeteer-core, loads the small
 * site in `tests/fixtures/site/` from a brigade started in this process.
 *
 * Chromium is started and driven by `_browser.ts` (`Deno.Command`,
 * puppeteer-core over Deno's WebSocket, so the test task's permissions are
 * enough).
 *
 * The tests are ignored where `/usr/bin/chromium` is missing (`.ci/run`
 * installs it).
 */
import assert from "node:assert/strict";
import { type GoToOptions, hasChromium, type Page, watch, withChromium } from "./_browser.ts";
import { serve, type ServeOptions, type Server } from "../main.ts";

const SITE = new URL("./fixtures/site/", import.meta.url).pathname;

/** Every path `index.html` makes the browser fetch, with the type each must come with. */
const ASSETS: Record<string, RegExp> = {
  "/": /^text\/html\b/,
  "/css/site.css": /^text\/css\b/,
  "/js/app.js": /^(?:text|application)\/javascript\b/,
  "/js/lib/greet.js": /^(?:text|application)\/javascript\b/,
  "/images/dot.png": /^image\/png$/,
  "/images/tile.png": /^image\/png$/,
  "/images/icons/mark.svg": /^image\/svg\+xml\b/,
};

/**
 * Starts brigade on the fixture site and Chromium with a fresh profile, runs
 * `body` with a new page, and shuts everything down again.
 */
async function withBrowser(
  body: (page: Page, server: Server) => Promise<void>,
  options: ServeOptions = {},
): Promise<void> {
  await using server = await serve({
    port: 0,
    workers: 2,
    root: SITE,
    logLevel: "warn",
    ...options,
  });
  await withChromium(async (browser) => await body(await browser.newPage(), server));
}

const pathOf = (url: string) => new URL(url).pathname;
const paths = (items: { url(): string }[]) => [...new Set(items.map((item) => pathOf(item.url())))];
const sorted = (items: string[]) => items.toSorted();

/** What the page's script, stylesheet and images did, read inside the page. */
interface Rendered {
  title: string;
  heading: string;
  ready: string | undefined;
  headingColor: string;
  background: string;
  images: Record<string, [number, number]>;
}

/** Runs in the page (as a string: Deno's type check has no DOM library). */
const READ_RENDERED = `(async () => {
  const images = {};
  for (const img of document.images) {
    await img.decode();
    images[img.id] = [img.naturalWidth, img.naturalHeight];
  }
  return {
    title: document.title,
    heading: document.querySelector("h1").textContent,
    ready: document.body.dataset.ready,
    headingColor: getComputedStyle(document.querySelector("h1")).color,
    background: getComputedStyle(document.querySelector("#tiled")).backgroundImage,
    images,
  };
})()`;

function assertRendered(rendered: Rendered): void {
  // From index.html, not the book's hello.html.
  assert.equal(rendered.title, "brigade browser fixture");
  assert.equal(rendered.heading, "A small site served by brigade");
  assert.equal(rendered.ready, "hello from brigade", "the module script and its import ran");
  assert.equal(rendered.headingColor, "rgb(12, 34, 56)", "the stylesheet applied");
  assert.match(rendered.background, /\/images\/tile\.png"?\)$/, "the CSS background is set");
  assert.deepEqual(rendered.images, { dot: [4, 3], mark: [32, 32] }, "the images decoded");
}

/** A navigation is done once the page has loaded and the network has gone quiet. */
const LOADED: GoToOptions = { waitUntil: ["load", "networkidle0"] };

Deno.test({
  name:
    "Chromium loads the site from /: every asset is requested, answered 200 with its type, and used",
  ignore: !hasChromium(),
  async fn() {
    await withBrowser(async (page, server) => {
      const seen = watch(page);
      const main = await page.goto(server.url, LOADED);
      assert.equal(main?.status(), 200, "GET / is answered");

      assert.deepEqual(seen.failures, []);
      assert.deepEqual(sorted(paths(seen.requests)), sorted(Object.keys(ASSETS)));
      // The favicon is the <img>'s SVG again, which Chromium may take from its cache.
      const downloaded = seen.responses.filter((response) => !response.fromCache());
      assert.deepEqual(sorted(paths(downloaded)), sorted(Object.keys(ASSETS)));
      for (const response of seen.responses) {
        const path = pathOf(response.url());
        assert.equal(response.status(), 200, path);
        assert.match(response.headers()["content-type"] ?? "", ASSETS[path], path);
        assert.match(response.headers()["etag"] ?? "", /^W\/"/, `${path} has an ETag`);
        assert.ok(response.headers()["last-modified"], `${path} has a Last-Modified`);
      }
      assertRendered(await page.evaluate(READ_RENDERED) as Rendered);
    });
  },
});

Deno.test({
  name:
    "a Chromium reload revalidates the page with 304 and downloads no asset again; a no-cache fetch revalidates an asset with 304",
  ignore: !hasChromium(),
  async fn() {
    await withBrowser(async (page, server) => {
      const seen = watch(page);
      const first = await page.goto(server.url, LOADED);
      assert.ok(first, "the navigation has a response");
      assert.equal(first.status(), 200);
      const etag = first.headers()["etag"];
      const lastModified = first.headers()["last-modified"];
      const cssEtag = seen.responses.find((response) => pathOf(response.url()) === "/css/site.css")
        ?.headers()["etag"];
      assert.ok(cssEtag);
      seen.clear();

      // A normal reload, as F5 does: Chromium revalidates the page itself,
      // and takes each asset from its cache while the cache deems it fresh
      // (brigade sends no Cache-Control, so that is the heuristic 10% of the
      // file's age), revalidating it otherwise.
      const reloaded = await page.reload(LOADED);
      assert.ok(reloaded, "the reload has a response");
      assert.equal(reloaded.status(), 304, "the page is revalidated and not modified");
      const asked = reloaded.request().headers();
      assert.equal(asked["if-none-match"], etag, "the reload sends the page's ETag");
      assert.equal(asked["if-modified-since"], lastModified);

      assert.deepEqual(seen.failures, []);
      assert.deepEqual(sorted(paths(seen.responses)), sorted(Object.keys(ASSETS)));
      for (const response of seen.responses) {
        const path = pathOf(response.url());
        if (response.fromCache()) continue;
        const headers = response.request().headers();
        assert.ok(
          headers["if-none-match"] || headers["if-modified-since"],
          `${path} was asked for again without a validator`,
        );
        assert.equal(response.status(), 304, `${path} was revalidated`);
      }
      assertRendered(await page.evaluate(READ_RENDERED) as Rendered);

      // The page asks its HTTP cache to check an asset with the server.
      seen.clear();
      const fetched = await page.evaluate(`(async () => {
        const response = await fetch("css/site.css", { cache: "no-cache" });
        return [response.status, (await response.text()).includes("rgb(12, 34, 56)")];
      })()`);
      assert.deepEqual(fetched, [200, true], "the page gets the cached stylesheet");
      const css = seen.responses.filter((response) => pathOf(response.url()) === "/css/site.css");
      assert.equal(css.length, 1);
      assert.equal(css[0].status(), 304, "the stylesheet is revalidated and not modified");
      assert.equal(css[0].request().headers()["if-none-match"], cssEtag);
    });
  },
});

Deno.test({
  name:
    "with --cache-control no-cache, a Chromium reload revalidates the page and every asset with 304",
  ignore: !hasChromium(),
  async fn() {
    await withBrowser(async (page, server) => {
      const seen = watch(page);
      const first = await page.goto(server.url, LOADED);
      assert.equal(first?.status(), 200);
      const etags = new Map<string, string>();
      for (const response of seen.responses) {
        if (response.fromCache()) continue;
        assert.equal(response.headers()["cache-control"], "no-cache", pathOf(response.url()));
        etags.set(pathOf(response.url()), response.headers()["etag"]);
      }
      seen.clear();

      // no-cache lets the browser keep each file but not use it unasked.
      await page.reload(LOADED);
      assert.deepEqual(seen.failures, []);
      const asked = seen.responses.filter((response) => !response.fromCache());
      assert.deepEqual(sorted(paths(asked)), sorted(Object.keys(ASSETS)));
      for (const response of asked) {
        const path = pathOf(response.url());
        assert.equal(response.request().headers()["if-none-match"], etags.get(path), path);
        assert.equal(response.status(), 304, `${path} was revalidated`);
        assert.equal(response.headers()["cache-control"], "no-cache", `${path}'s 304`);
      }
      assertRendered(await page.evaluate(READ_RENDERED) as Rendered);
    }, { cacheControl: "no-cache" });
  },
});
