/**
 * HTTP/1.1 wire-format pieces shared by the accept loop (main thread) and the
 * workers: status texts, the `Date` header, canned error responses, and the
 * strict request-head parser (RFC 9112).
 */

/** Reason phrases for the statuses brigade sends. */
export const STATUS_TEXT: Readonly<Record<number, string>> = {
  100: "Continue",
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

let dateSecond = -1;
let dateLine = "";
let dateLineBytes = new Uint8Array(0);

function refreshDate(): void {
  const now = Date.now();
  const second = Math.floor(now / 1000);
  if (second !== dateSecond) {
    dateSecond = second;
    dateLine = `date: ${new Date(second * 1000).toUTCString()}\r\n`;
    dateLineBytes = encoder.encode(dateLine);
  }
}

/** The `date: …\r\n` header line for this second, computed once a second. */
export function dateHeaderLine(): string {
  refreshDate();
  return dateLine;
}

/** {@linkcode dateHeaderLine} as bytes, encoded once a second. */
export function dateHeaderBytes(): Uint8Array {
  refreshDate();
  return dateLineBytes;
}

/** Options for {@linkcode plainResponse}. */
export interface PlainResponseOptions {
  /** Adds `connection: close`. */
  close?: boolean;
  /** Extra header lines, each without CRLF. */
  headers?: string[];
  /** Leaves the body out but keeps its length, for HEAD. */
  head?: boolean;
}

/**
 * A complete short `text/plain` response, for errors found before a handler
 * runs (bad framing, timeouts, overload).
 */
export function plainResponse(
  status: number,
  message: string = STATUS_TEXT[status] ?? "Error",
  options: PlainResponseOptions = {},
): Uint8Array {
  return textResponse(status, `${message}\n`, "text/plain; charset=utf-8", options);
}

/** A complete response whose body is `body`, encoded as UTF-8. */
export function textResponse(
  status: number,
  body: string,
  contentType: string,
  options: PlainResponseOptions = {},
): Uint8Array {
  const length = encoder.encode(body).length;
  let head = `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? "Unknown"}\r\n` +
    `content-type: ${contentType}\r\ncontent-length: ${length}\r\n` + dateHeaderLine();
  for (const line of options.headers ?? []) head += `${line}\r\n`;
  if (options.close) head += "connection: close\r\n";
  return encoder.encode(head + "\r\n" + (options.head ? "" : body));
}

/** A parsed request head: request line and fields. */
export interface RequestHead {
  method: string;
  /** The request-target as sent. */
  target: string;
  /** The path and query, from origin-form or absolute-form; `*` for asterisk-form. */
  path: string;
  /** Host from the absolute-form target, else from the Host field. */
  host: string;
  /** 0 for HTTP/1.0, 1 for HTTP/1.1. */
  minor: number;
  /** Field names lower-cased and values trimmed: [name, value, name, value, …]. */
  fields: string[];
  /** Whether the connection stays open after this exchange. */
  keepAlive: boolean;
}

/** A head the server must refuse, with the status to send. */
export interface HeadError {
  status: number;
  message: string;
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
// Field values: visible ASCII, obs-text, space and tab. No CR, LF or NUL.
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
const VERSION = /^HTTP\/(\d)\.(\d)$/;
const HOST = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]*)(?::\d*)?$/;
const ABSOLUTE = /^[hH][tT][tT][pP][sS]?:\/\/([^/?#]*)([^#]*)$/;

/**
 * Parses and validates a request head (request line and fields, CRLF
 * separated, without the final empty line).
 *
 * @returns The head, or the status to refuse it with.
 */
export function parseHead(text: string): RequestHead | HeadError {
  let lineEnd = text.indexOf("\r\n");
  if (lineEnd === -1) lineEnd = text.length;
  const requestLine = text.slice(0, lineEnd);
  const sp1 = requestLine.indexOf(" ");
  const sp2 = requestLine.indexOf(" ", sp1 + 1);
  if (sp1 <= 0 || sp2 === -1 || requestLine.indexOf(" ", sp2 + 1) !== -1) {
    return { status: 400, message: "Malformed request line" };
  }
  const method = requestLine.slice(0, sp1);
  const target = requestLine.slice(sp1 + 1, sp2);
  const version = VERSION.exec(requestLine.slice(sp2 + 1));
  if (!TOKEN.test(method)) return { status: 400, message: "Malformed method" };
  if (version === null) return { status: 400, message: "Malformed HTTP version" };
  if (version[1] !== "1") return { status: 505, message: "Only HTTP/1.x is supported" };
  const minor = version[2] === "0" ? 0 : 1;

  const fields: string[] = [];
  let hostField: string | undefined;
  let hostCount = 0;
  let connection = "";
  let start = lineEnd + 2;
  while (start < text.length) {
    let end = text.indexOf("\r\n", start);
    if (end === -1) end = text.length;
    const colon = text.indexOf(":", start);
    if (colon === -1 || colon >= end) {
      return { status: 400, message: "Header line without a colon" };
    }
    if (colon === start) return { status: 400, message: "Empty header name" };
    const first = text.charCodeAt(start);
    if (first === 0x20 || first === 0x09) {
      return { status: 400, message: "Obsolete line folding is not accepted" };
    }
    const name = text.slice(start, colon);
    if (!TOKEN.test(name)) return { status: 400, message: "Invalid header name" };
    const value = text.slice(colon + 1, end).replace(/^[ \t]+|[ \t]+$/g, "");
    if (!FIELD_VALUE.test(value)) return { status: 400, message: "Invalid header value" };
    const lower = name.toLowerCase();
    fields.push(lower, value);
    if (lower === "host") {
      hostCount++;
      hostField = value;
    } else if (lower === "connection") {
      connection += "," + value.toLowerCase();
    }
    start = end + 2;
  }

  if (hostCount > 1) return { status: 400, message: "Duplicate Host header" };
  if (hostField !== undefined && !HOST.test(hostField)) {
    return { status: 400, message: "Invalid Host header" };
  }
  if (minor === 1 && hostField === undefined) {
    return { status: 400, message: "Missing Host header" };
  }

  let path: string;
  let host = hostField ?? "";
  if (target.charCodeAt(0) === 0x2f) {
    path = target;
  } else if (target === "*" && method === "OPTIONS") {
    path = "*";
  } else {
    const absolute = ABSOLUTE.exec(target);
    if (absolute === null || !HOST.test(absolute[1]) || absolute[1] === "") {
      return { status: 400, message: "Malformed request target" };
    }
    host = absolute[1];
    path = absolute[2] === "" ? "/" : absolute[2];
    if (path.charCodeAt(0) !== 0x2f) path = "/" + path;
  }
  // Visible ASCII only, and no fragment: a request-target never carries one.
  if (!/^[\x21-\x22\x24-\x7e]+$/.test(target)) {
    return { status: 400, message: "Malformed request target" };
  }

  const keepAlive = minor === 1
    ? !hasToken(connection, "close")
    : hasToken(connection, "keep-alive") && !hasToken(connection, "close");
  return { method, target, path, host, minor, fields, keepAlive };
}

/** Whether a comma-separated list (lower-cased) holds `token`. */
export function hasToken(list: string, token: string): boolean {
  if (list === "") return false;
  for (const item of list.split(",")) {
    if (item.trim() === token) return true;
  }
  return false;
}

/** Returns the first value of field `name` (lower-case), or `undefined`. */
export function field(head: RequestHead, name: string): string | undefined {
  const fields = head.fields;
  for (let i = 0; i < fields.length; i += 2) {
    if (fields[i] === name) return fields[i + 1];
  }
  return undefined;
}
