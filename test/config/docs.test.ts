/** The generated references match the code: every option and every error code is documented. */
import t from 'tap'
import { readFileSync } from 'node:fs'
import { DOCS } from '../../tools/docs.ts'
import { ERRORS } from '../../src/errors.ts'
import { OPTIONS } from '../../src/config/schema.ts'
import * as attributes from '../../src/tracing/attributes.ts'
import { EVENTS, SLICES } from '../../src/tracing/names.ts'
import { ROOT } from '../../harness/server.ts'

for (const [path, render] of Object.entries(DOCS)) {
  t.test(`${path} is current (run \`npm run docs\` after changing the schema or the error table)`, async (t) => {
    t.equal(readFileSync(ROOT + path, 'utf8'), await render())
  })
}

t.test('every error code and every flag appears', async (t) => {
  const errors = readFileSync(ROOT + 'docs/errors.md', 'utf8')
  for (const code of Object.keys(ERRORS)) t.match(errors, `\`${code}\``)
  const config = readFileSync(ROOT + 'docs/configuration.md', 'utf8')
  for (const o of OPTIONS) t.match(config, `\`${o.flag}\``)
})

t.test('each option group has one section in configuration.md', async (t) => {
  const config = readFileSync(ROOT + 'docs/configuration.md', 'utf8')
  for (const group of new Set(OPTIONS.map((o) => o.group))) {
    const heading = `## ${group[0]!.toUpperCase()}${group.slice(1)}\n`
    t.equal(config.split(heading).length - 1, 1, heading.trim())
  }
})

t.test('every slice, event and attribute key is in tracing.md, each key declared with its meaning', async (t) => {
  const tracing = readFileSync(ROOT + 'docs/tracing.md', 'utf8')
  for (const s of Object.values(SLICES)) t.match(tracing, `| \`${s.name}\` | ${s.process} | ${s.level} |`)
  for (const e of Object.values(EVENTS)) t.match(tracing, `| \`${e.name}\` |`)
  const declared = new Set(attributes.ATTRIBUTE_DOCS.map((a) => a.key))
  // An attribute added as a plain constant would be missing from the docs: every key must be declared.
  for (const [name, value] of Object.entries(attributes)) {
    if (!/^[A-Z][A-Z0-9_]*$/.test(name) || typeof value !== 'string') continue
    t.ok(declared.has(value), `${name} (${value}) is declared with attribute()`)
    t.match(tracing, `| \`${value}\` |`)
  }
})
