/**
 * The structured-output clients' schema (test/clients/): small on purpose, since the embedded model
 * spells JSON nearly a character a token and only constrained decoding makes its output valid, so
 * the object must fit the token budget with room to spare.
 */
import type { Test } from 'tap'
import { z } from 'zod'

export const person = z.object({
  name: z.string().max(12),
  age: z.number().int(),
  mood: z.enum(['happy', 'sad']),
})

/** What the zod schema promises once the client has parsed the answer: checked by hand, not by zod alone. */
export function checkPerson(t: Test, out: unknown): void {
  t.ok(person.safeParse(out).success, `the object matches the zod schema: ${JSON.stringify(out)}`)
  const p = out as z.infer<typeof person>
  t.type(p.name, 'string')
  t.ok(p.name.length <= 12, 'name within maxLength')
  t.ok(Number.isInteger(p.age), 'age is an integer')
  t.ok(['happy', 'sad'].includes(p.mood), 'mood from the enum')
}
