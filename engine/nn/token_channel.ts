/**
 * A one-consumer queue of token ids between a producer (the batcher's decode loop) and an async iterator: `push`
 * never blocks, `close` ends the iteration once the pushed ids are read, `fail` ends it with an error.
 * @module
 */

/** Token ids pushed by one side, read with `for await` by the other. */
export class TokenChannel implements AsyncIterable<number> {
  readonly #buffer: number[] = [];
  #closed = false;
  #error: Error | undefined;
  #wake: (() => void) | undefined;

  /** Adds an id (ignored once closed). */
  push(id: number): void {
    if (this.#closed) return;
    this.#buffer.push(id);
    this.#notify();
  }

  /** Ends the iteration after the ids already pushed. */
  close(): void {
    this.#closed = true;
    this.#notify();
  }

  /** Ends the iteration with `error` (after the ids already pushed). */
  fail(error: Error): void {
    if (this.#closed) return;
    this.#error = error;
    this.close();
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<number> {
    for (;;) {
      if (this.#buffer.length) {
        yield this.#buffer.shift()!;
        continue;
      }
      if (this.#closed) {
        if (this.#error) throw this.#error;
        return;
      }
      await new Promise<void>((resolve) => this.#wake = resolve);
    }
  }
}
