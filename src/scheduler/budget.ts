/**
 * KV cache accounting in tokens: a request reserves prompt + max_tokens when admitted and returns
 * them when it finishes or is aborted, so admitted requests never run out of cache mid-decode.
 */
export class KvBudget {
  private used = 0

  constructor(readonly total: number) {}

  get usedTokens(): number {
    return this.used
  }

  fits(tokens: number): boolean {
    return this.used + tokens <= this.total
  }

  take(tokens: number): void {
    this.used += tokens
  }

  give(tokens: number): void {
    this.used = Math.max(0, this.used - tokens)
  }

  reset(): void {
    this.used = 0
  }
}
