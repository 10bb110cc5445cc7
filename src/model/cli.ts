// node --import tsx src/model/cli.ts [--preset default|large] [--out DIR]: build a model, print its directory.

import { parseArgs } from 'node:util'
import { buildModel, ensureModel } from './build.ts'
import { isPresetName } from './presets.ts'

const { values } = parseArgs({
  options: {
    preset: { type: 'string', default: 'default' },
    out: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
})

if (values.help) {
  process.stdout.write(
    'usage: cli.ts [--preset default|large] [--out DIR]\n' +
      '  --out DIR  write the model to DIR (must not exist); default: the cache\n' +
      '             ($SPANSERVE_CACHE_DIR or ~/.cache/spanserve/models)\n',
  )
  process.exit(0)
}
const preset = values.preset!
if (!isPresetName(preset)) {
  process.stderr.write(`unknown preset "${preset}" (expected default or large)\n`)
  process.exit(2)
}
const log = (line: string): void => void process.stderr.write(`${line}\n`)
const dir = values.out ? await buildModel(preset, values.out, log) : await ensureModel({ preset, log })
process.stdout.write(`${dir}\n`)
