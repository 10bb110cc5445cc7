/**
 * A request's JSON Schema, rewritten into one that xgrammar enforces exactly as written, or refused.
 * xgrammar ignores some keywords silently (allOf of several members, siblings of anyOf/oneOf/$ref,
 * if/then, dependencies, not, uniqueItems, multipleOf, contains, a format without a type) and gets
 * others wrong (its date-time, a number's bounds, an object `const`); an output that does not match
 * a schema the API accepted is worse than a 400. So each keyword is either passed on (xgrammar
 * enforces it), rewritten into keywords it enforces (allOf merged with json-schema-merge-allof,
 * siblings distributed into anyOf/oneOf branches, formats as patterns, dependencies as anyOf), or
 * refused with SchemaRefusal naming the keyword and its JSON pointer in the client's schema.
 * Where exact enforcement is impossible the rewrite narrows (every output still validates against
 * the client's schema): a number with bounds is generated as an integer within them, a pattern must
 * match the whole string, a schema without `type` takes the type its keywords are about.
 * Pure JS and bounded: work by the number of schema nodes visited, $ref inlining by depth.
 * The keyword list, with what happens to each: docs/structured-output.md.
 */
import mergeAllOf from 'json-schema-merge-allof'
import { SpanserveError } from '../../../errors.ts'
import { INTEGER_FORMATS, isKnownNoConstraint, isStringFormat, stringFormat } from './schema-formats.ts'
import { xgrammarPattern } from './schema-pattern.ts'

type Schema = Record<string, unknown>

export class SchemaRefusal extends Error {
  constructor(
    readonly keyword: string,
    readonly pointer: string,
    reason: string,
  ) {
    super(`\`${keyword}\` at ${pointer || '/'} ${reason}`)
    this.name = 'SchemaRefusal'
  }
}

/** Bounds: schema nodes rewritten (a schema this big is refused), $ref chains inlined, anyOf branches made. */
const MAX_NODES = 20_000
const MAX_INLINE_DEPTH = 16
const MAX_BRANCHES = 64
const MAX_NESTING = 100
/** Object keywords with dependencies rewritten as anyOf: each doubles the branches. */
const MAX_DEPENDENCIES = 4

/** Keywords that constrain nothing: dropped. */
const ANNOTATIONS = new Set([
  '$schema',
  '$id',
  'id',
  '$comment',
  '$anchor',
  'title',
  'description',
  'default',
  'examples',
  'readOnly',
  'writeOnly',
  'deprecated',
  'contentMediaType',
  'contentEncoding',
  'contentSchema',
  '$vocabulary',
  'definitions',
  '$defs',
])
/** Keywords that cannot be enforced by a context-free grammar here, with why. */
const REFUSED: Record<string, string> = {
  not: 'cannot be enforced: the grammar engine has no negation',
  if: 'cannot be enforced: only an `if` on one property whose values are listed (enum) could be rewritten, and this is not that',
  then: 'cannot be enforced without its `if`',
  else: 'cannot be enforced without its `if`',
  multipleOf: 'cannot be enforced by the grammar engine',
  contains: 'cannot be enforced by the grammar engine',
  minContains: 'cannot be enforced by the grammar engine',
  maxContains: 'cannot be enforced by the grammar engine',
  unevaluatedProperties: 'cannot be enforced by the grammar engine',
  unevaluatedItems: 'cannot be enforced by the grammar engine',
  $dynamicRef: 'is not supported',
  $recursiveRef: 'is not supported',
}
const TYPE_KEYWORDS: Record<string, readonly string[]> = {
  object: ['properties', 'required', 'additionalProperties', 'patternProperties', 'propertyNames', 'minProperties', 'maxProperties', 'dependencies', 'dependentRequired', 'dependentSchemas'],
  array: ['items', 'prefixItems', 'additionalItems', 'minItems', 'maxItems', 'uniqueItems'],
  string: ['minLength', 'maxLength', 'pattern'],
  number: ['minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum'],
}
const KNOWN = new Set([...Object.values(TYPE_KEYWORDS).flat(), 'type', 'enum', 'const', 'format', 'allOf', 'anyOf', 'oneOf', '$ref', ...Object.keys(REFUSED)])
const ALL_TYPES = ['object', 'array', 'string', 'number', 'integer', 'boolean', 'null']

