/**
 * A JSON Schema `pattern` made into one xgrammar enforces as meant. xgrammar matches the regex
 * against the whole JSON text of the string (JSON Schema searches the decoded string), so:
 * - unanchored, the pattern must match the whole string: a subset of what it means, kept as it is;
 * - `.`, negated classes and `\s` would let raw control characters into the JSON text (invalid
 *   JSON), so they are narrowed to printable characters other than `"` and `\`;
 * - a pattern that matches `"` or `\` itself, or uses what xgrammar cannot read (lookaround,
 *   backreferences, Unicode property escapes, flags, an anchor inside the pattern), is refused.
 * null means the pattern is refused; the reason is in the thrown message.
 */

/** JSON's unescaped string characters, less `"` and `\`: what the narrowed classes exclude. */
const EXCLUDED = '\\x00-\\x1f"\\\\\\x7f'
const DOT = `[^${EXCLUDED}]`
const OUT_OF_CLASS: Record<string, string> = {
  s: ' ',
  S: `[^ ${EXCLUDED}]`,
  d: '[0-9]',
  D: `[^0-9${EXCLUDED}]`,
  w: '[A-Za-z0-9_]',
  W: `[^A-Za-z0-9_${EXCLUDED}]`,
}

export class PatternRefused extends Error {}

/** The pattern as xgrammar should get it, or PatternRefused with the reason. */
export function xgrammarPattern(pattern: string): string {
  let out = ''
  let i = 0
  const n = pattern.length
  if (pattern.startsWith('^')) i = 1
  const end = pattern.endsWith('$') && !pattern.endsWith('\\$') ? n - 1 : n
  while (i < end) {
    const c = pattern[i]!
    if (c === '\\') {
      const e = pattern[i + 1]
      if (e === undefined) throw new PatternRefused('it ends in a lone backslash')
      if (/[1-9k]/.test(e)) throw new PatternRefused('backreferences cannot be enforced')
      if (e === 'p' || e === 'P') throw new PatternRefused('Unicode property escapes are not supported by the grammar engine')
      if (e === 'b' || e === 'B') throw new PatternRefused('word boundaries cannot be enforced')
      if (e === '\\' || e === '"') throw new PatternRefused('a pattern that matches `"` or `\\` is not supported')
      out += OUT_OF_CLASS[e] ?? `\\${e}`
      i += 2
      continue
    }
    if (c === '[') {
      const [cls, next] = charClass(pattern, i)
      out += cls
      i = next
      continue
    }
    if (c === '(' && pattern[i + 1] === '?') {
      if (pattern[i + 2] !== ':') throw new PatternRefused('lookaround, named groups and inline flags are not supported by the grammar engine')
    }
    if (c === '^' || c === '$') throw new PatternRefused('an anchor inside the pattern (only at its start and end) is not supported')
    if (c === '"') throw new PatternRefused('a pattern that matches `"` or `\\` is not supported')
    out += c === '.' ? DOT : c
    i++
  }
  return out
}

/** The class starting at `start` (a `[`), narrowed; and the index after it. */
function charClass(p: string, start: number): [string, number] {
  let i = start + 1
  const negated = p[i] === '^'
  if (negated) i++
  let body = ''
  for (let first = true; i < p.length; first = false) {
    const c = p[i]!
    if (c === ']' && !first) {
      if (negated) return [`[^${body}${EXCLUDED}]`, i + 1]
      if (/[\x00-\x1f"]/.test(body) || /\\[\\"sSWD]/.test(body)) throw new PatternRefused('a character class that matches `"`, `\\` or whitespace other than a space is not supported')
      return [`[${body}]`, i + 1]
    }
    if (c === '\\') {
      const e = p[i + 1]
      if (e === undefined) break
      if (e === 'p' || e === 'P') throw new PatternRefused('Unicode property escapes are not supported by the grammar engine')
      if (negated && /[sSwWdD]/.test(e)) throw new PatternRefused('a class escape inside a negated class is not supported')
      body += e === 's' ? ' ' : e === 'd' ? '0-9' : e === 'w' ? 'A-Za-z0-9_' : `\\${e}`
      i += 2
      continue
    }
    if (c === '[') throw new PatternRefused('nested character classes are not supported')
    body += c
    i++
  }
  throw new PatternRefused('an unterminated character class')
}
