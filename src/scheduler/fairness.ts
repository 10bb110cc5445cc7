/**
 * Fair sharing between clients: the Virtual Token Counter (VTC) of Sheng et al., "Fairness in
 * Serving Large Language Models" (OSDI 2024), plus a fair split of the batch's slots.
 *
 * - Each client has a counter of the service it received: W_IN per prompt token when a sequence is
 *   admitted, W_OUT per token generated (the paper's weights, output being the costlier).
 * - A client that becomes active (its first live sequence) has its counter lifted to the least
 *   counter of the other active clients (or, with none, the last one to go idle): idle time is not
 *   banked, and service received while alone is not held against it either.
 * - Admission takes the waiting client with the least counter, first come first served within it.
 * - Slots: VTC alone orders admissions, but a client whose 128 sequences were admitted before anyone
 *   else came holds every slot until they end. So a client holding fewer than its fair share of the
 *   batch (max batch / active clients) may be admitted beyond a full batch, and when more sequences
 *   are admitted than the batch holds, each step runs a max-min fair split of the slots between
 *   clients; the rest sit the step out. They keep their KV (reserved whole at admission) and the
 *   worker keeps their state, so sitting out costs them time only: no recompute, no swap.
 * A single client sees none of this: its admissions and steps are first come, first served as before.
 * The sequences of an n > 1 request are each the client's.
 */

/** The paper's weights: service of one prompt token and of one generated token. */
export const W_IN = 1
export const W_OUT = 2

/** Most idle clients whose counters are remembered; beyond it the least recently active are forgotten. */
const MAX_IDLE_CLIENTS = 4096

interface ClientState {
  counter: number
  /** Sequences waiting or admitted. */
  live: number
  /** Sequences admitted (holding KV). */
  held: number
}

/** What the fairness policy needs of a sequence. */
export interface ClientSeq {
  readonly client?: string
}

/** The client a sequence counts for ('' for a request that names none: one anonymous client). */
export function clientOf(seq: ClientSeq): string {
  return seq.client ?? ''
}

export class VirtualTokenCounter {
  /** Every client known: the active ones, and the idle ones remembered. */
  private readonly clients = new Map<string, ClientState>()
  /** Idle clients, longest idle first. */
  private readonly idle = new Set<string>()
  private active = 0
  private lastIdle = 0
  /** Clients gone idle lately, with when (performance.now()), oldest first: for recentClients(). */
  private readonly recentIdle = new Map<string, number>()
  /** Clients with a sequence waiting or admitted. */
  private readonly activeSet = new Set<string>()

  /** Clients with a sequence waiting or admitted. */
  get activeClients(): number {
    return this.active
  }

  /**
   * Short steps for light clients beside heavy ones: when a client holding more than `share`
   * admitted sequences shares the server with a light one (active with at most `share`, or gone
   * idle less than `windowMs` ago: between a chat's turns, a poller's requests), a step runs at most
   * `share` of each client's sequences, and this returns that step's size. null: no client is
   * heavy, or none is light, and the whole batch runs as before. The heavy client pays in
   * throughput, only while a light one is around.
   */
  stepLimit(now: number, windowMs: number, share: number): number | null {
    for (const [client, since] of this.recentIdle) {
      if (now - since < windowMs) break
      this.recentIdle.delete(client)
    }
    let heavy = false
    let light = this.recentIdle.size > 0
    let slots = 0
    for (const client of this.activeSet) {
      const held = this.held(client)
      if (held > share) heavy = true
      else light = true
      slots += Math.min(held, share)
    }
    return heavy && light ? slots : null
  }

  counter(client: string): number {
    return this.clients.get(client)?.counter ?? 0
  }

  /** Sequences of this client admitted now. */
  held(client: string): number {
    return this.clients.get(client)?.held ?? 0
  }

