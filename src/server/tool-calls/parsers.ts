/** The tool-call parsers by name, as --tool-call-parser chooses them. */
import { hermesParser } from './hermes.ts'
import type { ToolCallParser } from './parser.ts'

export const TOOL_CALL_PARSERS = ['hermes', 'none'] as const
export type ToolCallParserName = (typeof TOOL_CALL_PARSERS)[number]

/** null: the model's output is never read for calls (tool_choice "auto" is refused). */
export function toolCallParser(name: ToolCallParserName): ToolCallParser | null {
  switch (name) {
    case 'hermes':
      return hermesParser
    case 'none':
      return null
    default:
      return name satisfies never
  }
}
