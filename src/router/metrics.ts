/**
 * The router's /metrics, Prometheus text under `spanserve:router_`: requests each instance answered,
 * the policy's decisions (cache_hit / cache_miss / load_balanced, or round_robin under --policy
 * round_robin; the cache-aware hit rate is cache_hit over the first three), attempts that failed
 * before a response and the retries they caused, the errors the router answered itself, and each
 * instance's health, load and tree size. Under prefill/decode disaggregation also the bootstrap
 * rooms (prefill/decode pairs) sent, and how each room's prefill request ended.
 */
import client from 'prom-client'
import type { Decision } from './policy.ts'
import type { Instance } from './instances.ts'

export type PrefillOutcome = 'ok' | 'http_error' | 'failed' | 'cancelled'

export class RouterMetrics {
  readonly registry = new client.Registry()
  private readonly requests = new client.Counter({
    name: 'spanserve:router_requests_total',
    help: 'Requests an instance answered (a response arrived), by instance.',
    labelNames: ['instance'],
    registers: [this.registry],
  })
  private readonly decisions = new client.Counter({
    name: 'spanserve:router_decisions_total',
    help: 'Routing decisions: cache_hit (longest prefix match above --cache-threshold), cache_miss (least loaded), load_balanced (load out of balance past the thresholds); round_robin under --policy round_robin.',
    labelNames: ['decision'],
    registers: [this.registry],
  })
  private readonly failures = new client.Counter({
    name: 'spanserve:router_upstream_failures_total',
    help: 'Attempts that failed before any response byte, by instance.',
    labelNames: ['instance'],
    registers: [this.registry],
  })
  private readonly retries = new client.Counter({
    name: 'spanserve:router_retries_total',
    help: 'Requests sent to a second instance after the first failed before any response byte.',
    registers: [this.registry],
  })
  private readonly rooms = new client.Counter({
    name: 'spanserve:router_bootstrap_rooms_total',
    help: 'Prefill/decode disaggregation: pairs sent, each a prefill request and a decode request under one bootstrap room (a decode retry is a new pair).',
    registers: [this.registry],
  })
  private readonly prefills = new client.Counter({
    name: 'spanserve:router_prefill_outcomes_total',
    help: "Prefill/decode disaggregation: how each room's prefill request ended: ok (2xx), http_error (another status; the decode instance prefills itself after its transfer timeout), failed (no answer even after the retry on another prefill instance), cancelled (the client left or the decode attempt failed).",
    labelNames: ['outcome'],
    registers: [this.registry],
  })
  private readonly errors = new client.Counter({ name: 'spanserve:router_errors_total', help: 'Errors the router answered itself, by code.', labelNames: ['code'], registers: [this.registry] })

  constructor(instances: () => Instance[]) {
    const perInstance = (name: string, help: string, value: (i: Instance) => number) =>
      new client.Gauge({
        name,
        help,
        labelNames: ['instance'],
        registers: [this.registry],
        collect() {
          this.reset()
          for (const i of instances()) this.set({ instance: i.url }, value(i))
        },
      })
    perInstance('spanserve:router_instance_healthy', '1 while the instance takes new requests (its last health check passed).', (i) => (i.healthy ? 1 : 0))
    perInstance('spanserve:router_instance_in_flight', 'Requests in flight on the instance through this router.', (i) => i.load)
    perInstance('spanserve:router_instance_tree_chars', "Characters in the instance's approximate radix tree.", (i) => i.tree.size)
    for (const decision of ['cache_hit', 'cache_miss', 'load_balanced']) this.decisions.inc({ decision }, 0)
  }

  decided(decision: Decision): void {
    this.decisions.inc({ decision })
  }

  answered(instance: Instance): void {
    this.requests.inc({ instance: instance.url })
  }

  failed(instance: Instance): void {
    this.failures.inc({ instance: instance.url })
  }

  retried(): void {
    this.retries.inc()
  }

  roomSent(): void {
    this.rooms.inc()
  }

  prefillEnded(outcome: PrefillOutcome): void {
    this.prefills.inc({ outcome })
  }

  error(code: string): void {
    this.errors.inc({ code })
  }

  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() }
  }
}
