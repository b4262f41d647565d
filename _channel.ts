/**
 * A typed, two-way channel over one `MessagePort`: what one side sends with
 * `send()` arrives at the other side's `onMessage`. Transferables move rather
 * than copy.
 */
export class Channel<Send, Receive> {
  #port: MessagePort;

  /**
   * @param port One end of a `MessageChannel`.
   * @param onMessage Called with each message from the other end.
   */
  constructor(port: MessagePort, onMessage: (message: Receive) => void) {
    this.#port = port;
    port.onmessage = (event: MessageEvent<Receive>) => onMessage(event.data);
  }

  /** Posts `message`, moving the objects in `transfer` to the other side. */
  send(message: Send, transfer: Transferable[] = []): void {
    this.#port.postMessage(message, transfer);
  }

  /** Stops listening and closes the port; safe to call twice. */
  close(): void {
    this.#port.onmessage = null;
    this.#port.close();
  }
}
