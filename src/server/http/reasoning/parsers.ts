/** The reasoning parsers by name, as --reasoning-parser chooses them (vLLM's names). */
import type { ReasoningParser } from './parser.ts'
import { deepseekR1ReasoningParser, qwen3ReasoningParser } from './think.ts'

export const REASONING_PARSERS = ['none', 'qwen3', 'deepseek_r1'] as const
export type ReasoningParserName = (typeof REASONING_PARSERS)[number]

/** null: the completion is all answer (no `reasoning_content`). */
export function reasoningParser(name: ReasoningParserName): ReasoningParser | null {
  switch (name) {
    case 'qwen3':
      return qwen3ReasoningParser
    case 'deepseek_r1':
      return deepseekR1ReasoningParser
    case 'none':
      return null
    default:
      return name satisfies never
  }
}
