/**
 * All-reduce (sum) among the ranks of one tensor-parallel group over ZeroMQ. Each rank binds one
 * PULL inbox and connects a PUSH socket to every other rank's inbox; a call sends the rank's partial
 * to every peer and sums all T partials in rank order 0..T-1, so every rank gets bit-identical
 * results (float addition is not associative). Messages carry (step, seq) so a peer's early partial
 * for a later call waits in a buffer rather than being summed into the wrong one.
 */
import * as zmq from 'zeromq'
import { bindOptions, connectOptions } from '../../ipc/curve.ts'

export interface AllReduceStats {
  /** Completed all-reduce calls. */
  calls: number
  /** Milliseconds spent inside allReduce (sending, waiting for the slowest peer, summing). */
  totalMs: number
  /** Bytes of partials sent to peers. */
  bytesSent: number
}

export interface AllReduce {
  readonly rank: number
  readonly size: number
  /**
   * The element-wise sum of `data` over the group. Every rank must make the same calls with the same
   * (step, seq) and length. `data` is not modified; the result is a new array (or `data` itself when
   * size is 1).
   */
  allReduce(step: number, seq: number, data: Float32Array): Promise<Float32Array>
  readonly stats: AllReduceStats
  close(): void
}

export interface ZmqAllReduceOptions {
  rank: number
  /** Inbox address of every rank, indexed by rank (ipc:// or tcp://); this rank binds its own. */
  addresses: readonly string[]
  /** Give up a call when peers stay silent this long (a dead peer or ranks out of lockstep); 0 = never. Default 60 000. */
  timeoutMs?: number
}

class AllReduceError extends Error {}

interface Pending {
  parts: (Float32Array | undefined)[]
  received: number
  wake: (() => void) | null
}

const HEADER_BYTES = 16 // f64 step, u32 seq, u32 rank

export class ZmqAllReduce implements AllReduce {
  readonly rank: number
  readonly size: number
  readonly stats: AllReduceStats = { calls: 0, totalMs: 0, bytesSent: 0 }
  private readonly timeoutMs: number
  private readonly inbox: zmq.Pull | null
  private readonly peers: (zmq.Push | null)[]
  /** One send at a time per socket (zeromq.js refuses concurrent sends): each peer's queue tail. */
  private readonly sendTails: Promise<void>[]
  private readonly pending = new Map<string, Pending>()
  private failure: Error | null = null
  private closed = false

  private constructor(opts: ZmqAllReduceOptions) {
    const { rank, addresses } = opts
    if (!Number.isInteger(rank) || rank < 0 || rank >= addresses.length) throw new AllReduceError(`rank ${rank} is outside 0..${addresses.length - 1}`)
    this.rank = rank
    this.size = addresses.length
    this.timeoutMs = opts.timeoutMs ?? 60_000
    this.inbox = this.size > 1 ? new zmq.Pull({ linger: 0, receiveHighWaterMark: 0, ...bindOptions() }) : null
    this.peers = addresses.map((address, r) => {
      if (r === rank) return null
      const sock = new zmq.Push({ linger: 0, sendHighWaterMark: 0, ...connectOptions() })
      sock.connect(address)
      return sock
    })
    this.sendTails = addresses.map(() => Promise.resolve())
  }

  /** Binds this rank's inbox and connects to the peers (which may bind later: ZeroMQ reconnects). */
  static async open(opts: ZmqAllReduceOptions): Promise<ZmqAllReduce> {
    const c = new ZmqAllReduce(opts)
    if (c.inbox) {
      await c.inbox.bind(opts.addresses[opts.rank]!)
      void c.receive()
    }
    return c
  }

