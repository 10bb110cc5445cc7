/**
 * A run of free TCP ports on loopback for tcp:// endpoints, below the kernel's ephemeral range
 * (32768 and up here) so that no outgoing connection of a concurrent test can take one of them.
 */
import { createServer } from 'node:net'

function free(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer()
    s.once('error', () => resolve(false))
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)))
  })
}

export async function freePortRange(count: number): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20000 + Math.floor(Math.random() * (32000 - 20000 - count))
    let ok = true
    for (let p = base; p < base + count && ok; p++) ok = await free(p)
    if (ok) return base
  }
  throw new Error(`no run of ${count} free ports found`)
}
