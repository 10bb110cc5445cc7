/**
 * The Responses API with --reasoning-parser, through the real server and the openai client: the
 * embedded model is held by a regex (vLLM's `structured_outputs`, which its Responses requests take
 * too) to write `<think>…</think>` and then an answer, and the response's output is a `reasoning`
 * item (its text a `reasoning_text` content part, summary empty) before the assistant message, whole
 * and streamed with the events OpenAI documents for it (output_item.added, content_part.added,
 * reasoning_text.delta …, reasoning_text.done, content_part.done, output_item.done). Run by
 * reasoning-server.test.ts, on its server.
 */
import t from 'tap'
import OpenAI from 'openai'
import { sharedServer } from '../helpers/shared-server.ts'

const server = await sharedServer({ args: ['--reasoning-parser', 'qwen3'] })
const client = new OpenAI({ baseURL: server.url + '/v1', apiKey: 'unused', maxRetries: 0 })
const WORDS = '[a-z]{2,8}( [a-z]{2,8}){1,3}'
const base = { model: 'default', input: 'Think, then answer.', max_output_tokens: 120, temperature: 0, structured_outputs: { regex: `<think>${WORDS}</think>${WORDS}` } }

interface Item {
  type: string
  id: string
  status?: string
  summary?: unknown[]
  content?: { type: string; text: string }[]
}

t.test('whole: a reasoning item, then the message without the thinking', async (t) => {
  const res = await client.responses.create(base as never)
  const output = res.output as unknown as Item[]
  t.same(
    output.map((o) => o.type),
    ['reasoning', 'message'],
  )
  const [reasoning, message] = output as [Item, Item]
  t.match(reasoning.id, /^rs_/)
  t.same(reasoning.summary, [])
  t.equal(reasoning.content![0]!.type, 'reasoning_text')
  t.match(reasoning.content![0]!.text, new RegExp(`^${WORDS}$`), `reasoning: ${JSON.stringify(reasoning.content![0]!.text)}`)
  t.equal(message.content![0]!.type, 'output_text')
  t.match(message.content![0]!.text, new RegExp(`^${WORDS}$`))
  t.equal(res.output_text, message.content![0]!.text, "the SDK's output_text is the answer alone")
  t.equal(res.status, 'completed')
  // Stored as answered: retrieve gives the reasoning item back too.
  const kept = await client.responses.retrieve(res.id)
  t.same(
    (kept.output as unknown as Item[]).map((o) => [o.type, o.content?.[0]?.text]),
    output.map((o) => [o.type, o.content?.[0]?.text]),
  )
})

t.test("streamed: the reasoning item's events, then the message's, adding up to the whole response", async (t) => {
  const whole = (await client.responses.create(base as never)).output as unknown as Item[]
  const stream = await client.responses.create({ ...base, stream: true } as never)
  const events: Record<string, unknown>[] = []
  for await (const e of stream as unknown as AsyncIterable<Record<string, unknown>>) events.push(e)
  t.same(
    events.map((e) => e.sequence_number),
    events.map((_, i) => i),
    'sequence numbers count from 0',
  )
  // The event types in order, a run of deltas written once.
  const types = events.map((e) => e.type as string).filter((type, i, all) => !(type.endsWith('.delta') && all[i - 1] === type))
  t.same(types, [
    'response.created',
    'response.in_progress',
    'response.output_item.added',
    'response.content_part.added',
    'response.reasoning_text.delta',
    'response.reasoning_text.done',
    'response.content_part.done',
    'response.output_item.done',
    'response.output_item.added',
    'response.content_part.added',
    'response.output_text.delta',
    'response.output_text.done',
    'response.content_part.done',
    'response.output_item.done',
    'response.completed',
  ])
  const of = (type: string) => events.filter((e) => e.type === type)
  const [reasoningAdded, messageAdded] = of('response.output_item.added').map((e) => e.item as Item) as [Item, Item]
  t.same({ type: reasoningAdded.type, status: reasoningAdded.status, output_index: of('response.output_item.added')[0]!.output_index }, { type: 'reasoning', status: 'in_progress', output_index: 0 })
  t.same({ type: messageAdded.type, output_index: of('response.output_item.added')[1]!.output_index }, { type: 'message', output_index: 1 })
  t.same(of('response.content_part.added')[0]!.part, { type: 'reasoning_text', text: '' })
  const reasoningText = of('response.reasoning_text.delta')
    .map((e) => e.delta)
    .join('')
  t.ok(of('response.reasoning_text.delta').every((e) => e.item_id === reasoningAdded.id && e.output_index === 0 && e.content_index === 0))
  t.equal(reasoningText, whole[0]!.content![0]!.text, 'the reasoning deltas add up to the whole reasoning text')
  t.equal(of('response.reasoning_text.done')[0]!.text, reasoningText)
  t.equal(
    of('response.output_text.delta')
      .map((e) => e.delta)
      .join(''),
    whole[1]!.content![0]!.text,
    'the text deltas add up to the whole answer',
  )
  const done = of('response.output_item.done').map((e) => e.item as Item)
  t.same(
    done.map((o) => [o.type, o.status, o.content![0]!.text]),
    [
      ['reasoning', 'completed', reasoningText],
      ['message', 'completed', whole[1]!.content![0]!.text],
    ],
  )
  const completed = of('response.completed')[0]!.response as { output: Item[]; status: string }
  t.equal(completed.status, 'completed')
  t.same(completed.output, done, 'response.completed carries the items as they were done')
})

t.test('structured_outputs beside text.format is a 400 naming structured_outputs', async (t) => {
  const err = await client.responses.create({ ...base, text: { format: { type: 'json_object' } } } as never).catch((e: unknown) => e)
  t.ok(err instanceof OpenAI.BadRequestError)
  t.equal((err as InstanceType<typeof OpenAI.BadRequestError>).param, 'structured_outputs')
})
