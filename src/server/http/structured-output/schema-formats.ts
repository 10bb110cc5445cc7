/**
 * JSON Schema `format`s as the `pattern`s spanserve hands xgrammar. xgrammar's own format rules are
 * wrong in places (its date-time let `07:60:44` and February 30 through, its email `"a b"@c.com`),
 * so every format ajv-formats knows is either one of these regexes, each the language of a subset of
 * what ajv-formats' full mode accepts (checked in test/model/schema-rewrite.test.ts), or refused.
 * The regexes avoid `.` and negated classes: xgrammar matches a pattern against the JSON text of the
 * string, where those would let raw control characters (invalid JSON) through.
 */

/** Days 01–28 of any month, 29–30 of all but February, 31 of the long months; 29 February in leap years. */
const DATE = [
  `[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])`,
  `[0-9]{4}-(0[13-9]|1[0-2])-(29|30)`,
  `[0-9]{4}-(0[13578]|1[02])-31`,
  `([0-9]{2}(0[48]|[2468][048]|[13579][26])|([02468][048]|[13579][26])00)-02-29`,
]
  .map((d) => `(${d})`)
  .join('|')
/** RFC 3339 full-time: no leap second (60), a numeric offset or Z, at most 9 fraction digits. */
const TIME = `([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,9})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])`
const LABEL = '[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?'
const OCTET = '(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])'
/** http(s) URLs with a host name: a subset of RFC 3986 URIs (no percent escapes, no IP literals). */
const URI_CHARS = "[a-zA-Z0-9._~!$&'()*+,;=:@-]"
const URI = `https?://${LABEL}(\\.${LABEL})*(:[0-9]{1,5})?(/${URI_CHARS}*)*(\\?(${URI_CHARS}|[/?])*)?(#(${URI_CHARS}|[/?])*)?`

export interface FormatRule {
  /** A regex, anchored by xgrammar (it matches the whole string). */
  pattern: string
  /** The shortest and longest string it matches (null: no bound), to see whether minLength/maxLength still bind. */
  minLength: number
  maxLength: number | null
}

const STRING_FORMATS: Record<string, FormatRule> = {
  date: { pattern: `(${DATE})`, minLength: 10, maxLength: 10 },
  time: { pattern: TIME, minLength: 9, maxLength: 24 },
  'date-time': { pattern: `(${DATE})T${TIME}`, minLength: 20, maxLength: 35 },
  email: { pattern: `[a-zA-Z0-9_+-]+(\\.[a-zA-Z0-9_+-]+)*@(${LABEL}\\.)+${LABEL}`, minLength: 5, maxLength: null },
  hostname: { pattern: `${LABEL}(\\.${LABEL}){0,2}`, minLength: 1, maxLength: 191 },
  ipv4: { pattern: `(${OCTET}\\.){3}${OCTET}`, minLength: 7, maxLength: 15 },
  ipv6: { pattern: '([0-9a-f]{1,4}:){7}[0-9a-f]{1,4}', minLength: 15, maxLength: 39 },
  uuid: { pattern: '[0-9a-f]{8}-([0-9a-f]{4}-){3}[0-9a-f]{12}', minLength: 36, maxLength: 36 },
  uri: { pattern: URI, minLength: 8, maxLength: null },
  'uri-reference': { pattern: URI, minLength: 8, maxLength: null },
  url: { pattern: URI, minLength: 8, maxLength: null },
  byte: { pattern: '([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?', minLength: 0, maxLength: null },
}

/** Formats ajv-formats accepts any string for (or any number): nothing to enforce. */
const NO_CONSTRAINT = new Set(['password', 'binary', 'float', 'double'])

/** Formats ajv-formats checks that no regex here expresses: refused. */
const REFUSED = new Set(['duration', 'uri-template', 'json-pointer', 'json-pointer-uri-fragment', 'relative-json-pointer', 'regex', 'iso-time', 'iso-date-time'])

/** Integer formats (OpenAPI's, as ajv-formats checks them): the bounds they imply. */
export const INTEGER_FORMATS: Record<string, [number, number]> = {
  int32: [-(2 ** 31), 2 ** 31 - 1],
  // ajv-formats allows ±2^63; the bound here stays within exactly representable integers.
  int64: [-Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
}

export type FormatVerdict = { kind: 'pattern'; rule: FormatRule } | { kind: 'none' } | { kind: 'refuse' }

/** What to do with a string's `format`: a pattern, nothing (an annotation or an unknown format), or a refusal. */
export function stringFormat(format: string): FormatVerdict {
  const rule = STRING_FORMATS[format]
  if (rule) return { kind: 'pattern', rule }
  if (REFUSED.has(format)) return { kind: 'refuse' }
  // Unknown formats are annotations in JSON Schema (validators ignore them); so are these.
  return { kind: 'none' }
}

export const isKnownNoConstraint = (f: string): boolean => NO_CONSTRAINT.has(f)

/** A string format (one that implies `type: string` when a schema has no type). */
export const isStringFormat = (f: string): boolean => f in STRING_FORMATS || REFUSED.has(f)
