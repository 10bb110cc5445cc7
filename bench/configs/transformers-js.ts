/**
 * The transformers.js configuration: bench/transformers-js-server.ts in its own process (as the
 * spanserve server is), measured by the same load client.
 */
import { join } from 'node:path'
import { ROOT } from '../../harness/server.ts'
import { JsonLineChild } from '../child-lines.ts'

/** Why transformers.js cannot run here, or null when it can be imported. */
export async function transformersJsUnavailable(): Promise<string | null> {
  try {
    await import('@huggingface/transformers')
    return null
  } catch (err) {
    return `@huggingface/transformers cannot be imported: ${(err as Error).message.split('\n')[0]}`
  }
}

export async function startTransformersJs(modelDir: string): Promise<{ url: string; pids(): Record<string, number>; stop(): Promise<void> }> {
  const child = JsonLineChild.start('transformers.js server', ['--import', 'tsx', join(ROOT, 'bench/transformers-js-server.ts'), modelDir])
  try {
    const { port } = await child.waitFor((l) => typeof l.port === 'number', 180_000)
    return { url: `http://127.0.0.1:${String(port)}`, pids: () => ({ server: child.proc.pid! }), stop: () => child.stop() }
  } catch (err) {
    await child.stop()
    throw err
  }
}
