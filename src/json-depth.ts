/**
 * How deeply JSON text nests, found by scanning it, before anything walks it. JSON.parse itself
 * copes with any depth, but much after it does not (JSON.stringify, the chat template's tojson,
 * ajv's compiled schemas, xgrammar): a client's 100,000 nested arrays would overflow their stacks
 * and turn a bad request into a 500. Bodies deeper than MAX_JSON_DEPTH are refused up front.
 */

/** Nesting a request body may have: far more than any real request (a tool schema 60 levels deep fits). */
export const MAX_JSON_DEPTH = 128

/** The characters that matter outside strings: a quote, or a bracket that opens or closes. */
const STRUCTURE = /["[\]{}]/g

/**
 * Whether `text`, read as JSON, opens more than `max` objects and arrays inside one another.
 * Brackets inside strings do not count. Malformed text is left for JSON.parse to refuse. Strings
 * are skipped with indexOf and the rest with a regular expression: a 4 MB body takes a few ms.
 */
export function nestsDeeperThan(text: string, max: number = MAX_JSON_DEPTH): boolean {
  let depth = 0
  const re = new RegExp(STRUCTURE)
  let m: RegExpExecArray | null
  while ((m = re.exec(text)) !== null) {
    const c = m[0]
    if (c === '"') {
      re.lastIndex = stringEnd(text, m.index + 1)
    } else if (c === '{' || c === '[') {
      if (++depth > max) return true
    } else {
      depth--
    }
  }
  return false
}

/** The index after the quote that closes the string whose content starts at `from` (text.length if none). */
function stringEnd(text: string, from: number): number {
  let i = from
  for (;;) {
    const q = text.indexOf('"', i)
    if (q < 0) return text.length
    // Escaped when an odd number of backslashes precede it.
    let slashes = 0
    while (text.charCodeAt(q - 1 - slashes) === 0x5c) slashes++
    if (slashes % 2 === 0) return q + 1
    i = q + 1
  }
}
