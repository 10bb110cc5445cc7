/**
 * One grammar thread of the worker's pool (pool.ts): its own xgrammar instance over the model's
 * vocabulary, which compiles constraints and then runs the matchers of the requests that use them.
 * A compiled grammar cannot leave the WebAssembly instance it was built in, so the thread that
 * compiled a request's grammar serves its masks; the pool sends it no other compile meanwhile.
 */
import { parentPort, workerData } from 'node:worker_threads'
import { GrammarEngine, type ConstrainedOutput, type PreparedGrammar } from './engine.ts'
import { constraintKey, type OutputConstraint } from './constraint.ts'
import { readGrammarVocab } from './vocab.ts'
import { GrammarSyntaxError } from './xgrammar.ts'
import { SLOT_DONE, SLOT_MASK, SLOT_STATE, STATE_FAILED, STATE_OPEN, STATE_TERMINATED, type FromThread, type ThreadStart, type ToThread } from './thread-protocol.ts'

const port = parentPort!
const post = (m: FromThread): void => port.postMessage(m)
const start = workerData as ThreadStart
const engine = new GrammarEngine(readGrammarVocab(start.tokenizerPath, start.vocabSize, start.stopTokenIds), start.cacheSize)
await engine.warm()

const leases = new Map<string, PreparedGrammar>()
const matchers = new Map<number, { output: ConstrainedOutput; slot: Int32Array }>()

/** The mask after the matcher's last token, then the count that tells the waiting sampler it is there. */
function publish(output: ConstrainedOutput, slot: Int32Array): void {
  try {
    if (output.terminated) slot[SLOT_STATE] = STATE_TERMINATED
    else {
      slot.set(output.mask(), SLOT_MASK)
      slot[SLOT_STATE] = STATE_OPEN
    }
  } catch (err) {
    slot[SLOT_STATE] = STATE_FAILED
    console.error(`grammar thread: a matcher failed: ${String(err)}`)
  }
  Atomics.add(slot, SLOT_DONE, 1)
  Atomics.notify(slot, SLOT_DONE)
}

async function compile(m: Extract<ToThread, { type: 'compile' }>): Promise<void> {
  const memoryBytes = () => engine.memoryBytes()
  if (m.hitOnly && !(await engine.holds(m.constraint))) {
    post({ type: 'compiled', job: m.job, ok: false, miss: true, reason: '', memoryBytes: memoryBytes() })
    return
  }
  try {
    const grammar = await engine.prepare(m.constraint)
    engine.pin(constraintKey(m.constraint), +1)
    leases.set(m.rid, grammar)
    post({ type: 'compiled', job: m.job, ok: true, cacheHit: grammar.info.cacheHit, ms: grammar.info.ms, memoryBytes: memoryBytes() })
  } catch (err) {
    post({ type: 'compiled', job: m.job, ok: false, miss: false, reason: await refusalReason(m.constraint, err), memoryBytes: memoryBytes() })
  }
}

/** The engine's reason (for tool calls, naming the function whose parameters it refused); anything else is a bug, named as such. */
async function refusalReason(c: OutputConstraint, err: unknown): Promise<string> {
  if (!(err instanceof GrammarSyntaxError)) return `the grammar engine failed: ${String(err)}`
  if (c.type !== 'tool_calls') return err.message
  for (const f of c.calls.functions) {
    try {
      await engine.prepare({ type: 'json_schema', schema: f.parameters })
    } catch (inner) {
      if (inner instanceof GrammarSyntaxError) return `the parameters of function ${JSON.stringify(f.name)}: ${inner.message}`
    }
  }
  return err.message
}

// Compiles are the only async work; they run one at a time (the pool sends one at a time).
port.on('message', (m: ToThread) => {
  switch (m.type) {
    case 'compile':
      void compile(m)
      return
    case 'open': {
      const slot = new Int32Array(m.slot)
      const grammar = leases.get(m.rid)
      if (!grammar) {
        slot[SLOT_STATE] = STATE_FAILED
        Atomics.add(slot, SLOT_DONE, 1)
        Atomics.notify(slot, SLOT_DONE)
        return
      }
      const output = engine.matcher(grammar)
      matchers.set(m.id, { output, slot })
      publish(output, slot)
      return
    }
    case 'accept': {
      const mt = matchers.get(m.id)
      if (!mt) return
      for (const token of m.tokens) mt.output.accept(token)
      publish(mt.output, mt.slot)
      return
    }
    case 'close':
      matchers.get(m.id)?.output.dispose()
      matchers.delete(m.id)
      return
    case 'release': {
      const grammar = leases.get(m.rid)
      if (grammar) engine.pin(grammar.key, -1)
      leases.delete(m.rid)
      return
    }
  }
})
post({ type: 'ready', memoryBytes: engine.memoryBytes() })
