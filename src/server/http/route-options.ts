/** The one options type every route plugin takes: what the routes need from the running server. */
import type { ChildInfo } from '../supervisor/launcher.ts'
import type { EngineClient } from '../engine-client/engine-client.ts'
import type { ProcessStats, TraceSetting } from '../../ipc/messages.ts'
import type { ServingInfo } from './serving-info.ts'
import type { DumpResult } from '../supervisor/trace-dump.ts'

export interface HealthStatus {
  ready: boolean
  processes: ChildInfo[]
  reports: ProcessStats[]
}

export interface RoutesOptions {
  engine: EngineClient
  info: ServingInfo
  contextLength: number
  status: () => HealthStatus
  /** Sends a run-time trace setting to every process. */
  broadcast: (msg: TraceSetting) => void
  /** Exports the flight recorder's window of every process (POST /v1/trace/dump). */
  dumpTraces: () => Promise<DumpResult>
}
