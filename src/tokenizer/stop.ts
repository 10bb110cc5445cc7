/**
 * Stop strings over streamed text. Text that could still turn into a stop string is held back, so a
 * client never receives part of a stop sequence; the stop string itself is not returned (OpenAI).
 */
export class StopMatcher {
  private pending = ''
  private readonly holdBack: number

  constructor(private readonly stops: readonly string[]) {
    this.holdBack = stops.reduce((m, s) => Math.max(m, s.length), 0) - 1
  }

  /**
   * Feed new text; returns the text safe to emit and whether a stop string was hit. With `match`
   * false (vLLM's min_tokens not reached yet) no stop string is looked for, but the tail is still
   * held back: a stop string that begins in it and ends in later, matched text does stop the request.
   */
  push(text: string, match = true): { text: string; stopped: boolean } {
    if (this.stops.length === 0) return { text, stopped: false }
    // Held-back text had no match (or was not to be matched), so a new match must end inside the new text.
    const before = this.pending.length
    this.pending += text
    let at = -1
    if (match) {
      for (const s of this.stops) {
        if (s.length === 0) continue
        const i = this.pending.indexOf(s, Math.max(0, before - s.length + 1))
        if (i >= 0 && (at < 0 || i < at)) at = i
      }
    }
    if (at >= 0) {
      const out = this.pending.slice(0, at)
      this.pending = ''
      return { text: out, stopped: true }
    }
    const keep = Math.min(this.pending.length, Math.max(0, this.holdBack))
    const out = this.pending.slice(0, this.pending.length - keep)
    this.pending = this.pending.slice(this.pending.length - keep)
    return { text: out, stopped: false }
  }

  /** The request finished for another reason: release what was held back. */
  flush(): string {
    const out = this.pending
    this.pending = ''
    return out
  }
}
