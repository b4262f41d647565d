/**
 * A typed, two-way channel over one `MessagePort`. Frames sent during one
 * event-loop turn are posted together as one envelope at the end of the turn,
 * and every envelope says how many the sender has received, so each side
 * knows what the other has processed.
 *
 * "The end of the turn" is a few microtask hops after the first frame, not
 * one: a job that sends its response and then returns reaches its `done`
 * frame through several awaits, and that frame should travel with the
 * response rather than in a second message.
 */

import type { Envelope } from "./protocol.ts";

/** Microtask hops between the first frame of a turn and the flush. */
const FLUSH_HOPS = 8;

/** One end of a framed channel. */
export class Channel<Send, Receive> {
  #port: MessagePort;
  #frames: Send[] = [];
  #transfer: Transferable[] = [];
  #scheduled = false;
  #forced = false;
  #sent = 0;
  #received = 0;

  /**
   * @param port One end of a `MessageChannel`.
   * @param onEnvelope Called with each envelope from the other end.
   */
  constructor(port: MessagePort, onEnvelope: (envelope: Envelope<Receive>) => void) {
    this.#port = port;
    port.onmessage = (event: MessageEvent<Envelope<Receive>>) => {
      this.#received++;
      onEnvelope(event.data);
    };
  }

  /** Envelopes posted so far. */
  get sent(): number {
    return this.#sent;
  }

  /** Queues `frame` for this turn's envelope, moving the objects in `transfer`. */
  send(frame: Send, transfer?: Transferable[]): void {
    this.#frames.push(frame);
    if (transfer) { for (const item of transfer) this.#transfer.push(item); }
    this.#schedule();
  }

  /** Makes sure an envelope goes out this turn, even an empty one (an acknowledgement). */
  acknowledge(): void {
    this.#forced = true;
    this.#schedule();
  }

  /** Posts what is queued now, without waiting for the end of the turn. */
  flush = (): void => {
    this.#scheduled = false;
    if (this.#frames.length === 0 && !this.#forced) return;
    const envelope: Envelope<Send> = { frames: this.#frames, seen: this.#received };
    // Frames may share a buffer (views of one slab): list each buffer once.
    const transfer = this.#transfer.length > 1 ? [...new Set(this.#transfer)] : this.#transfer;
    this.#frames = [];
    this.#forced = false;
    if (transfer.length > 0) this.#transfer = [];
    this.#sent++;
    this.#port.postMessage(envelope, transfer);
  };

  /** Stops listening and closes the port; safe to call twice. */
  close(): void {
    this.#frames = [];
    this.#forced = false;
    this.#port.onmessage = null;
    this.#port.close();
  }

  #schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    let hops = FLUSH_HOPS;
    const hop = () => {
      if (!this.#scheduled) return; // flushed early
      if (--hops > 0) queueMicrotask(hop);
      else this.flush();
    };
    queueMicrotask(hop);
  }
}