const isObj = (v: unknown): v is Schema => typeof v === 'object' && v !== null && !Array.isArray(v)
const esc = (k: string) => k.replace(/~/g, '~0').replace(/\//g, '~1')

/** The client's schema (parsed JSON), rewritten for xgrammar; SchemaRefusal when it cannot be enforced. */
export function rewriteJsonSchema(schema: unknown): unknown {
  return new Rewriter(schema).run()
}

class Rewriter {
  private nodes = 0
  /** $ref pointer → the name of its rewritten target in the output's $defs. */
  private readonly defNames = new Map<string, string>()
  private readonly defs: Schema = {}
  private readonly pending: string[] = []

  constructor(private readonly root: unknown) {}

  run(): unknown {
    if (this.root === false) throw new SchemaRefusal('false', '', 'allows no value at all')
    const out = this.schema(this.root, '', 0)
    while (this.pending.length > 0) {
      const ptr = this.pending.shift()!
      this.defs[this.defNames.get(ptr)!] = this.schema(this.resolve(`#${ptr}`, ptr), ptr, 0)
    }
    if (Object.keys(this.defs).length === 0) return out
    return { ...(out as Schema), $defs: this.defs }
  }

  /** A `#/…` pointer's target in the client's schema. */
  private resolve(ref: string, at: string): unknown {
    if (ref !== '#' && !ref.startsWith('#/')) throw new SchemaRefusal('$ref', at, `${JSON.stringify(ref)} is not supported: only references within the schema (#/…) are`)
    let node: unknown = this.root
    if (ref === '#') return node
    for (const raw of ref.slice(2).split('/')) {
      const key = decodeURIComponent(raw).replace(/~1/g, '/').replace(/~0/g, '~')
      node = Array.isArray(node) ? node[Number(key)] : isObj(node) ? node[key] : undefined
      if (node === undefined) throw new SchemaRefusal('$ref', at, `${JSON.stringify(ref)} points at nothing`)
    }
    return node
  }

  /** A $ref to the rewritten target, in the output's $defs (each target rewritten once, so recursion ends). */
  private defRef(ref: string, at: string): Schema {
    this.resolve(ref, at)
    const ptr = ref === '#' ? '' : ref.slice(1)
    let name = this.defNames.get(ptr)
    if (name === undefined) {
      name = `d${this.defNames.size}`
      this.defNames.set(ptr, name)
      this.pending.push(ptr)
    }
    return { $ref: `#/$defs/${name}` }
  }

  /** `s` with its top-level $refs replaced by their targets, up to MAX_INLINE_DEPTH: what merging needs. */
  private inline(s: unknown, at: string, depth = 0): unknown {
    if (!isObj(s) || typeof s.$ref !== 'string') return s
    if (depth >= MAX_INLINE_DEPTH) throw new SchemaRefusal('$ref', at, `chains more than ${MAX_INLINE_DEPTH} references where they must be inlined (in allOf or beside other keywords)`)
    const { $ref, ...rest } = s
    const target = this.inline(this.resolve($ref, at), at, depth + 1)
    return constraining(rest) ? { allOf: [target, rest] } : target
  }

  /** allOf members (and the schema's other keywords) merged into one schema. */
  private merge(members: unknown[], at: string, keyword: string): unknown {
    const inlined = members.map((m) => this.inline(m, at))
    if (inlined.some((m) => m === false)) throw new SchemaRefusal(keyword, at, 'allows no value (a member is false)')
    try {
      return mergeAllOf({ allOf: inlined.map((m) => (m === true ? {} : m)) } as never, { resolvers: RESOLVERS, deep: true } as never) as unknown
    } catch (err) {
      if (err instanceof SchemaRefusal) throw err
      throw new SchemaRefusal(keyword, at, `cannot be merged into one schema: ${(err as Error).message.split('\n')[0]}`)
    }
  }

  private count(at: string, depth: number): void {
    if (++this.nodes > MAX_NODES) throw new SchemaRefusal('$ref', at, `makes the schema larger than ${MAX_NODES} nodes once rewritten`)
    if (depth > MAX_NESTING) throw new SchemaRefusal('properties', at, `nests more than ${MAX_NESTING} schemas deep`)
  }

  /** One schema node, rewritten. */
  schema(node: unknown, at: string, depth: number): unknown {
    this.count(at, depth)
    if (node === true) return {}
    if (node === false) return false
    if (!isObj(node)) throw new SchemaRefusal('type', at, 'is not a schema (an object or boolean)')
    let s = node
    // allOf, and a $ref with constraining siblings (applied beside it, as ajv does): merged.
    if (Array.isArray(s.allOf) || (typeof s.$ref === 'string' && constraining(omit(s, ['$ref'])))) {
      const { allOf, ...rest } = s
      const members = Array.isArray(allOf) ? [...allOf, rest] : [rest]
      const merged = this.merge(members, at, Array.isArray(allOf) ? 'allOf' : '$ref')
      if (merged === false) throw new SchemaRefusal('allOf', at, 'allows no value')
      if (!isObj(merged)) return this.schema(merged, at, depth + 1)
      s = merged
    }
    if (typeof s.$ref === 'string') return this.defRef(s.$ref, at)
    for (const k of Object.keys(s)) {
      if (k in REFUSED && !(k === 'if' && !('then' in s) && !('else' in s))) throw new SchemaRefusal(k, `${at}/${k}`, REFUSED[k]!)
    }
    if (Array.isArray(s.anyOf) || Array.isArray(s.oneOf)) return this.composition(s, at, depth)
    if ('dependencies' in s || 'dependentRequired' in s || 'dependentSchemas' in s) return this.dependencies(s, at, depth)
    if ('enum' in s || 'const' in s) {
      const structured = this.structuredEnum(s, at, depth)
      if (structured) return structured
    }
    return this.typed(s, at, depth)
  }

  /** anyOf/oneOf: the other keywords merged into each branch (xgrammar drops them beside anyOf). */
  private composition(s: Schema, at: string, depth: number): unknown {
    const { anyOf, oneOf, ...base } = s
    const lists: [string, unknown[]][] = []
    if (Array.isArray(anyOf)) lists.push(['anyOf', anyOf])
    if (Array.isArray(oneOf)) lists.push(['oneOf', oneOf])
    for (const [k, l] of lists) if (l.length === 0) throw new SchemaRefusal(k, `${at}/${k}`, 'is empty (allows no value)')
    if (Array.isArray(oneOf) && oneOf.length > 1) {
      const shapes = oneOf.map((b) => this.shape(this.withBase(base, b, at), at))
      for (let i = 0; i < shapes.length; i++) {
        for (let j = i + 1; j < shapes.length; j++) {
          if (!disjoint(shapes[i]!, shapes[j]!)) {
            throw new SchemaRefusal(
              'oneOf',
              `${at}/oneOf`,
              `cannot be enforced: branches ${i} and ${j} are not provably exclusive (no distinct type, const/enum or required property that the other forbids), and the grammar engine cannot exclude a value matching both`,
            )
          }
        }
      }
    }
    // The product of the lists' branches: one list, or anyOf × oneOf.
    let combos: [string, unknown[]][] = [['', []]]
    for (const [k, l] of lists) {
      combos = combos.flatMap(([p, c]) => l.map((b, i): [string, unknown[]] => [`${p}/${k}/${i}`, [...c, b]]))
      if (combos.length > MAX_BRANCHES) throw new SchemaRefusal(k, `${at}/${k}`, `makes more than ${MAX_BRANCHES} alternatives once its siblings are distributed`)
    }
    const branches: unknown[] = []
    for (const [p, c] of combos) {
      let branch: unknown
      try {
        branch = constraining(base) || c.length > 1 ? this.merge([base, ...c], `${at}${p}`, p.split('/')[1]!) : c[0]
      } catch (err) {
        // A branch its siblings contradict allows nothing: dropped, as it adds no value to the anyOf.
        if (err instanceof SchemaRefusal && /cannot be merged/.test(err.message)) continue
        throw err
      }
      const rewritten = this.schema(branch, `${at}${p}`, depth + 1)
      if (rewritten !== false) branches.push(rewritten)
    }
    if (branches.length === 0) throw new SchemaRefusal(lists[0]![0], `${at}/${lists[0]![0]}`, 'allows no value once its siblings are applied')
    return branches.length === 1 ? branches[0] : { anyOf: branches }
  }

  private withBase(base: Schema, branch: unknown, at: string): unknown {
    return constraining(base) ? this.merge([base, branch], at, 'oneOf') : this.inline(branch, at)
  }

  /** What a oneOf branch allows, coarsely, to prove two branches exclusive. */
  private shape(s: unknown, at: string): Shape {
    const b = this.inline(s, at)
    if (!isObj(b)) return { types: null, values: null, props: new Map(), required: [], closed: false }
    const types = typeof b.type === 'string' ? [b.type] : Array.isArray(b.type) ? (b.type as string[]) : null
    const values = 'const' in b ? [b.const] : Array.isArray(b.enum) ? b.enum : null
    const props = new Map<string, unknown[]>()
    if (isObj(b.properties)) {
      for (const [k, p] of Object.entries(b.properties)) {
        const t = this.inline(p, at)
        if (isObj(t) && ('const' in t || Array.isArray(t.enum))) props.set(k, 'const' in t ? [t.const] : (t.enum as unknown[]))
        else props.set(k, [])
      }
    }
    const required = Array.isArray(b.required) ? (b.required as string[]) : []
    return { types: types ?? inferTypes(b), values, props, required, closed: b.additionalProperties === false }
  }

  /** dependencies / dependentRequired / dependentSchemas: anyOf of "the property is absent" and "present, with what it needs". */
  private dependencies(s: Schema, at: string, depth: number): unknown {
    const { dependencies, dependentRequired, dependentSchemas, ...base } = s
    const deps: [string, string, unknown][] = []
    for (const [kw, d] of [
      ['dependencies', dependencies],
      ['dependentRequired', dependentRequired],
      ['dependentSchemas', dependentSchemas],
    ] as const) {
      if (d === undefined) continue
      if (!isObj(d)) throw new SchemaRefusal(kw, `${at}/${kw}`, 'must be an object')
      for (const [k, v] of Object.entries(d)) deps.push([kw, k, v])
    }
    const required = new Set(Array.isArray(base.required) ? (base.required as string[]) : [])
    let alternatives: Schema[] = [base]
    let open = 0
    for (const [kw, name, v] of deps) {
      const needs: Schema = Array.isArray(v) ? { required: [name, ...(v as string[])] } : { allOf: [{ required: [name] }, v] }
      if (required.has(name)) {
        alternatives = alternatives.map((a) => ({ allOf: [a, needs] }))
        continue
      }
      if (++open > MAX_DEPENDENCIES) throw new SchemaRefusal(kw, `${at}/${kw}/${esc(name)}`, `cannot be rewritten: more than ${MAX_DEPENDENCIES} dependencies on optional properties`)
      // Absent: `properties: {name: false}`, which the final step turns into "never generated".
      alternatives = alternatives.flatMap((a) => [{ allOf: [a, needs] }, { allOf: [a, { properties: { [name]: false } }] }])
    }
    const out = alternatives.length === 1 ? alternatives[0]! : { anyOf: alternatives }
    return this.schema(out, at, depth + 1)
  }

  /** enum/const with objects or arrays (xgrammar matches those only in its own layout): anyOf of their shapes. */
  private structuredEnum(s: Schema, at: string, depth: number): unknown {
    const kw = 'const' in s ? 'const' : 'enum'
    const values = 'const' in s ? [s.const] : s.enum
    if (!Array.isArray(values)) throw new SchemaRefusal('enum', `${at}/enum`, 'must be an array')
    if (values.length === 0) throw new SchemaRefusal('enum', `${at}/enum`, 'is empty (allows no value)')
    if ('const' in s && 'enum' in s) throw new SchemaRefusal('const', `${at}/const`, 'beside `enum` is not supported')
    if (!values.some((v) => typeof v === 'object' && v !== null)) return null
    const others = omit(s, ['enum', 'const', 'type'])
    if (constraining(others)) throw new SchemaRefusal(kw, `${at}/${kw}`, 'with objects or arrays beside other keywords is not supported')
    const types = typeof s.type === 'string' ? [s.type] : Array.isArray(s.type) ? s.type : null
    const kept = values.filter((v) => types === null || types.some((t) => typeOf(v, t)))
    if (kept.length === 0) throw new SchemaRefusal(kw, `${at}/${kw}`, "has no value of the schema's type")
    const branches = kept.map((v) => this.schema(constSchema(v), `${at}/${kw}`, depth + 1))
    return branches.length === 1 ? branches[0] : { anyOf: branches }
  }

  /** The type-specific keywords: a type array with such keywords is split per type (xgrammar drops them otherwise). */
  private typed(s: Schema, at: string, depth: number): unknown {
    let types: string[] | null = typeof s.type === 'string' ? [s.type] : Array.isArray(s.type) ? (s.type as string[]) : null
    if (types === null) types = inferTypes(s)
    if (types !== null && types.length > 1 && types.some((t) => hasKeywordsOf(s, t))) {
      const branches = types.map((t) => this.single(s, t, at, depth))
      return { anyOf: branches }
    }
    if (types === null || types.length !== 1) {
      const out = this.scalar(s, at)
      if (types !== null) out.type = types
      return out
    }
    return this.single(s, types[0]!, at, depth)
  }

  /** enum/const of scalars, kept. */
  private scalar(s: Schema, at: string): Schema {
    const out: Schema = {}
    if ('enum' in s) out.enum = s.enum
    if ('const' in s) out.const = s.const
    void at
    return out
  }

  private single(s: Schema, type: string, at: string, depth: number): Schema {
    const out = this.scalar(s, at)
    out.type = type
    if (type === 'object') this.object(s, out, at, depth)
    else if (type === 'array') this.array(s, out, at, depth)
    else if (type === 'string') this.string(s, out, at)
    else if (type === 'number' || type === 'integer') this.number(s, out, at)
    else if (!ALL_TYPES.includes(type)) throw new SchemaRefusal('type', `${at}/type`, `${JSON.stringify(type)} is not a JSON Schema type`)
    return out
  }

  private object(s: Schema, out: Schema, at: string, depth: number): void {
    const props: Schema = {}
    const banned: string[] = []
    if (s.properties !== undefined) {
      if (!isObj(s.properties)) throw new SchemaRefusal('properties', `${at}/properties`, 'must be an object')
      for (const [k, p] of Object.entries(s.properties)) {
        const r = this.schema(p, `${at}/properties/${esc(k)}`, depth + 1)
        if (r === false) banned.push(k)
        else props[k] = r
      }
    }
    const required = Array.isArray(s.required) ? (s.required as string[]) : []
    const patternProps = isObj(s.patternProperties) ? s.patternProperties : {}
    const additional = s.additionalProperties
    for (const name of required) {
      if (banned.includes(name)) throw new SchemaRefusal('required', `${at}/required`, `requires ${JSON.stringify(name)}, which its properties forbid`)
      if (name in props) continue
      // xgrammar generates only the properties it is given: a required one it is not given must be listed.
      const matching = Object.entries(patternProps)
        .filter(([re]) => safeTest(re, name))
        .map(([, v]) => v)
      if (matching.length === 0 && additional === false) throw new SchemaRefusal('required', `${at}/required`, `requires ${JSON.stringify(name)}, which additionalProperties: false forbids`)
      const schema = matching.length > 0 ? { allOf: matching } : additional === undefined || additional === true ? {} : additional
      const r = this.schema(schema, `${at}/required`, depth + 1)
      if (r === false) throw new SchemaRefusal('required', `${at}/required`, `requires ${JSON.stringify(name)}, which the schema forbids`)
      props[name] = r
    }
    if (banned.length > 0 && additional !== undefined && additional !== false) {
      throw new SchemaRefusal('properties', `${at}/properties/${esc(banned[0]!)}`, 'forbids a property that additionalProperties would generate: not supported')
    }
    if (Object.keys(props).length > 0 || s.properties !== undefined) out.properties = props
    if (required.length > 0) out.required = [...new Set(required)]
    if (Object.keys(patternProps).length > 0) {
      const pp: Schema = {}
      for (const [re, v] of Object.entries(patternProps)) {
        const key = this.pattern(re, `${at}/patternProperties/${esc(re)}`, 'patternProperties')
        pp[key] = this.schema(v, `${at}/patternProperties/${esc(re)}`, depth + 1)
      }
      out.patternProperties = pp
    }
    if (additional !== undefined && additional !== true) out.additionalProperties = additional === false ? false : this.schema(additional, `${at}/additionalProperties`, depth + 1)
    else if (additional === true) out.additionalProperties = true
    if (s.propertyNames !== undefined) out.propertyNames = this.schema(s.propertyNames, `${at}/propertyNames`, depth + 1)
    for (const k of ['minProperties', 'maxProperties']) if (s[k] !== undefined) out[k] = s[k]
  }

  private array(s: Schema, out: Schema, at: string, depth: number): void {
    // Draft-04 to 07 tuples (items as an array, additionalItems) become prefixItems/items, which xgrammar reads.
    let prefix = Array.isArray(s.prefixItems) ? s.prefixItems : Array.isArray(s.items) ? s.items : null
    let rest = Array.isArray(s.items) ? s.additionalItems : s.items
    if (Array.isArray(s.prefixItems) && Array.isArray(s.items)) throw new SchemaRefusal('items', `${at}/items`, 'as an array beside prefixItems is not supported')
    const prefixKw = Array.isArray(s.prefixItems) ? 'prefixItems' : 'items'
    const maxItems = typeof s.maxItems === 'number' ? s.maxItems : null
    if (s.uniqueItems === true && (maxItems === null || maxItems > 1))
      throw new SchemaRefusal('uniqueItems', `${at}/uniqueItems`, 'cannot be enforced by the grammar engine (unless maxItems is at most 1)')
    if (prefix !== null && maxItems !== null && prefix.length > maxItems) prefix = prefix.slice(0, maxItems)
    if (prefix !== null) {
      const items = prefix.map((p, i) => this.schema(p, `${at}/${prefixKw}/${i}`, depth + 1))
      const firstFalse = items.indexOf(false)
      if (firstFalse >= 0) {
        // Nothing can be at that position: the array ends before it.
        if (typeof s.minItems === 'number' && s.minItems > firstFalse) throw new SchemaRefusal(prefixKw, `${at}/${prefixKw}/${firstFalse}`, 'is false where minItems needs an item')
        items.length = firstFalse
        rest = false
      }
      if (items.length > 0) out.prefixItems = items
    }
    if (rest !== undefined && rest !== true) {
      const r = this.schema(rest, `${at}/${Array.isArray(s.items) ? 'additionalItems' : 'items'}`, depth + 1)
      if (r === false) {
        const n = (out.prefixItems as unknown[] | undefined)?.length ?? 0
        if (typeof s.minItems === 'number' && s.minItems > n) throw new SchemaRefusal('minItems', `${at}/minItems`, 'needs more items than the schema allows')
        out.items = false
        if (n === 0) out.maxItems = 0
      } else out.items = r
    }
    // xgrammar (strict) allows no items beyond prefixItems when `items` is absent: minItems could not be met.
    const n = (out.prefixItems as unknown[] | undefined)?.length ?? 0
    if (out.items === undefined && typeof s.minItems === 'number' && s.minItems > n) out.items = {}
    for (const k of ['minItems', 'maxItems']) if (s[k] !== undefined) out[k] = s[k]
  }

  private string(s: Schema, out: Schema, at: string): void {
    let pattern = typeof s.pattern === 'string' ? this.pattern(s.pattern, `${at}/pattern`, 'pattern') : undefined
    let minLength = s.minLength as number | undefined
    let maxLength = s.maxLength as number | undefined
    if (typeof s.format === 'string') {
      const verdict = stringFormat(s.format)
      if (verdict.kind === 'refuse') throw new SchemaRefusal('format', `${at}/format`, `${JSON.stringify(s.format)} cannot be enforced`)
      if (verdict.kind === 'pattern') {
        if (pattern !== undefined) throw new SchemaRefusal('format', `${at}/format`, 'beside a pattern cannot be enforced (the grammar engine takes one pattern)')
        const r = verdict.rule
        // xgrammar ignores lengths beside a pattern: refused unless the format's own lengths imply them.
        if ((minLength ?? 0) > r.minLength) throw new SchemaRefusal('minLength', `${at}/minLength`, 'beside a format cannot be enforced')
        if (maxLength !== undefined && (r.maxLength === null || maxLength < r.maxLength)) throw new SchemaRefusal('maxLength', `${at}/maxLength`, 'beside a format cannot be enforced')
        minLength = maxLength = undefined
        pattern = r.pattern
      }
    }
    if (pattern !== undefined && (minLength !== undefined || maxLength !== undefined)) {
      throw new SchemaRefusal(
        minLength !== undefined ? 'minLength' : 'maxLength',
        `${at}/${minLength !== undefined ? 'minLength' : 'maxLength'}`,
        'beside a pattern cannot be enforced (the grammar engine ignores it)',
      )
    }
    if (pattern !== undefined) out.pattern = pattern
    if (minLength !== undefined) out.minLength = minLength
    if (maxLength !== undefined) out.maxLength = maxLength
  }

  private pattern(p: string, at: string, keyword: string): string {
    try {
      new RegExp(p, 'u')
      return xgrammarPattern(p)
    } catch (err) {
      throw new SchemaRefusal(keyword, at, `cannot be enforced: ${(err as Error).message}`)
    }
  }

  /**
   * Bounds. xgrammar's bounds on a number are wrong (it let 3.01 through a maximum of 3, 0 through an
   * exclusiveMinimum of 0); on an integer they are right. So a bounded number is generated as an
   * integer within its bounds, and draft-04's boolean exclusiveMinimum/Maximum become draft-06's numbers.
   */
  private number(s: Schema, out: Schema, at: string): void {
    let lo = -Infinity
    let hi = Infinity
    if (typeof s.minimum === 'number') lo = s.exclusiveMinimum === true ? Math.floor(s.minimum) + 1 : Math.ceil(s.minimum)
    if (typeof s.maximum === 'number') hi = s.exclusiveMaximum === true ? Math.ceil(s.maximum) - 1 : Math.floor(s.maximum)
    if (typeof s.exclusiveMinimum === 'number') lo = Math.max(lo, Math.floor(s.exclusiveMinimum) + 1)
    if (typeof s.exclusiveMaximum === 'number') hi = Math.min(hi, Math.ceil(s.exclusiveMaximum) - 1)
    const fmt = typeof s.format === 'string' ? INTEGER_FORMATS[s.format] : undefined
    if (fmt) {
      out.type = 'integer'
      lo = Math.max(lo, fmt[0])
      hi = Math.min(hi, fmt[1])
    }
    if (lo === -Infinity && hi === Infinity) return
    if (lo > hi) throw new SchemaRefusal('minimum', `${at}/minimum`, 'and the maximum leave no integer, and the grammar engine bounds only integers exactly')
    for (const b of [lo, hi]) {
      if (Number.isFinite(b) && Math.abs(b) > Number.MAX_SAFE_INTEGER) throw new SchemaRefusal('maximum', `${at}/maximum`, 'is beyond the integers the grammar engine bounds')
    }
    out.type = 'integer'
    if (lo !== -Infinity) out.minimum = lo
    if (hi !== Infinity) out.maximum = hi
  }
}

interface Shape {
  types: string[] | null
  values: unknown[] | null
  /** Each property's listed values (const/enum), or [] when any. */
  props: Map<string, unknown[]>
  required: string[]
  closed: boolean
}

/** Two oneOf branches that no value can match both: distinct types, values, a discriminator, or a required property the other forbids. */
function disjoint(a: Shape, b: Shape): boolean {
  if (a.types && b.types && !a.types.some((t) => b.types!.some((u) => t === u || (t === 'integer' && u === 'number') || (t === 'number' && u === 'integer')))) return true
  if (a.values && b.values && !a.values.some((v) => b.values!.some((w) => equal(v, w)))) return true
  if (a.values && b.types && !a.values.some((v) => b.types!.some((t) => typeOf(v, t)))) return true
  if (b.values && a.types && !b.values.some((v) => a.types!.some((t) => typeOf(v, t)))) return true
  for (const [k, va] of a.props) {
    const vb = b.props.get(k)
    if (va.length > 0 && vb && vb.length > 0 && a.required.includes(k) && b.required.includes(k) && !va.some((v) => vb.some((w) => equal(v, w)))) return true
  }
  if (a.closed && b.required.some((k) => !a.props.has(k))) return true
  if (b.closed && a.required.some((k) => !b.props.has(k))) return true
  return false
}

function typeOf(v: unknown, t: string): boolean {
  switch (t) {
    case 'null':
      return v === null
    case 'boolean':
      return typeof v === 'boolean'
    case 'string':
      return typeof v === 'string'
    case 'integer':
      return Number.isInteger(v)
    case 'number':
      return typeof v === 'number'
    case 'array':
      return Array.isArray(v)
    case 'object':
      return isObj(v)
  }
  return false
}

function equal(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b)
}

