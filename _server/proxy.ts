/**
 * The client behind one trusted reverse proxy (--trust-proxy): its address
 * and scheme from `Forwarded` (RFC 7239) or `X-Forwarded-For` /
 * `X-Forwarded-Proto`. Only the last element counts: it is the one the
 * proxy added, while anything before it came from the client and may be
 * forged.
 */

/** What the proxy said about its client; fields it did not say are absent. */
export interface ForwardedClient {
  host?: string;
  port?: number;
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
  let forwarded: string | undefined;
  let forwardedFor: string | undefined;
  let forwardedProto: string | undefined;
  for (let i = 0; i < fields.length; i += 2) {
    switch (fields[i]) {
      case "forwarded":
        forwarded = fields[i + 1];
        break;
      case "x-forwarded-for":
        forwardedFor = fields[i + 1];
        break;
      case "x-forwarded-proto":
        forwardedProto = fields[i + 1];
        break;
    }
  }
  const client: ForwardedClient = {};
  if (forwarded !== undefined) {
    for (const pair of lastElement(forwarded).split(";")) {
      const eq = pair.indexOf("=");
      if (eq === -1) continue;
      const key = pair.slice(0, eq).trim().toLowerCase();
      const value = pair.slice(eq + 1).trim().replace(/^"(.*)"$/, "$1");
      if (key === "for") Object.assign(client, address(value));
      else if (key === "proto") client.proto = scheme(value);
    }
  } else if (forwardedFor !== undefined) {
    Object.assign(client, address(lastElement(forwardedFor)));
  }
  if (client.proto === undefined && forwardedProto !== undefined) {
    client.proto = scheme(lastElement(forwardedProto));
  }
  if (client.proto === undefined) delete client.proto;
  return client;
}

function lastElement(list: string): string {
  return list.slice(list.lastIndexOf(",") + 1).trim();
}

function scheme(value: string): "http" | "https" | undefined {
  const lower = value.toLowerCase();
  return lower === "http" || lower === "https" ? lower : undefined;
}

const IPV4 = /^(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)$/;
const IPV6 = /^[0-9a-f:.]{2,45}$/i;

/** An IP address, with a port when given (`1.2.3.4:80`, `[::1]:80`); nothing for anything else. */
function address(value: string): { host?: string; port?: number } {
  let host = value;
  let port: number | undefined;
  const bracketed = /^\[([^\]]+)\](?::(\d{1,5}))?$/.exec(value);
  if (bracketed) {
    host = bracketed[1];
    if (bracketed[2] !== undefined) port = Number(bracketed[2]);
  } else {
    const withPort = /^([^:]+):(\d{1,5})$/.exec(value);
    if (withPort) [host, port] = [withPort[1], Number(withPort[2])];
  }
  const valid = IPV4.test(host) || (host.includes(":") && IPV6.test(host));
  if (!valid || (port !== undefined && port > 65535)) return {};
  return port === undefined ? { host } : { host, port };
}
