/** The tool-call parsers by name, as --tool-call-parser chooses them (vLLM's names). */
import { hermesParser } from './hermes.ts'
import { llama3JsonParser } from './llama3-json.ts'
import { mistralParser } from './mistral.ts'
import type { ToolCallParser } from './parser.ts'
import { pythonicParser } from './pythonic.ts'

export const TOOL_CALL_PARSERS = ['hermes', 'llama3_json', 'mistral', 'pythonic', 'none'] as const
export type ToolCallParserName = (typeof TOOL_CALL_PARSERS)[number]

/** null: the model's output is never read for calls (tool_choice "auto" is refused). */
export function toolCallParser(name: ToolCallParserName): ToolCallParser | null {
  switch (name) {
    case 'hermes':
      return hermesParser
    case 'llama3_json':
      return llama3JsonParser
    case 'mistral':
      return mistralParser
    case 'pythonic':
      return pythonicParser
    case 'none':
      return null
    default:
      return name satisfies never
  }
}

/**
 * The parser that reads a constrained call (tool_choice "required" or a named function): the grammar
 * writes Hermes blocks whatever the model's own format (as vLLM constrains such requests to one
 * format of its own), so they are read as Hermes.
 */
export function constrainedCallParser(): ToolCallParser {
  return hermesParser
}