  /** A sequence of `client` arrives; its first live one lifts the client's counter (VTC's lift). */
  enter(client: string): void {
    let s = this.clients.get(client)
    if (!s) {
      s = { counter: 0, live: 0, held: 0 }
      this.clients.set(client, s)
    }
    if (s.live > 0) {
      s.live++
      return
    }
    this.idle.delete(client)
    this.recentIdle.delete(client)
    s.counter = Math.max(s.counter, this.active > 0 ? this.minActive() : this.lastIdle)
    s.live = 1
    this.active++
    this.activeSet.add(client)
  }

  /** A sequence of `client` left (finished, aborted, failed) from the queue or the batch. */
  leave(client: string, wasAdmitted: boolean): void {
    const s = this.clients.get(client)
    if (!s || s.live === 0) return
    if (wasAdmitted && s.held > 0) s.held--
    if (--s.live > 0) return
    this.active--
    this.activeSet.delete(client)
    this.lastIdle = s.counter
    this.recentIdle.set(client, performance.now())
    this.idle.add(client)
    if (this.idle.size > MAX_IDLE_CLIENTS) this.forgetIdle()
  }

  /** A sequence was admitted: its prompt is service received. */
  admitted(client: string, promptTokens: number): void {
    const s = this.clients.get(client)
    if (!s) return
    s.held++
    s.counter += W_IN * promptTokens
  }

  generated(client: string, tokens: number): void {
    const s = this.clients.get(client)
    if (s) s.counter += W_OUT * tokens
  }

  /**
   * May a sequence of `client` be admitted with `running` admitted already? Always below `slots`;
   * beyond, only while the client holds less than its fair share and the batch stays under twice
   * its size. With one client the share is the whole batch: the plain limit.
   */
  mayAdmit(client: string, running: number, slots: number): boolean {
    if (running < slots) return true
    if (running >= 2 * slots) return false
    const share = Math.max(1, Math.floor(slots / Math.max(1, this.active)))
    return this.held(client) < share
  }

  /**
   * Which admitted sequences run this step when there are more than `slots` of them: a max-min fair
   * split between clients (one slot at a time, the least counter first), earliest first within a
   * client. The caller asks only when they do not all fit.
   */
  allot<T extends ClientSeq>(seqs: Iterable<T>, slots: number): Set<T> {
    const byClient = new Map<string, T[]>()
    for (const seq of seqs) {
      const c = clientOf(seq)
      const list = byClient.get(c)
      if (list) list.push(seq)
      else byClient.set(c, [seq])
    }
    const order = [...byClient.keys()].sort((a, b) => this.counter(a) - this.counter(b))
    const chosen = new Set<T>()
    const given = new Map<string, number>()
    let left = slots
    while (left > 0) {
      let progressed = false
      for (const c of order) {
        if (left === 0) break
        const list = byClient.get(c)!
        const i = given.get(c) ?? 0
        if (i >= list.length) continue
        chosen.add(list[i]!)
        given.set(c, i + 1)
        left--
        progressed = true
      }
      if (!progressed) break
    }
    return chosen
  }

  /** Everything was dropped (a peer process died): no sequence is live; counters stay. */
  reset(): void {
    for (const [client, s] of this.clients) {
      if (s.live > 0) this.idle.add(client)
      s.live = 0
      s.held = 0
    }
    this.active = 0
    this.activeSet.clear()
  }

  private minActive(): number {
    let min = Infinity
    for (const s of this.clients.values()) if (s.live > 0 && s.counter < min) min = s.counter
    return min
  }

  /**
   * Bounded memory: forget idle clients. Those at or below the floor lose nothing (they would be
   * lifted to it on return); then the longest idle, whose history is forgiven.
   */
  private forgetIdle(): void {
    const floor = this.active > 0 ? this.minActive() : this.lastIdle
    for (const client of this.idle) {
      if (this.clients.get(client)!.counter <= floor) {
        this.idle.delete(client)
        this.clients.delete(client)
      }
    }
    for (const client of this.idle) {
      if (this.idle.size <= MAX_IDLE_CLIENTS / 2) break
      this.idle.delete(client)
      this.clients.delete(client)
    }
  }
}
