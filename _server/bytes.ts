/** Byte lists on the main thread: what a connection writes, what a WebSocket message is made of. */

/** The total length of `parts`. */
export function totalOf(parts: Uint8Array[]): number {
  let total = 0;
  for (const part of parts) total += part.length;
  return total;
}

/** `parts` as one array: the only part itself, or a copy of them all in order. */
export function concat(parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  if (parts.length === 1 && parts[0].buffer instanceof ArrayBuffer) {
    return parts[0] as Uint8Array<ArrayBuffer>;
  }
  const out = new Uint8Array(totalOf(parts));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}
