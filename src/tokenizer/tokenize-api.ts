/**
 * vLLM's /tokenize and /detokenize, answered here because the tokenizer and chat template live in
 * this process: text (or chat messages through the template) to token ids, and ids back to text.
 */
import type { ReqError, TokenizeOutput, TokenizeReq } from '../ipc/messages.ts'
import { SpanserveError } from '../errors.ts'
import type { TextTokenizer } from './tokenize.ts'
import { boundedPromptIds } from './prompt-ids.ts'

/** A text is bounded like a prompt, by the whole context (it has no max_tokens). */
export async function answerTokenize(tok: TextTokenizer, vocabSize: number, contextLength: number, req: TokenizeReq): Promise<TokenizeOutput | ReqError> {
  try {
    if (req.tokens !== null) {
      for (const id of req.tokens) {
        if (!Number.isInteger(id) || id < 0 || id >= vocabSize) {
          throw new SpanserveError('SPANSERVE_ERR_TOKEN_ID', `token id ${id} is outside the vocabulary (0..${vocabSize - 1})`, 'tokens')
        }
      }
      return { type: 'tokenize_out', rid: req.rid, tokens: req.tokens, tokenStrs: null, text: tok.decode(req.tokens) }
    }
    const text = req.messages !== null ? tok.applyChatTemplate(req.messages, req.tools, req.addGenerationPrompt) : (req.text ?? '')
    const tokens = await boundedPromptIds(tok, text, req.addSpecialTokens, { context: contextLength, completion: 0, param: req.messages !== null ? 'messages' : 'prompt' })
    return { type: 'tokenize_out', rid: req.rid, tokens, tokenStrs: req.tokenStrs ? tokens.map((id) => tok.tokenString(id)) : null, text: null }
  } catch (err) {
    const e = err instanceof SpanserveError ? err : new SpanserveError('SPANSERVE_ERR_INTERNAL', 'tokenization failed')
    return { type: 'req_error', rid: req.rid, code: e.code, message: e.message, param: e.param }
  }
}
