#!/usr/bin/env node
// The `spanserve` command. The tools are TypeScript run as source (as everything in spanserve
// is), so tsx's loader is registered before they are imported.
import { register } from 'tsx/esm/api'

register()
if (process.argv[2] === 'router') {
  // `spanserve router …`: the router reads its flags from process.argv, as `npm run router` gives them.
  process.argv.splice(2, 1)
  await import('../src/router/main.ts')
} else if (process.argv[2] === 'build-model') {
  // `spanserve build-model …`: the embedded model, or a quantized file of a model directory.
  process.argv.splice(2, 1)
  await import('../src/model/cli.ts')
} else {
  const { runCli } = await import('../src/trace-tools/cli.ts')
  await runCli(process.argv.slice(2))
}
