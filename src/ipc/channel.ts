/**
 * ZeroMQ plumbing: an Inbox (PULL, bound) that dispatches decoded messages by type, and Outboxes
 * (PUSH, connected) that serialise sends, since a zeromq.js socket takes one send at a time, and
 * put the sender's trace context on every request message (trace-carriers.ts).
 */
import Denque from 'denque'
import * as zmq from 'zeromq'
import { decode, encode } from './codec.ts'
import { bindOptions, connectOptions, type CurveKeys } from './curve.ts'
import type { Message, MessageOf, MessageType } from './messages.ts'
import { fillCarriers } from './trace-carriers.ts'
import { getPropagateContext, isTracingEnabled } from '../tracing/index.ts'

export type Handlers = { [T in MessageType]?: (msg: MessageOf<T>) => void }

export class Inbox {
  private readonly sock: zmq.Pull
  private closed = false

  /**
   * `keys`: CURVE keys, by default the process's (--ipc-secret). `maxMessageBytes`: a larger message
   * drops its sender's connection (ZeroMQ's maxMessageSize), for a socket peers outside the process
   * tree reach (default: no limit).
   */
  constructor(
    readonly address: string,
    private readonly handlers: Handlers,
    private readonly onBadMessage: (err: unknown) => void,
    keys?: CurveKeys | null,
    maxMessageBytes?: number,
  ) {
    this.sock = new zmq.Pull({ linger: 0, ...(maxMessageBytes === undefined ? {} : { maxMessageSize: maxMessageBytes }), ...bindOptions(keys) })
  }

  async bind(): Promise<void> {
    await this.sock.bind(this.address)
    void this.loop()
  }

  /** The address bound (a tcp port of * or 0 resolved), once bind() has resolved. */
  get boundAddress(): string | null {
    return this.sock.lastEndpoint
  }

  private async loop(): Promise<void> {
    try {
      for await (const frames of this.sock) {
        let msg: Message
        try {
          msg = decode(frames)
        } catch (err) {
          this.onBadMessage(err)
          continue
        }
        const handler = this.handlers[msg.type] as ((m: Message) => void) | undefined
        if (!handler) {
          this.onBadMessage(new Error(`no handler for message type ${msg.type}`))
          continue
        }
        try {
          handler(msg)
        } catch (err) {
          // One bad message must not stop the inbox: report it and go on with the next.
          this.onBadMessage(err)
        }
      }
    } catch (err) {
      if (!this.closed) this.onBadMessage(err)
    }
  }

  close(): void {
    this.closed = true
    this.sock.close()
  }
}

/**
 * Messages an Outbox holds for its socket. They queue only while ZeroMQ holds its own high-water mark
 * of 100,000 for the peer, or the peer is not connected: a full queue means the peer stopped reading.
 */
const SEND_QUEUE_CAPACITY = 65_536

/** An Outbox whose queue was full refused a message (the first of a run of refusals). */
export interface SendQueueFull {
  address: string
  type: MessageType
  capacity: number
}

let sendQueueFull = (e: SendQueueFull): void => {
  process.emitWarning(`IPC send queue to ${e.address} is full (${e.capacity} messages): ${e.type} and what follows are dropped until it drains`, 'SpanserveIpcWarning')
}

/**
 * What the process does when an Outbox's queue overflows, once per run of refusals. By default a
 * warning; a child process fails instead (process/child.ts): nearly everything it sends is part of
 * a request or of a step, whose loss would leave requests hanging without a word.
 */
export function onSendQueueFull(handler: (e: SendQueueFull) => void): void {
  sendQueueFull = handler
}

export class Outbox {
  private sock: zmq.Push
  private readonly queue = new Denque<Buffer[]>()
  private draining = false
  private closed = false
  /** Set from the first refused message until the queue drains: the overflow is reported once. */
  private overflowing = false
  /** Messages refused because the queue was full, since the Outbox opened. */
  dropped = 0

  /** Messages waiting for the socket (the peer slow, or not connected). */
  get queued(): number {
    return this.queue.length
  }

  constructor(
    readonly address: string,
    private readonly keys?: CurveKeys | null,
    private readonly capacity = SEND_QUEUE_CAPACITY,
  ) {
    this.sock = this.open()
  }

  // immediate: nothing is queued for a peer that is not connected; sends wait (in order) until it is.
  private open(): zmq.Push {
    const sock = new zmq.Push({ linger: 0, sendHighWaterMark: 100_000, immediate: true, ...connectOptions(this.keys) })
    sock.connect(this.address)
    return sock
  }

  /**
   * Never blocks the caller nor throws; messages leave in order. A request message leaves with the
   * sender's trace context for its request. False when the message was refused: the queue is full
   * (counted in `dropped`, reported once per overflow) or the Outbox closed.
   */
  post(msg: Message): boolean {
    if (this.closed) return false
    if (this.queue.length >= this.capacity) {
      this.dropped++
      if (!this.overflowing) {
        this.overflowing = true
        sendQueueFull({ address: this.address, type: msg.type, capacity: this.capacity })
      }
      return false
    }
    if (isTracingEnabled()) fillCarriers(msg, getPropagateContext)
    this.queue.push(encode(msg))
    if (!this.draining) void this.drain()
    return true
  }

  private async drain(): Promise<void> {
    this.draining = true
    try {
      let frames: Buffer[] | undefined
      while (!this.closed && (frames = this.queue.shift()) !== undefined) await this.sock.send(frames)
      this.overflowing = false
    } catch {
      // Closed under us (discard or close): what was pending has no receiver any more.
    } finally {
      this.draining = false
      if (this.queue.length > 0 && !this.closed) void this.drain()
    }
  }

  /**
   * Drop everything that has not reached the receiver: it died and its requests were failed. The
   * socket is replaced too, because a send already handed to ZeroMQ would otherwise wait for the
   * restarted process and deliver it a message meant for the dead one.
   */
  discard(): void {
    this.queue.clear()
    this.overflowing = false
    if (this.closed) return
    this.sock.close()
    this.sock = this.open()
  }

  close(): void {
    this.closed = true
    this.queue.clear()
    this.sock.close()
  }
}
