/**
 * A real server shared by the test modules (`*.suite.ts`) that one test file imports in turn, in
 * place of a server booted per file (four processes, several CPU-seconds each): the first module to
 * ask for a configuration starts it, the others get the same one, and it is stopped, with its
 * children by their own process ids, when the file's tests are done. The modules' tests run one
 * after another in import order, so each sees the server alone; what they read of its shared state
 * (logs, metrics) they read as a difference or by request id.
 */
import t from 'tap'
import { startServer, type RunningServer, type StartOptions } from '../../harness/server.ts'

/**
 * The server of test/server/observed-server.test.ts: debug logs (the scheduler's per-step batch
 * sizes), process reports every 50 ms (the /metrics gauges follow a request closely), and a KV
 * budget of 4096 tokens (at the default share, one request may reserve 2048).
 */
export const OBSERVED: StartOptions = { args: ['--log-level', 'debug', '--stats-interval', '0.05', '--max-total-tokens', '4096'] }

const servers = new Map<string, Promise<RunningServer>>()

export function sharedServer(opts: StartOptions = {}): Promise<RunningServer> {
  const key = JSON.stringify(opts)
  let server = servers.get(key)
  if (server === undefined) {
    const started = startServer(opts)
    server = started
    servers.set(key, started)
    t.teardown(async () => {
      await (await started).stop()
    })
  }
  return server
}
