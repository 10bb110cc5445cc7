// The tracing thread's entry (see offload.ts). Worker threads do not inherit the tsx loader that
// `node --import tsx` registers for the main thread, so this one registers it before loading the
// TypeScript module.
import { register } from 'tsx/esm/api'

register()
await import('./offload-thread.ts')
