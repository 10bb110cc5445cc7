/**
 * A JSON request body from its bytes to a value, as Fastify's own parser does it (valid UTF-8 or a
 * 400; prototype poisoning refused), with our depth bound first, and a huge prompt refused from its
 * length (prompt-precheck.ts) before anything else sees it. Pure: run on the event loop for small
 * bodies, in the body thread for big ones (thread.ts).
 */
import sjson from 'secure-json-parse'
import { MAX_JSON_DEPTH, nestsDeeperThan } from '../../../json-depth.ts'
import type { ErrorCode } from '../../../errors.ts'
import { promptPrecheck } from '../prompt-precheck.ts'

/** What the prompt precheck needs: the route and the model's bounds (null: no check). */
export interface PromptCheck {
  url: string
  contextLength: number
  charsPerToken: number | null
}

export type BodyOutcome =
  | { kind: 'value'; value: unknown }
  /** A 400 with this code, message and param. */
  | { kind: 'refused'; code: ErrorCode; message: string; param: string | null }
  /** Not JSON (or poisoned): a SyntaxError's message, answered as Fastify's parser would. */
  | { kind: 'syntax'; message: string }

const utf8 = new TextDecoder('utf-8', { fatal: true })

export function parseJsonBody(bytes: Uint8Array, check: PromptCheck | null): BodyOutcome {
  let text: string
  try {
    text = utf8.decode(bytes)
  } catch {
    return { kind: 'refused', code: 'SPANSERVE_ERR_INVALID_REQUEST', message: 'request body is not valid UTF-8', param: null }
  }
  // Refused before parsing: what walks the parsed body (stringify, templates, schemas) recurses on its depth.
  if (nestsDeeperThan(text)) return { kind: 'refused', code: 'SPANSERVE_ERR_INVALID_REQUEST', message: `request body nests objects and arrays more than ${MAX_JSON_DEPTH} deep`, param: null }
  let value: unknown
  try {
    value = sjson.parse(text, null, { protoAction: 'error', constructorAction: 'error' })
  } catch (err) {
    return { kind: 'syntax', message: (err as Error).message }
  }
  const refusal = check ? promptPrecheck(check.url, value, check.contextLength, check.charsPerToken) : null
  if (refusal) return { kind: 'refused', code: refusal.code, message: refusal.message, param: refusal.param ?? null }
  return { kind: 'value', value }
}
