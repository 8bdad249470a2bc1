/**
 * A token budget shared by any number of calls (a session, a user, a job).
 *
 * It counts completion tokens: one per text delta as the deltas arrive, corrected from the
 * server's `usage.completion_tokens` when a stream ends with usage. A call started with an empty
 * budget throws {@link BudgetExceededError} before sending anything; a stream that would go past
 * the budget stops at it, aborts its request and throws {@link BudgetExceededError} with the text
 * delivered so far. Each call also asks the server for at most `remaining` tokens (`max_tokens`).
 *
 * JavaScript runs one callback at a time, so concurrent streams sharing a budget need no lock.
 */
export class Budget {
  readonly total: number;
  #used = 0;

  constructor(totalTokens: number) {
    if (!Number.isFinite(totalTokens) || totalTokens < 0) {
      throw new RangeError(`Budget: totalTokens must be a finite number >= 0, got ${totalTokens}`);
    }
    this.total = Math.floor(totalTokens);
  }

  /** Tokens charged so far (may exceed `total` by a little when usage corrects an estimate upwards). */
  get used(): number {
    return this.#used;
  }

  get remaining(): number {
    return Math.max(0, this.total - this.#used);
  }

  get exhausted(): boolean {
    return this.#used >= this.total;
  }

  /** Charge `n` tokens if they fit; false (and nothing charged) when they do not. */
  tryConsume(n = 1): boolean {
    if (this.#used + n > this.total) return false;
    this.#used += n;
    return true;
  }

  /** Charge `n` tokens unconditionally (negative refunds). Used to reconcile estimates with usage. */
  charge(n: number): void {
    this.#used = Math.max(0, this.#used + n);
  }

  reset(): void {
    this.#used = 0;
  }
}
