/**
 * Incremental detokenization with a prefix offset and a read offset (as TGI and vLLM do): decode a
 * short window of recent tokens twice and emit only the difference, and hold back text that ends in
 * an incomplete UTF-8 character (U+FFFD) until the next token completes it. When the generation
 * ends, flush() releases what is still held back as decode renders it, so the text is the decode
 * of all the ids, a trailing U+FFFD included (as transformers' decode gives it).
 */
export interface Decoder {
  decode(ids: readonly number[]): string
}

export class IncrementalDetokenizer {
  private readonly ids: number[] = []
  private prefixOffset = 0
  private readOffset = 0

  constructor(private readonly decoder: Decoder) {}

  /** Append one token; returns the new text (possibly empty). */
  push(token: number): string {
    this.ids.push(token)
    const prefix = this.decoder.decode(this.ids.slice(this.prefixOffset, this.readOffset))
    const full = this.decoder.decode(this.ids.slice(this.prefixOffset))
    if (full.length > prefix.length && !full.endsWith('\uFFFD')) {
      this.prefixOffset = this.readOffset
      this.readOffset = this.ids.length
      return full.slice(prefix.length)
    }
    return ''
  }

  /**
   * The generation ended: the text held back (an incomplete character, rendered U+FFFD as decode
   * renders it), and nothing held back after it.
   */
  flush(): string {
    if (this.readOffset === this.ids.length) return ''
    const prefix = this.decoder.decode(this.ids.slice(this.prefixOffset, this.readOffset))
    const full = this.decoder.decode(this.ids.slice(this.prefixOffset))
    this.prefixOffset = this.readOffset
    this.readOffset = this.ids.length
    return full.length > prefix.length ? full.slice(prefix.length) : ''
  }

  get tokenCount(): number {
    return this.ids.length
  }
}
