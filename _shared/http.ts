/**
 * HTTP/1.1 wire pieces used on both sides of the channel: reason phrases, the
 * `Date` header, byte-exact (latin1) encoding of header text, and the one
 * function that builds every response head, whether a worker answers or the
 * main thread does.
 */

/** Reason phrases for the statuses brigade sends. */
export const STATUS_TEXT: Readonly<Record<number, string>> = {
  100: "Continue",
  101: "Switching Protocols",
  200: "OK",
  201: "Created",
  204: "No Content",
  206: "Partial Content",
  301: "Moved Permanently",
  302: "Found",
  304: "Not Modified",
  307: "Temporary Redirect",
  308: "Permanent Redirect",
  400: "Bad Request",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  408: "Request Timeout",
  411: "Length Required",
  412: "Precondition Failed",
  413: "Content Too Large",
  414: "URI Too Long",
  416: "Range Not Satisfiable",
  417: "Expectation Failed",
  431: "Request Header Fields Too Large",
  500: "Internal Server Error",
  501: "Not Implemented",
  502: "Bad Gateway",
  503: "Service Unavailable",
  504: "Gateway Timeout",
  505: "HTTP Version Not Supported",
};

/** Shared UTF-8 encoder. */
export const encoder: TextEncoder = new TextEncoder();

/**
 * Decodes header bytes one byte to one UTF-16 unit (isomorphic decode), as
 * RFC 9110 asks. TextDecoder("latin1") is windows-1252, which remaps 0x80–0x9f.
 */
export function isomorphicDecode(bytes: Uint8Array): string {
  let text = "";
  for (let i = 0; i < bytes.length; i += 4096) {
    text += String.fromCharCode.apply(
      null,
      bytes.subarray(i, i + 4096) as unknown as number[],
    );
  }
  return text;
}

/**
 * Encodes header text one UTF-16 unit to one byte (the inverse of
 * {@linkcode isomorphicDecode}): header values are byte strings, so `café`
 * received as UTF-8 bytes goes out as the same bytes.
 */
export function isomorphicEncode(text: string, into?: Uint8Array, at = 0): Uint8Array {
  const out = into ?? new Uint8Array(text.length);
  // Native and fast for ASCII, the usual case: one byte per unit read.
  const { read, written } = encoder.encodeInto(text, out.subarray(at, at + text.length));
  if (read === text.length && written === text.length) return out;
  for (let i = 0; i < text.length; i++) out[at + i] = text.charCodeAt(i);
  return out;
}

let dateSecond = -1;
let dateLine = "";

/** The `date: …\r\n` header line for this second, computed once a second. */
export function dateHeaderLine(): string {
  const second = Math.floor(Date.now() / 1000);
  if (second !== dateSecond) {
    dateSecond = second;
    dateLine = `date: ${new Date(second * 1000).toUTCString()}\r\n`;
  }
  return dateLine;
}

/** How a response body is delimited on the wire. */
export type BodyFraming =
  /** `content-length: n`. */
  | number
  /** `transfer-encoding: chunked` (HTTP/1.1 only). */
  | "chunked"
  /** No length: the body ends when the connection closes (HTTP/1.0 streams). */
  | "close"
  /** No body and no length (1xx, 204, 304, or a HEAD answer of unknown length). */
  | "none";

/** What {@linkcode responseHead} needs to know. */
export interface ResponseHead {
  status: number;
  /** Reason phrase; the standard one when empty. */
  statusText?: string;
  /** Header lines, each `name: value\r\n`, without framing, date or connection fields. */
  fields: string;
  framing: BodyFraming;
  /** Close the connection after this response. */
  close: boolean;
  /** The request's minor version: HTTP/1.0 keep-alive must be said out loud. */
  minor: number;
  /** A `101` to this protocol (`websocket`): says `upgrade` and `connection: upgrade`. */
  upgrade?: string;
}

/**
 * Builds a response head, the final empty line included. Every response
 * brigade sends starts with bytes from here.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { responseHead } from "./http.ts";
 *
 * const head = responseHead({ status: 404, fields: "", framing: 0, close: true, minor: 1 });
 * assert.match(head, /^HTTP\/1\.1 404 Not Found\r\ncontent-length: 0\r\ndate: .*\r\nconnection: close\r\n\r\n$/);
 * ```
 */
export function responseHead(head: ResponseHead): string {
  const reason = head.statusText || STATUS_TEXT[head.status] || "Unknown";
  let text = `HTTP/1.1 ${head.status} ${reason}\r\n${head.fields}`;
  const framing = head.framing;
  if (typeof framing === "number") text += `content-length: ${framing}\r\n`;
  else if (framing === "chunked") text += "transfer-encoding: chunked\r\n";
  text += dateHeaderLine();
  if (head.upgrade !== undefined) text += `upgrade: ${head.upgrade}\r\nconnection: upgrade\r\n`;
  else if (head.close || framing === "close") text += "connection: close\r\n";
  else if (head.minor === 0) text += "connection: keep-alive\r\n";
  return text + "\r\n";
}

/** Options for {@linkcode plainResponse}. */
export interface PlainResponseOptions {
  /** Adds `connection: close`. */
  close?: boolean;
  /** Extra header lines, each without CRLF. */
  headers?: string[];
  /** The head only (a HEAD answer): `content-length` still counts the body. */
  headOnly?: boolean;
}

/**
 * A complete short `text/plain` response, for answers the main thread gives
 * itself (bad framing, timeouts, overload).
 */
export function plainResponse(
  status: number,
  message: string = STATUS_TEXT[status] ?? "Error",
  options: PlainResponseOptions = {},
): Uint8Array {
  return textResponse(status, `${message}\n`, "text/plain; charset=utf-8", options);
}

/** A complete response whose body is `body` (text is encoded as UTF-8). */
export function textResponse(
  status: number,
  body: string | Uint8Array,
  contentType: string,
  options: PlainResponseOptions = {},
): Uint8Array {
  const bytes = typeof body === "string" ? encoder.encode(body) : body;
  let fields = `content-type: ${contentType}\r\n`;
  for (const line of options.headers ?? []) fields += `${line}\r\n`;
  const head = responseHead({
    status,
    fields,
    framing: bytes.length,
    close: options.close ?? false,
    minor: 1,
  });
  if (options.headOnly) return isomorphicEncode(head);
  const out = new Uint8Array(head.length + bytes.length);
  isomorphicEncode(head, out);
  out.set(bytes, head.length);
  return out;
}

/**
 * Strips optional whitespace (SP and HTAB, RFC 9110 §5.6.3) and nothing
 * else, in linear time: `String#trim` would also strip U+00A0, which a strict
 * parser keeps.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { trimOWS } from "./http.ts";
 *
 * assert.equal(trimOWS(" \tchunked\xa0 "), "chunked\xa0");
 * ```
 */
export function trimOWS(text: string): string {
  let start = 0;
  let end = text.length;
  while (start < end && (text[start] === " " || text[start] === "\t")) start++;
  while (end > start && (text[end - 1] === " " || text[end - 1] === "\t")) end--;
  return text.slice(start, end);
}
