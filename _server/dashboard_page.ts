/**
 * The live pool page served at `GET /_brigade/` with `--dashboard`: one
 * self-contained HTML document, its style and script inline, that reads the
 * server-sent events at `GET /_brigade/events` (`stats` about twice a second,
 * `log` now and then) and shows the workers, the queue, the request rate,
 * wait and run percentiles, responses by status class and recent log lines.
 *
 * The page fetches nothing but its event stream: no fonts, no images (the
 * favicon is a `data:` URI), and a meta Content-Security-Policy says so to
 * the browser too. Everything the server sends is put in the page as text
 * (`textContent`, attributes), never as markup.
 *
 * @module
 */

/**
 * The dashboard page, a complete HTML document in UTF-8. It opens
 * `new EventSource("events")` relative to itself, so it must be served at a
 * path ending in `/` (`/_brigade/`); a token given in the page's query must
 * reach the stream another way (the cookie the server sets with the page).
 * A stream may replay its log when it (re)connects: a `log` event already
 * shown is not shown twice.
 *
 * Hooks for tests: each worker's tile is `[data-worker="<id>"]` with a
 * `[data-state]` child holding the state word, the queue depth is `#queued`,
 * and `#live` reads "live" while the stream is open and "reconnecting" after
 * it drops.
 */
