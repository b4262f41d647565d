/**
 * A growable byte buffer for building one message: requests into a batch on
 * the main thread, responses into a reply on a worker. `take()` hands the
 * bytes over (to be transferred) and starts a fresh buffer sized like the
 * last one, so steady traffic allocates one small buffer per batch.
 */

const encoder = new TextEncoder();

/** Appends bytes and strings into one `ArrayBuffer`. */
export class ByteWriter {
  #buf: Uint8Array<ArrayBuffer>;
  #length = 0;
  #minimum: number;

  /** @param capacity Initial size in bytes. */
  constructor(capacity = 4096) {
    this.#minimum = capacity;
    this.#buf = new Uint8Array(capacity);
  }

  /** Bytes written since the last `take()`. */
  get length(): number {
    return this.#length;
  }

  /** Appends `bytes`. */
  write(bytes: Uint8Array): void {
    this.#reserve(bytes.length);
    this.#buf.set(bytes, this.#length);
    this.#length += bytes.length;
  }

  /** Appends `text` as UTF-8. */
  writeString(text: string): void {
    // UTF-8 needs at most 3 bytes per UTF-16 unit.
    this.#reserve(text.length * 3);
    const { written } = encoder.encodeInto(text, this.#buf.subarray(this.#length));
    this.#length += written;
  }

  /** Returns what was written, and starts a new buffer for the next message. */
  take(): Uint8Array<ArrayBuffer> {
    const bytes = this.#buf.subarray(0, this.#length);
    const next = Math.max(this.#minimum, Math.min(this.#length * 2, 1 << 20));
    this.#buf = new Uint8Array(next);
    this.#length = 0;
    return bytes;
  }

  #reserve(extra: number): void {
    const needed = this.#length + extra;
    if (needed <= this.#buf.length) return;
    const grown = new Uint8Array(Math.max(needed, this.#buf.length * 2));
    grown.set(this.#buf.subarray(0, this.#length));
    this.#buf = grown;
  }
}