  private async receive(): Promise<void> {
    try {
      for await (const [header, body] of this.inbox!) {
        if (!header || !body || header.length !== HEADER_BYTES) continue
        const step = header.readDoubleLE(0)
        const seq = header.readUInt32LE(8)
        const from = header.readUInt32LE(12)
        if (from >= this.size || from === this.rank) continue
        // A Float32Array view needs 4-byte alignment; ZeroMQ gives no such promise.
        const part = body.byteOffset % 4 === 0 ? new Float32Array(body.buffer, body.byteOffset, body.length / 4) : new Float32Array(Uint8Array.from(body).buffer)
        const p = this.entry(step, seq)
        if (p.parts[from]) {
          this.fail(new AllReduceError(`rank ${from} sent step ${step} seq ${seq} twice: TP ranks are out of lockstep`))
          continue
        }
        p.parts[from] = part
        p.received++
        p.wake?.()
      }
    } catch (err) {
      if (!this.closed) this.fail(err as Error)
    }
  }

  private entry(step: number, seq: number): Pending {
    const key = `${step}:${seq}`
    let p = this.pending.get(key)
    if (!p) {
      p = { parts: new Array(this.size), received: 0, wake: null }
      this.pending.set(key, p)
    }
    return p
  }

  private fail(err: Error): void {
    this.failure ??= err
    for (const p of this.pending.values()) p.wake?.()
  }

  private send(peer: number, frames: Buffer[]): Promise<void> {
    const sock = this.peers[peer]!
    const tail = this.sendTails[peer]!.then(() => sock.send(frames))
    this.sendTails[peer] = tail.catch(() => {})
    return tail
  }

  async allReduce(step: number, seq: number, data: Float32Array): Promise<Float32Array> {
    if (this.size === 1) return data
    if (this.closed) throw new AllReduceError('all-reduce after close')
    const t0 = performance.now()
    const header = Buffer.alloc(HEADER_BYTES)
    header.writeDoubleLE(step, 0)
    header.writeUInt32LE(seq, 8)
    header.writeUInt32LE(this.rank, 12)
    const body = Buffer.from(data.buffer, data.byteOffset, data.byteLength)
    const sends: Promise<void>[] = []
    for (let r = 0; r < this.size; r++) if (r !== this.rank) sends.push(this.send(r, [header, body]))
    this.stats.bytesSent += data.byteLength * (this.size - 1)

    const key = `${step}:${seq}`
    const p = this.entry(step, seq)
    try {
      await Promise.all([...sends, this.arrival(p, step, seq)])
    } finally {
      this.pending.delete(key)
    }
    const out = new Float32Array(data.length)
    for (let r = 0; r < this.size; r++) {
      const part = r === this.rank ? data : p.parts[r]!
      if (part.length !== data.length) throw new AllReduceError(`rank ${r} sent ${part.length} values for step ${step} seq ${seq}, this rank has ${data.length}: TP ranks are out of lockstep`)
      if (r === 0) out.set(part)
      else for (let i = 0; i < out.length; i++) out[i]! += part[i]!
    }
    this.stats.calls++
    this.stats.totalMs += performance.now() - t0
    return out
  }

  private arrival(p: Pending, step: number, seq: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined
      const check = (): void => {
        if (this.failure) reject(this.failure)
        else if (p.received === this.size - 1) resolve()
        else return
        p.wake = null
        if (timer) clearTimeout(timer)
      }
      p.wake = check
      if (this.timeoutMs > 0) {
        timer = setTimeout(() => {
          const missing: number[] = []
          for (let r = 0; r < this.size; r++) if (r !== this.rank && !p.parts[r]) missing.push(r)
          p.wake = null
          reject(new AllReduceError(`all-reduce step ${step} seq ${seq}: no partial from rank ${missing.join(', ')} after ${this.timeoutMs} ms (a peer is gone or the group is out of lockstep)`))
        }, this.timeoutMs)
      }
      check()
    })
  }

  /** Closes the sockets; calls in flight fail. */
  close(): void {
    if (this.closed) return
    this.closed = true
    this.fail(new AllReduceError('all-reduce closed'))
    this.inbox?.close()
    for (const s of this.peers) s?.close()
  }
}
