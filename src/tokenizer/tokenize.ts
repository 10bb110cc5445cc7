/**
 * Text → token ids with the model's own tokenizer.json, and chat messages → prompt text with the
 * chat template from tokenizer_config.json (Jinja, as transformers' apply_chat_template renders it).
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { Tokenizer } from '@huggingface/tokenizers'
import { Template } from '@huggingface/jinja'
import type { ChatMessage, ChatTool } from '../ipc/messages.ts'
import { SpanserveError } from '../errors.ts'
import { charsPerTokenBound } from '../model/prompt-bound.ts'
import { encodeInPieces, pieceBoundaries, type PiecesResult } from './pieces.ts'
import type { Decoder } from './detokenizer.ts'

type SpecialToken = string | { content: string } | null | undefined

function tokenText(t: SpecialToken): string {
  if (typeof t === 'string') return t
  return t?.content ?? ''
}

export class TextTokenizer {
  readonly tokenizer: Tokenizer
  private readonly template: Template | null
  private readonly bosToken: string
  private readonly eosToken: string
  readonly bosTokenId: number | null
  /** The most characters one token can stand for (Infinity: no bound for this tokenizer). */
  readonly charsPerToken: number
  private readonly nextBoundary: ((text: string, from: number) => number) | null
  /** Special tokens only before the text (BOS), so they can go on the first piece alone. */
  private readonly specialsLead: boolean

  constructor(modelDir: string) {
    const json = JSON.parse(readFileSync(join(modelDir, 'tokenizer.json'), 'utf8')) as Record<string, unknown>
    let config: Record<string, unknown> = {}
    try {
      config = JSON.parse(readFileSync(join(modelDir, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>
    } catch {
      // Optional: without it there is no chat template, and chat requests are refused.
    }
    this.tokenizer = new Tokenizer(json, config)
    const template = config.chat_template
    this.template = typeof template === 'string' ? new Template(template) : null
    this.bosToken = tokenText(config.bos_token as SpecialToken)
    this.eosToken = tokenText(config.eos_token as SpecialToken)
    this.bosTokenId = this.bosToken ? (this.tokenizer.token_to_id(this.bosToken) ?? null) : null
    this.charsPerToken = charsPerTokenBound(json, config, this.tokenizer.get_vocab(true).keys())
    this.nextBoundary = pieceBoundaries(json, config)
    const withSpecials = this.encode('a b', true)
    const plain = this.encode('a b', false)
    this.specialsLead = plain.every((id, i) => withSpecials[withSpecials.length - plain.length + i] === id)
  }

  get hasChatTemplate(): boolean {
    return this.template !== null
  }

  encode(text: string, addSpecialTokens = true): number[] {
    return this.tokenizer.encode(text, { add_special_tokens: addSpecialTokens }).ids
  }

  /**
   * The same ids as encode(), tokenized in pieces with turns of the event loop between them, and
   * stopped once they pass `tokenLimit` (see pieces.ts).
   */
  encodeBounded(text: string, addSpecialTokens: boolean, tokenLimit: number): Promise<PiecesResult> {
    const boundaries = addSpecialTokens && !this.specialsLead ? null : this.nextBoundary
    return encodeInPieces(text, tokenLimit, (piece, first) => this.encode(piece, addSpecialTokens && first), boundaries)
  }

  /** A token's string in the vocabulary (byte-level symbols as stored, e.g. "Ġthe"). */
  tokenString(id: number): string {
    return this.tokenizer.id_to_token(id) ?? ''
  }

  /** Decode, skipping special tokens unless asked (EOS is counted in usage but never shown). */
  decode(ids: readonly number[], skipSpecialTokens = true): string {
    if (ids.length === 0) return '' // the library throws on an empty list
    return this.tokenizer.decode(ids as number[], { skip_special_tokens: skipSpecialTokens })
  }

  /**
   * A decoder that keeps special tokens (vLLM's skip_special_tokens false, for a tool-call parser
   * that reads `[TOOL_CALLS]`); one per tokenizer, so that its token texts are cached once.
   */
  readonly keepingSpecialTokens: Decoder = { decode: (ids) => this.decode(ids, false) }

  /** `tools` go to the template as transformers passes them (absent when there are none). */
  applyChatTemplate(messages: readonly ChatMessage[], tools: readonly ChatTool[] | null = null, addGenerationPrompt = true): string {
    if (!this.template) throw new SpanserveError('SPANSERVE_ERR_INVALID_REQUEST', 'this model has no chat template; use /v1/completions', 'messages')
    const context: Record<string, unknown> = { messages, add_generation_prompt: addGenerationPrompt, bos_token: this.bosToken, eos_token: this.eosToken }
    if (tools && tools.length > 0) context.tools = tools
    try {
      return this.template.render(context)
    } catch (err) {
      // A template may refuse a conversation (raise_exception), e.g. roles out of order.
      throw new SpanserveError('SPANSERVE_ERR_INVALID_REQUEST', `the chat template could not render these messages: ${(err as Error).message}`, 'messages')
    }
  }
}
