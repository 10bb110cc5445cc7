#!/usr/bin/env node
// The `spanserve` command. The tools are TypeScript run as source (as everything in spanserve
// is), so tsx's loader is registered before they are imported.
import { register } from 'tsx/esm/api'

register()
const { runCli } = await import('../src/trace-tools/cli.ts')
await runCli(process.argv.slice(2))
