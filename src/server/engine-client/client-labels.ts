/**
 * Bounded metric labels for clients: the first CLIENT_LABELS distinct clients seen keep their own
 * label, every later one is counted as `other`. First come rather than a moving top-K, because a
 * counter's label may not change once it has counted: a client's series stays one series. Client
 * ids never hold a key (client-id.ts), so a label never does either.
 */
export const CLIENT_LABELS = 16
export const OTHER_CLIENT = 'other'

export class ClientLabels {
  private readonly named = new Set<string>()

  constructor(private readonly limit = CLIENT_LABELS) {}

  label(client: string | undefined): string {
    if (client === undefined || client === OTHER_CLIENT) return OTHER_CLIENT
    if (this.named.has(client)) return client
    if (this.named.size >= this.limit) return OTHER_CLIENT
    this.named.add(client)
    return client
  }
}
