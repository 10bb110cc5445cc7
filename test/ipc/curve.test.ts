/** --ipc-secret: ZeroMQ CURVE over tcp; a peer without the secret is not heard. */
import t from 'tap'
import { Inbox, Outbox } from '../../src/ipc/channel.ts'
import { deriveCurveKeys, z85 } from '../../src/ipc/curve.ts'
import type { AbortReq } from '../../src/ipc/messages.ts'
import { freePortRange } from '../helpers/ports.ts'

t.test('Z85 encodes as ZeroMQ does (its specification example)', async (t) => {
  t.equal(z85(Uint8Array.of(0x86, 0x4f, 0xd2, 0x6f, 0xb5, 0x59, 0xf7, 0x5b)), 'HelloWorld')
})

t.test('keys come from the secret, the same in every process', async (t) => {
  t.same(deriveCurveKeys('s3cret'), deriveCurveKeys('s3cret'))
  t.not(deriveCurveKeys('s3cret').publicKey, deriveCurveKeys('other').publicKey)
  t.equal(deriveCurveKeys('x').publicKey.length, 40)
})

t.test('same secret: delivered; wrong or no secret: never heard', async (t) => {
  const port = await freePortRange(1)
  const address = `tcp://127.0.0.1:${port}`
  const keys = deriveCurveKeys('right')
  const got: string[] = []
  const inbox = new Inbox(address, { abort: (m: AbortReq) => got.push(m.rid) }, () => {}, keys)
  await inbox.bind()
  const good = new Outbox(address, keys)
  const wrong = new Outbox(address, deriveCurveKeys('wrong'))
  const plain = new Outbox(address, null)
  t.teardown(() => {
    for (const o of [good, wrong, plain]) o.close()
    inbox.close()
  })
  wrong.post({ type: 'abort', rid: 'from-wrong', reason: '' })
  plain.post({ type: 'abort', rid: 'from-plain', reason: '' })
  good.post({ type: 'abort', rid: 'from-good', reason: '' })
  await new Promise((r) => setTimeout(r, 1500))
  t.same(got, ['from-good'])
})
