/**
 * A first-in, first-out queue with O(1) `push` and `shift`, used for the
 * pool's idle workers and waiting jobs, and for each connection's responses
 * in order. Array#shift is O(n), which matters once thousands of jobs wait.
 */
export class Queue<T> {
  #items: (T | undefined)[] = [];
  #head = 0;

  /** Number of items waiting. */
  get length(): number {
    return this.#items.length - this.#head;
  }

  /** Adds an item at the back. */
  push(item: T): void {
    this.#items.push(item);
  }

  /** Adds an item at the front, to be the next one out. */
  unshift(item: T): void {
    if (this.#head > 0) this.#items[--this.#head] = item;
    else this.#items.unshift(item);
  }

  /** Returns the item at the front without removing it. */
  peek(): T | undefined {
    return this.#items[this.#head];
  }

  /** Removes and returns the item at the front, or `undefined` when empty. */
  shift(): T | undefined {
    if (this.#head === this.#items.length) return undefined;
    const item = this.#items[this.#head];
    this.#items[this.#head++] = undefined;
    // Compact once the dead prefix dominates, so memory stays proportional
    // to what is waiting.
    if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return item;
  }

  /** Removes the first occurrence of `item`; returns whether it was found. */
  remove(item: T): boolean {
    const index = this.#items.indexOf(item, this.#head);
    if (index === -1) return false;
    this.#items.splice(index, 1);
    return true;
  }

  /** The item `index` places from the front, or `undefined`. */
  at(index: number): T | undefined {
    return this.#items[this.#head + index];
  }

  /** Removes and returns every item, front first. */
  drain(): T[] {
    const items = this.#items.slice(this.#head) as T[];
    this.#items = [];
    this.#head = 0;
    return items;
  }
}
