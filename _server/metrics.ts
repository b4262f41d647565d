/**
 * The Prometheus text exposition (format 0.0.4) of a server's figures, for
 * `GET /_brigade/metrics` with `--metrics`.
 */

import type { HistogramSnapshot } from "../pool.ts";
import type { ServerStats } from "../main.ts";

/** Responses written, by status class ("2xx", "5xx", …). */
export type StatusCounts = Record<string, number>;

/** Counts a response's status in `counts` by class. */
export function countStatus(counts: StatusCounts, status: number): void {
  const statusClass = `${Math.floor(status / 100)}xx`;
  counts[statusClass] = (counts[statusClass] ?? 0) + 1;
}

/**
 * The figures of several server processes as one server's: counts and
 * histograms add up, and each percentile is the worst process's (percentiles
 * of different samples cannot be merged exactly).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { sumStats } from "./metrics.ts";
 *
 * const a = { workers: 2, responses: { "2xx": 3 }, runTime: { p50: 1, p90: 2, p99: 3, max: 4 } };
 * const b = { workers: 2, responses: { "2xx": 1, "5xx": 1 }, runTime: { p50: 2, p90: 2, p99: 2, max: 2 } };
 * assert.deepEqual(sumStats([a, b]), {
 *   workers: 4,
 *   responses: { "2xx": 4, "5xx": 1 },
 *   runTime: { p50: 2, p90: 2, p99: 3, max: 4 },
 * });
 * ```
 */
export function sumStats<T extends object>(list: [T, ...T[]]): T {
  const sum = (values: unknown[]): unknown => {
    const [first] = values;
    if (typeof first === "number") return (values as number[]).reduce((a, b) => a + b, 0);
    if (Array.isArray(first)) {
      return first.map((_, i) => sum(values.map((value) => (value as unknown[])[i])));
    }
    if (typeof first !== "object" || first === null) return first;
    const percentiles = "p50" in first;
    const keys = new Set(values.flatMap((value) => Object.keys(value as object)));
    return Object.fromEntries([...keys].map((key) => {
      const parts = values.map((value) => (value as Record<string, unknown>)[key] ?? 0);
      // Histogram bounds are the same everywhere; percentiles take the worst.
      if (key === "bounds") return [key, parts[0]];
      if (percentiles) return [key, (parts as number[]).reduce((a, b) => Math.max(a, b))];
      return [key, sum(parts)];
    }));
  };
  return sum(list) as T;
}

/** The exposition text: one HELP and TYPE per metric, then its samples. */
export function prometheusText(stats: ServerStats): string {
  const lines: string[] = [];
  const metric = (name: string, type: string, help: string, samples: string[]) => {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, ...samples);
  };
  metric(
    "brigade_responses_total",
    "counter",
    "Responses written, by status class.",
    Object.entries(stats.responses).sort().map(([statusClass, count]) =>
      `brigade_responses_total{class="${statusClass}"} ${count}`
    ),
  );
  metric("brigade_requests_in_flight", "gauge", "Requests given to workers and not yet answered.", [
    `brigade_requests_in_flight ${stats.requests}`,
  ]);
  metric("brigade_queue_depth", "gauge", "Requests waiting for a worker.", [
    `brigade_queue_depth ${stats.queued}`,
  ]);
  metric("brigade_connections", "gauge", "Open client connections.", [
    `brigade_connections ${stats.connections}`,
  ]);
  metric("brigade_websockets", "gauge", "Open WebSockets.", [
    `brigade_websockets ${stats.websockets}`,
  ]);
  metric("brigade_workers", "gauge", "Workers in the pool, by state.", [
    `brigade_workers{state="idle"} ${stats.idle}`,
    `brigade_workers{state="busy"} ${stats.busy}`,
    `brigade_workers{state="blocked"} ${stats.blocked}`,
  ]);
  metric("brigade_worker_restarts_total", "counter", "Workers replaced after a crash or a hang.", [
    `brigade_worker_restarts_total ${stats.replaced}`,
  ]);
  metric("brigade_jobs_total", "counter", "Requests the workers finished, by outcome.", [
    `brigade_jobs_total{outcome="completed"} ${stats.completed}`,
    `brigade_jobs_total{outcome="failed"} ${stats.failed}`,
  ]);
  histogram(
    lines,
    "brigade_queue_wait_seconds",
    "Time requests waited for a worker.",
    stats.waitHistogram,
  );
  histogram(
    lines,
    "brigade_run_seconds",
    "Time from a worker starting a request to its end.",
    stats.runHistogram,
  );
  return lines.join("\n") + "\n";
}

function histogram(lines: string[], name: string, help: string, h: HistogramSnapshot): void {
  lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} histogram`);
  h.bounds.forEach((bound, i) => lines.push(`${name}_bucket{le="${bound / 1000}"} ${h.counts[i]}`));
  const count = h.counts[h.counts.length - 1];
  lines.push(
    `${name}_bucket{le="+Inf"} ${count}`,
    `${name}_sum ${h.sum / 1000}`,
    `${name}_count ${count}`,
  );
}
