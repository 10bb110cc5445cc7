// The body thread's entry (see thread.ts). Worker threads do not inherit the tsx loader that
// `node --import tsx` registers for the main thread, so this one registers it first.
import { register } from 'tsx/esm/api'

register()
await import('./thread-main.ts')
