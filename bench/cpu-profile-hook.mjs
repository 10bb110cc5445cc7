/**
 * Plain JavaScript, so that it loads before tsx. Loaded through NODE_OPTIONS=--import (Node 20 refuses --cpu-prof there) into the server and every
 * child it starts: profiles the whole process with the inspector's sampling profiler and writes a
 * .cpuprofile (the format --cpu-prof writes) into $SPANSERVE_BENCH_CPU_PROF_DIR when the process exits.
 * Sampling starts at SIGUSR2.
 */
import { Session } from 'node:inspector'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'

const dir = process.env.SPANSERVE_BENCH_CPU_PROF_DIR
if (dir) {
  const session = new Session()
  session.connect()
  session.post('Profiler.enable')
  session.post('Profiler.setSamplingInterval', { interval: 500 })
  // Started by SIGUSR2 once the bench has warmed the server up, so start-up is not in the profile.
  process.on('SIGUSR2', () => session.post('Profiler.start'))
  process.on('exit', () => {
    // The in-process inspector answers synchronously, so this completes inside the exit handler.
    session.post('Profiler.stop', (err, res) => {
      if (!err) writeFileSync(join(dir, `CPU.${process.pid}.cpuprofile`), JSON.stringify(res.profile))
    })
  })
}
