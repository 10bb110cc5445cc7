/** The generated references match the code: every option and every error code is documented. */
import t from 'tap'
import { readFileSync } from 'node:fs'
import { DOCS } from '../../tools/docs.ts'
import { ERRORS } from '../../src/errors.ts'
import { OPTIONS } from '../../src/config/schema.ts'
import { ROOT } from '../helpers/server.ts'

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