/** A schema that matches exactly this value (in any layout): xgrammar's const of an object expects its own. */
function constSchema(v: unknown): unknown {
  if (Array.isArray(v)) return { type: 'array', prefixItems: v.map(constSchema), minItems: v.length, maxItems: v.length, items: false }
  if (isObj(v)) {
    const properties: Schema = {}
    for (const [k, x] of Object.entries(v)) properties[k] = constSchema(x)
    return { type: 'object', properties, required: Object.keys(v), additionalProperties: false }
  }
  return { const: v }
}

/** The types a schema without `type` is about, from its keywords (a format implies a string), or null when any. */
function inferTypes(s: Schema): string[] | null {
  const types = Object.keys(TYPE_KEYWORDS).filter((t) => hasKeywordsOf(s, t))
  if (typeof s.format === 'string' && isStringFormat(s.format) && !types.includes('string')) types.push('string')
  if (typeof s.format === 'string' && s.format in INTEGER_FORMATS && !types.includes('number')) types.push('integer')
  if (types.length === 0) return null
  return types
}

function hasKeywordsOf(s: Schema, type: string): boolean {
  const t = type === 'integer' ? 'number' : type
  if (t === 'string' && typeof s.format === 'string' && !isKnownNoConstraint(s.format) && stringFormat(s.format).kind !== 'none') return true
  return (TYPE_KEYWORDS[t] ?? []).some((k) => s[k] !== undefined)
}

