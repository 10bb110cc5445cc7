/**
 * The scheduler loop under prefill/decode disaggregation, driving a scripted worker (token 5 for every
 * sequence due one). Decode side: a request with a bootstrap room waits out of the batch, its KV
 * expected in its own blocks, until the worker says it arrived; its first chunk then starts past the
 * whole blocks transferred, and usage reports the prefill instance's cached tokens. A wait that times
 * out, or KV refused, prefills from the start; an abort while waiting cancels the wait and frees the
 * blocks. Prefill side: the prompt's last chunk carries the transfer of its whole blocks but the last token's.
 */
import t from 'tap'
import { KV_BLOCK_TOKENS as BT } from '../../src/ipc/kv-blocks.ts'
import type { BatchTokenIdOutput, Bootstrap, ForwardBatch, TokenizedGenerateReqInput } from '../../src/ipc/messages.ts'
import { harness as scriptedLoop } from '../helpers/scripted-loop.ts'

type Limits = Parameters<typeof scriptedLoop>[0]

interface Expected {
  rid: string
  room: number
  blocks: Int32Array
  from: number
  tokens: Int32Array
}

/** The scripted loop (token 5 for every sequence due one), its worker's KV side recorded. */
function harness(limits: Limits = {}) {
  const expected: Expected[] = []
  const cancelled: string[] = []
  const h = scriptedLoop({ maxQueue: 8, contextLength: 400, depth: 2, prefixCache: true, ...limits }, (check) => ({
    kv: {
      expect: (rid, _trace, room, blocks, from, tokens) => {
        expected.push({ rid, room, blocks, from, tokens })
        check()
      },
      cancel: (rid) => {
        cancelled.push(rid)
        check()
      },
    },
  }))
  return { ...h, expected, cancelled }
}

const ids = (n: number, from = 100) => Array.from({ length: n }, (_, i) => from + i)
const req = (rid: string, prompt: number[], maxTokens: number, bootstrap?: Bootstrap): TokenizedGenerateReqInput => ({
  type: 'tokenized',
  rid,
  trace: null,
  inputIds: Int32Array.from(prompt),
  sampling: { temperature: 0, topP: 1, topK: 0, seed: null },
  maxTokens,
  ignoreEos: false,
  arrivalMs: 0,
  ...(bootstrap ? { bootstrap } : {}),
})
const chunks = (steps: ForwardBatch[], rid: string) => steps.flatMap((s) => s.prefill).filter((p) => p.rid === rid)
const tokensOf = (outputs: BatchTokenIdOutput[], rid: string) => outputs.flatMap((o) => o.rids.filter((r) => r === rid)).length
const cachedOf = (outputs: BatchTokenIdOutput[], rid: string) => {
  for (const o of outputs) {
    const i = o.rids.indexOf(rid)
    if (i >= 0) return o.cachedTokens?.[i]
  }
  return undefined
}
const room = (n: number): Bootstrap => ({ room: n, host: null, port: null })

t.test('decode side: the request waits for its KV, then prefills only past the blocks transferred', async (t) => {
  const h = harness()
  const prompt = ids(50)
  h.loop.submit(req('a', prompt, 3, room(7)))
  await h.until(() => h.expected.length === 1)
  const exp = h.expected[0]!
  t.equal(exp.room, 7)
  t.equal(exp.from, 0, 'nothing of it was cached here')
  t.same([...exp.tokens], prompt.slice(0, 3 * BT), "the whole blocks of all but the last prompt token (48 of 50's 49)")
  t.ok(exp.blocks.length >= Math.ceil(53 / BT), 'its table holds prompt and max_tokens')
  await h.loop.idle()
  t.equal(chunks(h.steps, 'a').length, 0, 'no chunk runs before the KV is there')
  t.equal(h.loop.running, 1, 'it holds its place in the batch while it waits')

  h.loop.kvArrived({ type: 'kv_arrived', rid: 'a', ok: true, reason: null, cachedTokens: 32 })
  await h.until(() => tokensOf(h.outputs, 'a') === 3)
  const [first, ...rest] = chunks(h.steps, 'a')
  t.equal(rest.length, 0, 'one chunk')
  t.equal(first!.start, 3 * BT, 'it starts past the KV transferred')
  t.same([...first!.tokens], prompt.slice(3 * BT), 'and computes the rest of the prompt')
  t.same([...first!.blocks!], [...exp.blocks], 'on the blocks the KV was written to')
  t.ok(first!.sampling, 'with its sampling: the worker starts the sequence there')
  t.equal(cachedOf(h.outputs, 'a'), 32, "usage's cached tokens are the prefill instance's")
})

