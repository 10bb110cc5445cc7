/**
 * A huge prompt is refused by the server before it is sent anywhere: the text fields a route turns
 * into its prompt give a lower bound of the prompt's length (a chat template adds to the messages
 * it renders, never removes a user's words), and a prompt longer than the whole context could hold
 * (the tokenizer's characters-per-token bound, from its ready line) cannot fit. This spares the
 * ZeroMQ copy and the tokenizer's decode of megabytes that the tokenizer would refuse anyway; the
 * tokenizer still checks the rendered prompt exactly against its share of the context.
 */
import { charBoundRefusal, REFUSED_BEFORE_TOKENIZING } from '../../model/prompt-bound.ts'
import { SpanserveError } from '../../errors.ts'

type Body = Record<string, unknown>

/** UTF-16 units of the text parts of a message's content (a string, or parts with `text`). */
function contentChars(content: unknown): number {
  if (typeof content === 'string') return content.length
  if (!Array.isArray(content)) return 0
  let n = 0
  for (const part of content) if (part !== null && typeof part === 'object' && typeof (part as Body).text === 'string') n += ((part as Body).text as string).length
  return n
}

/** Roles whose words every chat template keeps (an assistant's earlier reasoning may be dropped). */
const KEPT_ROLES = new Set(['system', 'developer', 'user', 'tool'])

function messagesChars(messages: unknown): number {
  if (!Array.isArray(messages)) return 0
  let n = 0
  for (const m of messages) if (m !== null && typeof m === 'object' && KEPT_ROLES.has((m as Body).role as string)) n += contentChars((m as Body).content)
  return n
}

/** The longest of a completion's prompts (a string, or a batch of strings; token ids are counted exactly elsewhere). */
function promptChars(prompt: unknown): number {
  if (typeof prompt === 'string') return prompt.length
  if (!Array.isArray(prompt)) return 0
  let n = 0
  for (const p of prompt) if (typeof p === 'string' && p.length > n) n = p.length
  return n
}

/** Responses' `input`: a string, or items whose messages' text counts; `instructions` comes first. */
function inputChars(body: Body): number {
  const instructions = typeof body.instructions === 'string' ? body.instructions.length : 0
  return instructions + (typeof body.input === 'string' ? body.input.length : messagesChars(Array.isArray(body.input) ? body.input.map((i) => ({ role: 'user', ...(i as Body) })) : null))
}

/** Per route: the lower bound of its prompt's length and the field it is named by. */
const PROMPT_FIELDS: Record<string, (body: Body) => { chars: number; param: string }> = {
  '/v1/completions': (b) => ({ chars: promptChars(b.prompt), param: 'prompt' }),
  '/v1/chat/completions': (b) => ({ chars: messagesChars(b.messages), param: 'messages' }),
  '/v1/responses': (b) => ({ chars: inputChars(b), param: 'input' }),
  '/tokenize': (b) => (b.messages !== undefined ? { chars: messagesChars(b.messages), param: 'messages' } : { chars: promptChars(b.prompt), param: 'prompt' }),
}

/** The 400 for a request whose prompt cannot fit the context, or null (unknown bound, or it may fit). */
export function promptPrecheck(url: string, body: unknown, contextLength: number, charsPerToken: number | null): SpanserveError | null {
  const fields = PROMPT_FIELDS[url]
  if (!fields || charsPerToken === null || body === null || typeof body !== 'object') return null
  const { chars, param } = fields(body as Body)
  return charBoundRefusal(chars, { context: contextLength, completion: 0, param }, charsPerToken)
}

/** Bytes of JSON one UTF-16 unit of a prompt can take at most (its `\\uXXXX` escape). */
const MAX_BYTES_PER_CHAR = 6
/**
 * What a body may carry beside its prompt (tools, a schema, options, fields we ignore) before its
 * size alone says too much: generous, since a body that is big for another reason must get the
 * answer about that reason (a 2 MB message of unknown fields is served, test/soak/fuzz.test.ts).
 */
const OTHER_FIELDS_BYTES = 3 * 2 ** 20

/** The field each route's prompt comes in, for a refusal made before the body is read (/tokenize's depends on the body: it is parsed, off the loop). */
const PROMPT_PARAM: Record<string, string> = { '/v1/completions': 'prompt', '/v1/chat/completions': 'messages', '/v1/responses': 'input' }

/**
 * The 400 for a body too long for any prompt the context could hold, from its Content-Length alone,
 * or null: a prompt that fits is at most context × charsPerToken characters of at most 6 bytes each,
 * beside 3 MiB of everything else. Refused before it is read, a 4 MB prompt costs the
 * server no parse (other streams do not wait on it); the precheck after parsing stays the exact one.
 */
export function bodyLengthRefusal(url: string, bytes: number, contextLength: number, charsPerToken: number | null): SpanserveError | null {
  const param = PROMPT_PARAM[url]
  if (param === undefined || charsPerToken === null || !Number.isFinite(charsPerToken)) return null
  const bound = contextLength * charsPerToken * MAX_BYTES_PER_CHAR + OTHER_FIELDS_BYTES
  if (bytes <= bound) return null
  return new SpanserveError(
    'SPANSERVE_ERR_CONTEXT_LENGTH',
    `This model's maximum context length is ${contextLength} tokens. However, your request body is ${bytes} bytes, more than any prompt of that many tokens and the other fields can take (${bound} bytes: no token of this model stands for more than ${charsPerToken} characters), so it was ${REFUSED_BEFORE_TOKENIZING}. Please reduce the prompt.`,
    param,
  )
}