export const DASHBOARD_HTML: string = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; connect-src 'self'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'; base-uri 'none'; form-action 'none'">
<meta name="referrer" content="no-referrer">
<title>brigade · pool</title>
<link rel="icon" href="data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 16 16'%3E%3Crect width='16' height='16' rx='3' fill='%232f6f5e'/%3E%3Crect x='3' y='9' width='2' height='4' fill='%23fff'/%3E%3Crect x='7' y='5' width='2' height='8' fill='%23fff'/%3E%3Crect x='11' y='3' width='2' height='10' fill='%23fff'/%3E%3C/svg%3E">
<style>
:root {
  color-scheme: light dark;
  --bg: #f6f7f8;
  --panel: #fff;
  --text: #1d2126;
  --muted: #5c6670;
  --line: #d9dee3;
  --accent: #2f6f5e;
  --idle: #3b7d4f;
  --busy: #b26a00;
  --blocked: #b3261e;
  --starting: #4a5fc1;
  --spark: #2f6f5e;
  --spark-fill: rgba(47, 111, 94, 0.14);
}
@media (prefers-color-scheme: dark) {
  :root {
    --bg: #14171a;
    --panel: #1c2024;
    --text: #e4e8ec;
    --muted: #9aa5b0;
    --line: #323940;
    --accent: #6cc3a8;
    --idle: #6cc38a;
    --busy: #f0b44c;
    --blocked: #ff8a80;
    --starting: #9fb0ff;
    --spark: #6cc3a8;
    --spark-fill: rgba(108, 195, 168, 0.16);
  }
}
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body {
  margin: 0;
  background: var(--bg);
  color: var(--text);
  font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  font-variant-numeric: tabular-nums;
}
header, main { max-width: 75rem; margin: 0 auto; padding: 0 1rem; }
header {
  display: flex;
  align-items: center;
  justify-content: space-between;
  gap: 1rem;
  padding-top: 1rem;
  padding-bottom: 0.5rem;
}
h1 { font-size: 1.15rem; margin: 0; letter-spacing: 0.01em; }
h1 span { color: var(--muted); font-weight: 400; }
h2 {
  font-size: 0.8rem;
  text-transform: uppercase;
  letter-spacing: 0.06em;
  color: var(--muted);
  margin: 0 0 0.5rem;
}
h3 { font-size: 0.95rem; margin: 0; }
#live {
  margin: 0;
  padding: 0.15rem 0.6rem;
  border: 1px solid var(--line);
  border-radius: 999px;
  color: var(--muted);
  white-space: nowrap;
}
#live::before {
  content: "";
  display: inline-block;
  width: 0.55rem;
  height: 0.55rem;
  margin-right: 0.4rem;
  border-radius: 50%;
  background: var(--muted);
  vertical-align: 0.05rem;
}
#live[data-status="live"] { color: var(--text); }
#live[data-status="live"]::before { background: var(--idle); }
#live[data-status="reconnecting"]::before { background: var(--busy); }
main { display: grid; gap: 1rem; padding-bottom: 2rem; }
main[data-stale] > section { opacity: 0.55; }
section {
  background: var(--panel);
  border: 1px solid var(--line);
  border-radius: 8px;
  padding: 0.75rem 1rem;
  min-width: 0;
}
.pair { display: grid; gap: 1rem; grid-template-columns: repeat(auto-fit, minmax(17rem, 1fr)); }
dl { margin: 0; }
dt { color: var(--muted); font-size: 0.8rem; }
dd { margin: 0; }
.figures {
  display: grid;
  gap: 0.75rem 1.5rem;
  grid-template-columns: repeat(auto-fit, minmax(7rem, 1fr));
}
.figures dd { font-size: 1.5rem; font-weight: 600; }
.figures .rate { grid-column: span 2; }
.rate dd { display: flex; align-items: flex-end; gap: 0.75rem; }
.rate svg {
  flex: 1;
  min-width: 6rem;
  height: 2.2rem;
  border-bottom: 1px solid var(--line);
}
.rate polyline { fill: none; stroke: var(--spark); stroke-width: 1.5; }
.rate polygon { fill: var(--spark-fill); stroke: none; }
.rate small { display: block; font-size: 0.7rem; font-weight: 400; color: var(--muted); }
#workers {
  list-style: none;
  margin: 0;
  padding: 0;
  display: grid;
  gap: 0.75rem;
  grid-template-columns: repeat(auto-fill, minmax(12.5rem, 1fr));
}
.tile {
  border: 1px solid var(--line);
  border-left: 4px solid var(--muted);
  border-radius: 6px;
  padding: 0.5rem 0.75rem;
  min-width: 0;
}
.tile:has([data-state="idle"]) { border-left-color: var(--idle); }
.tile:has([data-state="busy"]) { border-left-color: var(--busy); }
.tile:has([data-state="blocked"]) { border-left-color: var(--blocked); }
.tile:has([data-state="starting"]) { border-left-color: var(--starting); }
.tile-head { display: flex; justify-content: space-between; align-items: baseline; gap: 0.5rem; }
[data-state] { font-weight: 600; font-size: 0.85rem; }
[data-state="idle"] { color: var(--idle); }
[data-state="busy"] { color: var(--busy); }
[data-state="blocked"] { color: var(--blocked); }
[data-state="starting"] { color: var(--starting); }
.tile dl { display: flex; gap: 1rem; margin-top: 0.35rem; }
.tile dd { font-weight: 600; }
.oldest {
  margin: 0.35rem 0 0;
  font-size: 0.8rem;
  white-space: nowrap;
  overflow: hidden;
  text-overflow: ellipsis;
}
.oldest code { font: 0.8rem ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
.none { color: var(--muted); }
table { border-collapse: collapse; width: 100%; }
caption { caption-side: bottom; text-align: left; color: var(--muted); font-size: 0.75rem; padding-top: 0.35rem; }
th, td {
  padding: 0.2rem 0.4rem;
  text-align: right;
  white-space: nowrap;
  border-bottom: 1px solid var(--line);
}
th { font-weight: 500; color: var(--muted); font-size: 0.8rem; }
th[scope="row"] { text-align: left; color: var(--text); }
tbody tr:last-child > * { border-bottom: 0; }
#responses { display: grid; grid-template-columns: repeat(auto-fill, minmax(5rem, 1fr)); gap: 0.5rem 1rem; }
#responses dd { font-size: 1.2rem; font-weight: 600; }
#log { list-style: none; margin: 0; padding: 0; font-size: 0.85rem; }
#log li { display: flex; gap: 0.75rem; padding: 0.2rem 0; border-bottom: 1px solid var(--line); }
#log li:last-child { border-bottom: 0; }
#log time { color: var(--muted); flex: none; }
#log span { min-width: 0; overflow-wrap: anywhere; }
.sr-only {
  position: absolute;
  width: 1px;
  height: 1px;
  margin: -1px;
  padding: 0;
  overflow: hidden;
  clip: rect(0 0 0 0);
  white-space: nowrap;
  border: 0;
}
@media (max-width: 30rem) {
  header, main { padding-left: 0.5rem; padding-right: 0.5rem; }
  section { padding: 0.6rem 0.75rem; }
  .figures .rate { grid-column: 1 / -1; }
  .figures dd { font-size: 1.3rem; }
  #workers { grid-template-columns: 1fr; }
}
</style>
</head>
<body>
<header>
  <h1>brigade <span>pool</span></h1>
  <p id="live" role="status" data-status="connecting">connecting</p>
</header>
<main>
  <section aria-labelledby="h-pool">
    <h2 id="h-pool">Pool</h2>
    <dl class="figures">
      <div><dt>Queued</dt><dd id="queued">–</dd></div>
      <div><dt>Connections</dt><dd id="connections">–</dd></div>
      <div class="rate">
        <dt>Requests per second</dt>
        <dd>
          <span><span id="rps">–</span><small id="rps-peak">last 60 s</small></span>
          <svg id="spark" viewBox="0 0 119 32" preserveAspectRatio="none" role="img" aria-label="Requests per second over the last 60 seconds">
            <polygon id="spark-area" points=""/>
            <polyline id="spark-line" points="" vector-effect="non-scaling-stroke"/>
          </svg>
        </dd>
      </div>
      <div><dt>Workers replaced</dt><dd id="replaced">–</dd></div>
    </dl>
  </section>
  <section aria-labelledby="h-workers">
    <h2 id="h-workers">Workers</h2>
    <ul id="workers"></ul>
    <p id="no-workers" class="none">Waiting for the first figures…</p>
  </section>
  <div class="pair">
    <section aria-labelledby="h-latency">
      <h2 id="h-latency">Latency</h2>
      <table>
        <caption>Wait: in the queue for a worker. Run: on the worker. Over the most recent requests.</caption>
        <thead>
          <tr><td></td><th scope="col">p50</th><th scope="col">p90</th><th scope="col">p99</th><th scope="col">max</th></tr>
        </thead>
        <tbody>
          <tr data-figure="wait"><th scope="row">Wait</th><td>–</td><td>–</td><td>–</td><td>–</td></tr>
          <tr data-figure="run"><th scope="row">Run</th><td>–</td><td>–</td><td>–</td><td>–</td></tr>
        </tbody>
      </table>
    </section>
    <section aria-labelledby="h-responses">
      <h2 id="h-responses">Responses</h2>
      <dl id="responses"></dl>
      <p id="no-responses" class="none">None yet.</p>
    </section>
  </div>
  <section aria-labelledby="h-log">
    <h2 id="h-log">Log <span class="sr-only">(newest first, last 20)</span></h2>
    <ol id="log"></ol>
    <p id="no-log" class="none">Nothing logged yet.</p>
  </section>
</main>
<p id="announce" class="sr-only" aria-live="polite"></p>
<script>
"use strict";
(() => {
  const SAMPLES = 120;
  const LOG_LINES = 20;
  const RETRY_MS = 5000;
  const byId = (id) => document.getElementById(id);
  const main = document.querySelector("main");
  const live = byId("live");
  const announcer = byId("announce");
  const workerList = byId("workers");
  const tiles = new Map();
  const rates = [];
  let seenStats = false;

  const isNumber = (value) => typeof value === "number" && Number.isFinite(value);
  const count = (value) => (isNumber(value) ? Math.round(value).toLocaleString("en") : "–");
  function ms(value) {
    if (!isNumber(value)) return "–";
    if (value === 0) return "0 ms";
    if (value >= 10000) return (value / 1000).toFixed(0) + " s";
    if (value >= 1000) return (value / 1000).toFixed(1) + " s";
    if (value >= 10) return Math.round(value) + " ms";
    if (value >= 1) return value.toFixed(1) + " ms";
    return value.toFixed(2) + " ms";
  }
  function clock(time) {
    const date = new Date(isNumber(time) ? time : Date.now());
    return [date.getHours(), date.getMinutes(), date.getSeconds()]
      .map((part) => String(part).padStart(2, "0"))
      .join(":");
  }
  function element(tag, text, attributes) {
    const node = document.createElement(tag);
    if (text !== undefined) node.textContent = text;
    for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, value);
    return node;
  }
  function setText(node, text) {
    if (node.textContent !== text) node.textContent = text;
  }
  function setLive(status) {
    live.dataset.status = status;
    setText(live, status);
    if (status === "live") main.removeAttribute("data-stale");
    else main.setAttribute("data-stale", "");
  }

  function makeTile(id) {
    const tile = element("li", undefined, { class: "tile", "data-worker": String(id) });
    const head = element("div", undefined, { class: "tile-head" });
    head.append(element("h3", "Worker " + id), element("span", "", { "data-state": "" }));
    const figures = element("dl");
    const fields = {};
    for (const [key, label] of [["running", "Running"], ["completed", "Done"], ["failed", "Failed"]]) {
      const value = element("dd", "–", { "data-field": key });
      const pair = element("div");
      pair.append(element("dt", label), value);
      figures.append(pair);
      fields[key] = value;
    }
    const oldest = element("p", undefined, { class: "oldest", "data-field": "oldest" });
    tile.append(head, figures, oldest);
    return { tile, state: head.lastChild, fields, oldest, label: null, age: null };
  }

  function renderOldest(entry, oldest) {
    const label = oldest && typeof oldest.label === "string" ? oldest.label : null;
    if (label === null) {
      if (entry.label !== null || entry.age === null) {
        entry.oldest.replaceChildren(element("span", "no request running", { class: "none" }));
        entry.oldest.removeAttribute("title");
        entry.label = null;
        entry.age = "";
      }
      return;
    }
    if (entry.label !== label) {
      entry.label = label;
      entry.age = element("span");
      entry.oldest.replaceChildren(element("code", label), " · ", entry.age);
      entry.oldest.title = label;
    }
    setText(entry.age, ms(oldest.ageMs));
  }

  function renderWorkers(workers) {
    const changes = [];
    const present = new Set();
    workers.forEach((worker, index) => {
      const id = worker.id;
      present.add(id);
      let entry = tiles.get(id);
      if (!entry) {
        entry = makeTile(id);
        tiles.set(id, entry);
      }
      if (workerList.children[index] !== entry.tile) {
        workerList.insertBefore(entry.tile, workerList.children[index] || null);
      }
      const state = typeof worker.state === "string" ? worker.state : "unknown";
      if (entry.state.dataset.state !== state) {
        if (seenStats) changes.push("worker " + id + " " + state);
        entry.state.dataset.state = state;
        entry.state.textContent = state;
      }
      setText(entry.fields.running, count(worker.running));
      setText(entry.fields.completed, count(worker.completed));
      setText(entry.fields.failed, count(worker.failed));
      renderOldest(entry, worker.oldest);
    });
    for (const [id, entry] of tiles) {
      if (!present.has(id)) {
        entry.tile.remove();
        tiles.delete(id);
        if (seenStats) changes.push("worker " + id + " gone");
      }
    }
    byId("no-workers").hidden = workers.length > 0;
    if (workers.length === 0) setText(byId("no-workers"), "No workers.");
    if (changes.length > 0) announcer.textContent = changes.join(", ");
  }

  function renderRate(value) {
    rates.push(isNumber(value) ? value : 0);
    if (rates.length > SAMPLES) rates.shift();
    const peak = Math.max(...rates);
    const top = Math.max(1, peak);
    const offset = SAMPLES - rates.length;
    const points = rates.map((rate, index) =>
      (offset + index) + "," + (31 - (rate / top) * 29).toFixed(2)
    );
    byId("spark-line").setAttribute("points", points.join(" "));
    byId("spark-area").setAttribute(
      "points",
      rates.length > 1 ? points.join(" ") + " 119,32 " + offset + ",32" : "",
    );
    setText(byId("rps"), isNumber(value) ? value.toFixed(1) : "–");
    setText(byId("rps-peak"), "peak " + peak.toFixed(1) + " in 60 s");
    byId("spark").setAttribute(
      "aria-label",
      "Requests per second over the last 60 seconds, peak " + peak.toFixed(1),
    );
  }

  function renderPercentiles(name, figures) {
    const cells = document.querySelectorAll('[data-figure="' + name + '"] td');
    ["p50", "p90", "p99", "max"].forEach((key, index) => {
      setText(cells[index], ms(figures ? figures[key] : undefined));
    });
  }

  function renderResponses(responses) {
    const list = byId("responses");
    const classes = Object.keys(responses || {}).sort();
    const pairs = classes.map((key) => {
      const pair = element("div");
      pair.append(element("dt", key), element("dd", count(responses[key])));
      return pair;
    });
    list.replaceChildren(...pairs);
    byId("no-responses").hidden = classes.length > 0;
  }

  function renderStats(stats) {
    renderWorkers(Array.isArray(stats.workers) ? stats.workers : []);
    setText(byId("queued"), count(stats.queued));
    setText(byId("connections"), count(stats.connections));
    setText(byId("replaced"), count(stats.replaced));
    renderRate(stats.requestsPerSecond);
    renderPercentiles("wait", stats.wait);
    renderPercentiles("run", stats.run);
    renderResponses(stats.responses);
    seenStats = true;
  }

  function renderLog(entry) {
    const log = byId("log");
    const at = isNumber(entry.time) ? entry.time : Date.now();
    const message = String(entry.message ?? "");
    const key = at + " " + message;
    // Newest first. A stream that reconnects sends the lines it has again.
    let next = null;
    for (const item of log.children) {
      if (item.dataset.key === key) return;
      if (next === null && Number(item.dataset.time) < at) next = item;
    }
    const item = element("li", undefined, { "data-time": String(at), "data-key": key });
    const time = element("time", clock(at), { datetime: new Date(at).toISOString() });
    item.append(time, element("span", message));
    log.insertBefore(item, next);
    while (log.children.length > LOG_LINES) log.lastChild.remove();
    byId("no-log").hidden = true;
  }

  function handle(render) {
    return (event) => {
      let data;
      try {
        data = JSON.parse(event.data);
      } catch {
        console.warn("brigade dashboard: an event that is not JSON:", event.data);
        return;
      }
      if (data && typeof data === "object") render(data);
    };
  }

  function connect() {
    const source = new EventSource("events");
    source.addEventListener("open", () => setLive("live"));
    source.addEventListener("error", () => {
      setLive("reconnecting");
      // The browser retries by itself unless the answer was not an event
      // stream (a 404, say); then this page retries, less often.
      if (source.readyState === EventSource.CLOSED) setTimeout(connect, RETRY_MS);
    });
    source.addEventListener("stats", handle(renderStats));
    source.addEventListener("log", handle(renderLog));
  }

  connect();
})();
</script>
</body>
</html>
`;
