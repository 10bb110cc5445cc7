/** The one options type every route plugin takes: what the routes need from the running server. */
import type { ChildInfo } from '../launcher.ts'
import type { Engine } from '../engine.ts'
import type { ProcessStats, TraceSetting } from '../../ipc/messages.ts'
import type { ServingInfo } from '../serving-info.ts'

export interface HealthStatus {
  ready: boolean
  processes: ChildInfo[]
  reports: ProcessStats[]
}

export interface RoutesOptions {
  engine: Engine
  info: ServingInfo
  contextLength: number
  status: () => HealthStatus
  /** Sends a run-time trace setting to every process. */
  broadcast: (msg: TraceSetting) => void
}