/** Whether a schema's keywords constrain anything (annotations and unknown keywords do not). */
function constraining(s: Schema): boolean {
  return Object.keys(s).some((k) => KNOWN.has(k) && !ANNOTATIONS.has(k))
}

function omit(s: Schema, keys: string[]): Schema {
  const out: Schema = {}
  for (const [k, v] of Object.entries(s)) if (!keys.includes(k)) out[k] = v
  return out
}

function safeTest(re: string, s: string): boolean {
  try {
    return new RegExp(re, 'u').test(s)
  } catch {
    return false
  }
}

/**
 * json-schema-merge-allof's resolvers for what it has none for: annotations and keywords unknown to
 * JSON Schema keep the first value (they constrain nothing); $ref, format and the rest must be equal
 * in every member, else the merge fails (refused), rather than one being dropped.
 */
const firstValue = (values: unknown[]) => values[0]
function sameValue(values: unknown[], path: string[]): unknown {
  if (values.every((v) => equal(v, values[0]))) return values[0]
  throw new Error(`${path.join('/') || 'members'} differ and cannot be combined`)
}
const RESOLVERS = {
  $ref: sameValue,
  format: sameValue,
  defaultResolver(values: unknown[], path: string[], ...rest: unknown[]) {
    void rest
    const key = path[path.length - 1] ?? ''
    if (!KNOWN.has(key) || ANNOTATIONS.has(key)) return firstValue(values)
    return sameValue(values, path)
  },
}

/** The request field's schema, rewritten, as JSON text; a 400 naming the field, the keyword and its pointer when refused. */
export function enforceableSchemaText(schema: unknown, param: string): string {
  try {
    return JSON.stringify(rewriteJsonSchema(schema))
  } catch (err) {
    if (err instanceof SchemaRefusal) throw new SpanserveError('SPANSERVE_ERR_INVALID_REQUEST', `${param}: ${err.message}`, param)
    throw err
  }
}
