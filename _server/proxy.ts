/**
 * The client behind one trusted reverse proxy (--trust-proxy): its address
 * and scheme from `X-Forwarded-For` and `X-Forwarded-Proto`, the fields
 * nginx, Caddy and HAProxy set. Only their last element counts: it is the one
 * the proxy added, while anything before it came from the client and may be
 * forged. `Forwarded` (RFC 7239) is ignored: those proxies pass a client's
 * own `Forwarded` through untouched, so believing it would let any client
 * choose its address.
 */

import { trimOWS } from "../_shared/http.ts";

/** What the proxy said about its client; fields it did not say are absent. */
export interface ForwardedClient {
  host?: string;
  proto?: "http" | "https";
}

/**
 * Reads the proxy's account of its client from a request's fields
 * (lower-case names and values, alternating).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { forwardedClient } from "./proxy.ts";
 *
 * const fields = ["x-forwarded-for", "10.0.0.9, 203.0.113.7", "x-forwarded-proto", "https"];
 * assert.deepEqual(forwardedClient(fields), { host: "203.0.113.7", proto: "https" });
 * ```
 */
export function forwardedClient(fields: string[]): ForwardedClient {
  let forwardedFor: string | undefined;
  let forwardedProto: string | undefined;
  for (let i = 0; i < fields.length; i += 2) {
    // Repeated fields form one list (RFC 9110 §5.3): the last line holds its end.
    if (fields[i] === "x-forwarded-for") forwardedFor = fields[i + 1];
    else if (fields[i] === "x-forwarded-proto") forwardedProto = fields[i + 1];
  }
  const client: ForwardedClient = {};
  if (forwardedFor !== undefined) {
    const host = lastElement(forwardedFor);
    if (isIpAddress(host)) client.host = host;
  }
  if (forwardedProto !== undefined) {
    const proto = lastElement(forwardedProto).toLowerCase();
    if (proto === "http" || proto === "https") client.proto = proto;
  }
  return client;
}

/** The list's last element without its optional whitespace. */
function lastElement(list: string): string {
  return trimOWS(list.slice(list.lastIndexOf(",") + 1));
}

const IPV4 = /^(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)$/;

/** A dotted IPv4 address, or an IPv6 address as the URL parser accepts one. */
function isIpAddress(host: string): boolean {
  if (IPV4.test(host)) return true;
  if (!/^[0-9a-fA-F:.]{2,45}$/.test(host) || !host.includes(":")) return false;
  try {
    new URL(`http://[${host}]/`);
    return true;
  } catch {
    return false;
  }
}