t.test('decode side: KV refused or late, the request prefills from the start', async (t) => {
  const h = harness({ kvTransferTimeoutMs: 50 })
  h.loop.submit(req('late', ids(40), 2, room(1)))
  h.loop.submit(req('bad', ids(40, 500), 2, room(2)))
  await h.until(() => h.expected.length === 2)
  h.loop.kvArrived({ type: 'kv_arrived', rid: 'bad', ok: false, reason: 'the prompt differs at token 3', cachedTokens: 0 })
  await h.until(() => tokensOf(h.outputs, 'late') === 2 && tokensOf(h.outputs, 'bad') === 2)
  t.equal(chunks(h.steps, 'bad')[0]!.start, 0, 'refused KV: prefilled here from the start')
  t.equal(chunks(h.steps, 'late')[0]!.start, 0, 'no KV within the timeout: prefilled here')
  t.same(h.cancelled, ['late'], "the worker stops waiting for the late one's room")
  h.loop.kvArrived({ type: 'kv_arrived', rid: 'late', ok: true, reason: null, cachedTokens: 0 })
  await h.loop.idle()
  t.equal(tokensOf(h.outputs, 'late'), 2, 'KV that comes after the timeout changes nothing')
})

t.test('decode side: an abort while waiting cancels the wait and frees its blocks', async (t) => {
  const h = harness()
  h.loop.submit(req('gone', ids(40), 4, room(3)))
  await h.until(() => h.expected.length === 1)
  h.loop.abort('gone')
  await h.until(() => h.cancelled.includes('gone'))
  await h.loop.idle()
  t.equal(h.loop.running, 0)
  t.equal(h.loop.budget.usedTokens, 0, 'its KV reservation is back')
  const freed = h.steps.flatMap((s) => [...(s.freeBlocks ?? [])])
  t.ok(
    h.expected[0]!.blocks.every((b) => freed.includes(b)),
    'its blocks are freed in a step after the cancel',
  )
})

t.test('decode side: a prompt already cached here, or shorter than a block, runs at once', async (t) => {
  const h = harness()
  h.loop.submit(req('short', ids(12), 2, room(4)))
  await h.until(() => tokensOf(h.outputs, 'short') === 2)
  t.equal(h.expected.length, 0, 'nothing to wait for under one block')
  h.loop.submit(req('warm', ids(40, 900), 2))
  await h.until(() => tokensOf(h.outputs, 'warm') === 2)
  h.loop.submit(req('again', ids(40, 900), 2, room(5)))
  await h.until(() => tokensOf(h.outputs, 'again') === 2)
  t.equal(h.expected.length, 0, 'the whole blocks are in the prefix cache here')
  t.equal(chunks(h.steps, 'again')[0]!.start, 2 * BT)
})

t.test("prefill side: the last chunk carries the transfer of the prompt's whole blocks", async (t) => {
  const h = harness({ maxPrefillTokens: 24 })
  const prompt = ids(50)
  h.loop.submit(req('p', prompt, 1, { room: 9, host: '10.0.0.2', port: 8998 }))
  await h.until(() => tokensOf(h.outputs, 'p') === 1)
  const all = chunks(h.steps, 'p')
  t.equal(all.length, 3, 'chunked as any prompt')
  t.notOk(all[0]!.transfer ?? all[1]!.transfer, 'earlier chunks carry nothing')
  const target = all[2]!.transfer!
  t.same({ room: target.room, host: target.host, port: target.port, cachedTokens: target.cachedTokens }, { room: 9, host: '10.0.0.2', port: 8998, cachedTokens: 0 })
  t.same([...target.tokens], prompt.slice(0, 3 * BT))
  t.equal(h.expected.length, 0, 'a prefill instance waits for nothing')
})
