/**
 * The tests that read a real server's logs and /metrics closely: a client that hangs up, per-client
 * accounting and the KV share, logprobs, n choices and best_of, seeds and batching. Each is its own
 * module (`*.suite.ts`), against one server with debug logs, 50 ms reports and a 4096-token KV budget
 * (OBSERVED in test/helpers/shared-server.ts), booted once for all of them. The modules' tests run
 * one after another, in this order: the hang-up first, as it waits for the first abort the scheduler
 * logs, and the per-client accounting before any request is aborted.
 */
import './disconnect.suite.ts'
import './client-fairness.suite.ts'
import './logprobs.suite.ts'
import './n-choices.suite.ts'
import './sampling.suite.ts'
