/**
 * The static app's media types: the `Content-Type` of a file, by its
 * extension, with `charset=utf-8` on text.
 *
 * A table of the types a web site serves (as the `mime-db` package gives
 * them), in place of the whole `mime-types` package: loading
 * that npm package starts Deno's Node.js compatibility layer in every worker,
 * about 8 MB of RSS each, for a table of which a web server uses about 120
 * rows. An extension that is not here is served as `application/octet-stream`,
 * as nginx does with its own table of the same size.
 *
 * @module
 */

const UTF8 = "; charset=utf-8";

/** Each type, and the extensions that have it. Text types get {@linkcode UTF8}. */
const TABLE: Record<string, string> = {
  // Text
  "text/html": "html htm shtml",
  "text/css": "css",
  "text/javascript": "js mjs",
  "text/plain": "txt text conf log ini",
  "text/csv": "csv",
  "text/tab-separated-values": "tsv",
  "text/markdown": "md markdown",
  "text/calendar": "ics",
  "text/vcard": "vcard",
  "text/x-vcard": "vcf",
  "text/vtt": "vtt",
  "text/yaml": "yaml yml",
  "text/jsx": "jsx",
  "text/wgsl": "wgsl",
  "text/turtle": "ttl",
  "text/x-c": "c h cc cpp hh",
  "text/x-java-source": "java",
  "text/cache-manifest": "appcache manifest",
  // Documents and data
  "application/json": "json map",
  "application/manifest+json": "webmanifest",
  "application/ld+json": "jsonld",
  "application/geo+json": "geojson",
  "application/xml": "xml xsl xsd",
  "application/xslt+xml": "xslt",
  "application/rdf+xml": "rdf",
  "application/xhtml+xml": "xhtml",
  "application/atom+xml": "atom",
  "application/rss+xml": "rss",
  "application/toml": "toml",
  "application/wasm": "wasm",
  "application/pdf": "pdf",
  "application/rtf": "rtf",
  "application/epub+zip": "epub",
  "application/postscript": "ps eps",
  "application/msword": "doc",
  "application/vnd.ms-excel": "xls",
  "application/vnd.ms-powerpoint": "ppt",
  "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
  "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
  "application/vnd.openxmlformats-officedocument.presentationml.presentation": "pptx",
  "application/vnd.oasis.opendocument.text": "odt",
  "application/vnd.oasis.opendocument.spreadsheet": "ods",
  "application/vnd.oasis.opendocument.presentation": "odp",
  "application/vnd.apple.mpegurl": "m3u8",
  "application/dash+xml": "mpd",
  "application/gpx+xml": "gpx",
  "application/vnd.google-earth.kml+xml": "kml",
  // Archives and binaries
  "application/zip": "zip",
  "application/gzip": "gz",
  "application/x-tar": "tar",
  "application/x-bzip2": "bz2",
  "application/x-xz": "xz",
  "application/x-7z-compressed": "7z",
  "application/vnd.rar": "rar",
  "application/java-archive": "jar",
  "application/vnd.android.package-archive": "apk",
  "application/x-msdos-program": "exe",
  "application/x-msdownload": "msi",
  "application/x-x509-ca-cert": "pem crt der",
  "application/x-subrip": "srt",
  "application/x-apple-diskimage": "dmg",
  "application/x-iso9660-image": "iso",
  "application/x-debian-package": "deb",
  "application/x-bittorrent": "torrent",
  "application/octet-stream": "bin",
  // Images
  "image/png": "png",
  "image/apng": "apng",
  "image/jpeg": "jpg jpeg jpe",
  "image/gif": "gif",
  "image/webp": "webp",
  "image/avif": "avif",
  "image/jxl": "jxl",
  "image/heic": "heic",
  "image/heif": "heif",
  "image/jp2": "jp2",
  "image/svg+xml": "svg svgz",
  "image/vnd.microsoft.icon": "ico",
  "image/bmp": "bmp",
  "image/tiff": "tif tiff",
  // Fonts
  "font/woff": "woff",
  "font/woff2": "woff2",
  "font/ttf": "ttf",
  "font/otf": "otf",
  "application/vnd.ms-fontobject": "eot",
  // Audio
  "audio/mpeg": "mp3",
  "audio/ogg": "ogg oga opus",
  "audio/wav": "wav",
  "audio/webm": "weba",
  "audio/aac": "aac",
  "audio/mp4": "m4a",
  "audio/x-flac": "flac",
  "audio/x-mpegurl": "m3u",
  "audio/midi": "mid midi",
  // Video and 3D
  "video/mp4": "mp4",
  "video/x-m4v": "m4v",
  "video/webm": "webm",
  "video/ogg": "ogv",
  "video/mpeg": "mpeg mpg",
  "video/quicktime": "mov",
  "video/x-msvideo": "avi",
  "video/x-matroska": "mkv",
  "video/3gpp": "3gp",
  "video/mp2t": "ts mts",
  "model/gltf-binary": "glb",
  "model/gltf+json": "gltf",
  "model/vnd.usdz+zip": "usdz",
};

/** Types that are text without being `text/*`. */
const TEXTUAL = new Set(["application/json", "application/manifest+json"]);

const BY_EXTENSION = new Map<string, string>();
for (const [type, extensions] of Object.entries(TABLE)) {
  const value = type.startsWith("text/") || TEXTUAL.has(type) ? type + UTF8 : type;
  for (const extension of extensions.split(" ")) BY_EXTENSION.set(extension, value);
}

/**
 * The `Content-Type` for a file name, from its extension (case-insensitive),
 * or `undefined` when the table has no type for it.
 *
 * @example A text type gets a charset; an unknown extension gets nothing
 * ```ts
 * import assert from "node:assert/strict";
 * import { contentType } from "./media_types.ts";
 *
 * assert.equal(contentType("index.HTML"), "text/html; charset=utf-8");
 * assert.equal(contentType("logo.png"), "image/png");
 * assert.equal(contentType("archive.unknown"), undefined);
 * assert.equal(contentType("README"), undefined);
 * ```
 */
export function contentType(name: string): string | undefined {
  const dot = name.lastIndexOf(".");
  if (dot < 0) return undefined;
  return BY_EXTENSION.get(name.slice(dot + 1).toLowerCase());
}
