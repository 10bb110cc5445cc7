/**
 * ZeroMQ plumbing: an Inbox (PULL, bound) that dispatches decoded messages by type, and Outboxes
 * (PUSH, connected) that serialise sends, since a zeromq.js socket takes one send at a time.
 */
import * as zmq from 'zeromq'
import { decode, encode } from './codec.ts'
import { bindOptions, connectOptions, type CurveKeys } from './curve.ts'
import type { Message, MessageOf, MessageType } from './messages.ts'

export type Handlers = { [T in MessageType]?: (msg: MessageOf<T>) => void }

export class Inbox {
  private readonly sock: zmq.Pull
  private closed = false

  /** `keys`: CURVE keys, by default the process's (--ipc-secret). */
  constructor(
    readonly address: string,
    private readonly handlers: Handlers,
    private readonly onBadMessage: (err: unknown) => void,
    keys?: CurveKeys | null,
  ) {
    this.sock = new zmq.Pull({ linger: 0, ...bindOptions(keys) })
  }

  async bind(): Promise<void> {
    await this.sock.bind(this.address)
    void this.loop()
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

export class Outbox {
  private sock: zmq.Push
  private readonly queue: Buffer[][] = []
  private draining = false
  private closed = false

  constructor(
    readonly address: string,
    private readonly keys?: CurveKeys | null,
  ) {
    this.sock = this.open()
  }

  // immediate: nothing is queued for a peer that is not connected; sends wait (in order) until it is.
  private open(): zmq.Push {
    const sock = new zmq.Push({ linger: 0, sendHighWaterMark: 100_000, immediate: true, ...connectOptions(this.keys) })
    sock.connect(this.address)
    return sock
  }

  /** Never blocks the caller; messages leave in order. */
  post(msg: Message): void {
    if (this.closed) return
    this.queue.push(encode(msg))
    if (!this.draining) void this.drain()
  }

  private async drain(): Promise<void> {
    this.draining = true
    try {
      while (this.queue.length > 0 && !this.closed) {
        const frames = this.queue.shift()!
        await this.sock.send(frames)
      }
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
    this.queue.length = 0
    if (this.closed) return
    this.sock.close()
    this.sock = this.open()
  }

  close(): void {
    this.closed = true
    this.queue.length = 0
    this.sock.close()
  }
}
