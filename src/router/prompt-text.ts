/**
 * The text a request's prompt starts with, for the cache-aware policy: what it will share with the
 * same conversation's next turn. Read loosely (the instance validates the body, not the router):
 * whatever is not text is skipped. Parts are joined with a newline so that ["ab","c"] and ["a","bc"]
 * do not read the same.
 * - /v1/completions: `prompt` (a string, strings, token ids or lists of them; ids as decimal text);
 * - /v1/chat/completions: every message's `content` in order (a string, or its text parts);
 * - /v1/responses: `instructions`, then `input` (a string, or its items' content and outputs).
 */

type Api = 'completions' | 'chat' | 'responses'

export function promptText(api: Api, body: unknown): string {
  if (body === null || typeof body !== 'object') return ''
  const b = body as Record<string, unknown>
  const parts: string[] = []
  switch (api) {
    case 'completions':
      completionPrompt(b.prompt, parts)
      break
    case 'chat':
      if (Array.isArray(b.messages)) for (const m of b.messages) if (m !== null && typeof m === 'object') content((m as Record<string, unknown>).content, parts)
      break
    case 'responses':
      if (typeof b.instructions === 'string') parts.push(b.instructions)
      if (typeof b.input === 'string') parts.push(b.input)
      else if (Array.isArray(b.input)) for (const item of b.input) responseItem(item, parts)
      break
    default:
      api satisfies never
  }
  return parts.join('\n')
}

function completionPrompt(prompt: unknown, parts: string[]): void {
  if (typeof prompt === 'string') parts.push(prompt)
  else if (Array.isArray(prompt)) {
    if (prompt.every((p) => typeof p === 'number')) parts.push(prompt.join(' '))
    else for (const p of prompt) completionPrompt(p, parts)
  }
}

/** A message's content: a string, or parts of which the text ones count. */
function content(value: unknown, parts: string[]): void {
  if (typeof value === 'string') parts.push(value)
  else if (Array.isArray(value)) {
    for (const part of value) {
      if (part === null || typeof part !== 'object') continue
      const text = (part as Record<string, unknown>).text
      if (typeof text === 'string') parts.push(text)
    }
  }
}

function responseItem(item: unknown, parts: string[]): void {
  if (item === null || typeof item !== 'object') return
  const i = item as Record<string, unknown>
  content(i.content, parts)
  if (typeof i.output === 'string') parts.push(i.output)
  if (typeof i.arguments === 'string') parts.push(i.arguments)
}
