/** docs/api.md says what happens to every request field: a field a route schema declares has a note. */
import t from 'tap'
import { undocumentedFields } from '../../tools/api-docs.ts'

t.test('every field of every endpoint schema is documented in tools/api-notes.ts', async (t) => {
  t.same(undocumentedFields(), [])
})
