/** The V8 old-generation limit this process started with (src/server/supervisor/spawn-child.ts), null for V8's default. */
export function initialOldSpaceMb(): number | null {
  const flags = process.execArgv.filter((a) => a.startsWith('--initial-old-space-size='))
  const last = flags[flags.length - 1]
  return last === undefined ? null : Number(last.slice(last.indexOf('=') + 1))
}
