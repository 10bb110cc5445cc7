/**
 * `spanserve trace show|perfetto|explain FILE… …`: reads trace files written by `--trace-exporter file`
 * (or the Collector's file exporter) and shows it in a terminal, converts it for Perfetto, or
 * explains where one request's time went.
 * Exit status: 0 ok, 1 unreadable file or no such trace, 2 bad arguments.
 */
import { writeFile } from 'node:fs/promises'
import { parseArgs, type ParseArgsConfig } from 'node:util'
import { ExplainError, explainRequest, explanationJson, renderExplanation } from './explain.ts'
import { readOtlpJsonFile, TraceFileError } from './otlp-json.ts'
import { formatChromeTrace, toChromeTrace } from './perfetto.ts'
import { SpanIndex } from './span-index.ts'
import type { SpanRecord } from './span-record.ts'
import { DEFAULT_BAR_WIDTH, renderTraceList, renderWaterfall } from './waterfall.ts'

export interface CliIo {
  stdout: (text: string) => void
  stderr: (text: string) => void
}

export const USAGE = `Usage:
  spanserve trace show FILE... [--rid ID | --trace ID] [--width N]
  spanserve trace perfetto FILE... [-o OUT] [--rid ID | --trace ID]
  spanserve trace explain FILE... [--rid ID | --trace ID] [--json]

Reads OTLP JSON-lines trace files (spanserve --trace-exporter file --trace-file FILE,
or the OpenTelemetry Collector's file exporter); several files are read as one (a
trace across a router and its instances, each with its own file).

  show      without --rid or --trace: list the traces in FILE, one per line;
            with one of them: that request's spans as a waterfall
  perfetto  convert to Chrome Trace Event JSON for https://ui.perfetto.dev or
            chrome://tracing (all traces unless --rid or --trace)
  explain   where one request's time went (queue, prefill, decode, stalls behind
            other requests' prefills, restarts) against the median of the others
            in FILE; the slowest request unless --rid or --trace

Options:
  --rid ID          the request whose spanserve.request.id is ID
  --trace ID        the trace with this id (a unique prefix will do)
  --width N         waterfall bar width in characters (default ${DEFAULT_BAR_WIDTH}, 10 to 400)
  -o, --output OUT  write the JSON to OUT instead of stdout
  --json            explain: print JSON instead of a table
  -h, --help        show this text

Exit status: 0 ok, 1 unreadable file or no such trace, 2 bad arguments.
`

const SELECT_OPTIONS = {
  rid: { type: 'string' },
  trace: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies ParseArgsConfig['options']

const COMMAND_OPTIONS = {
  show: { ...SELECT_OPTIONS, width: { type: 'string' } },
  perfetto: { ...SELECT_OPTIONS, output: { type: 'string', short: 'o' } },
  explain: { ...SELECT_OPTIONS, json: { type: 'boolean' } },
} as const

type Command = keyof typeof COMMAND_OPTIONS

/** Bad arguments: reported with the usage text, exit status 2. */
class UsageError extends Error {}
/** A file or trace that cannot be had: exit status 1. */
class InputError extends Error {}

export async function main(argv: readonly string[], io: CliIo): Promise<number> {
  try {
    return await run(argv, io)
  } catch (err) {
    if (err instanceof UsageError) {
      io.stderr(`spanserve: ${err.message}\n\n${USAGE}`)
      return 2
    }
    if (err instanceof InputError || err instanceof TraceFileError || err instanceof ExplainError) {
      io.stderr(`spanserve: ${err.message}\n`)
      return 1
    }
    throw err
  }
}

/** The bin's entry: process streams, exit code, and a closed pipe (`| head`) is not an error. */
export async function runCli(argv: readonly string[]): Promise<void> {
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0)
    throw err
  })
  process.exitCode = await main(argv, {
    stdout: (text) => void process.stdout.write(text),
    stderr: (text) => void process.stderr.write(text),
  })
}

async function run(argv: readonly string[], io: CliIo): Promise<number> {
  const [group, command, ...rest] = argv
  const wantsHelp = (arg: string | undefined): boolean => arg === '-h' || arg === '--help' || arg === 'help'
  if (wantsHelp(group) || (group === 'trace' && wantsHelp(command))) {
    io.stdout(USAGE)
    return 0
  }
  if (group === undefined) throw new UsageError('missing command')
  if (group !== 'trace') throw new UsageError(`unknown command '${group}'`)
  if (command === undefined) throw new UsageError('missing subcommand: show, perfetto or explain')
  if (!isCommand(command)) throw new UsageError(`unknown subcommand 'trace ${command}'`)

  let parsed: { values: unknown; positionals: string[] }
  try {
    parsed = parseArgs({ args: [...rest], options: COMMAND_OPTIONS[command], allowPositionals: true, strict: true })
  } catch (err) {
    throw new UsageError((err as Error).message)
  }
  const values = parsed.values as { rid?: string; trace?: string; help?: boolean; width?: string; output?: string; json?: boolean }
  if (values.help === true) {
    io.stdout(USAGE)
    return 0
  }
  if (parsed.positionals.length === 0) throw new UsageError('missing FILE')
  if (values.rid !== undefined && values.trace !== undefined) throw new UsageError('give --rid or --trace, not both')
  const width = values.width === undefined ? DEFAULT_BAR_WIDTH : parseWidth(values.width)

  // Several files make one set of spans: a trace across instances (a router and its prefill and
  // decode instances, each with its own --trace-file) is whole only in all of them.
  const files = parsed.positionals
  const file = files.join(', ')
  const spans = (await Promise.all(files.map((f) => readSpans(f, io)))).flat()
  const index = new SpanIndex(spans)
  const selected = values.rid !== undefined || values.trace !== undefined ? selectTraces(index, values, file) : undefined

  if (command === 'explain') {
    const explanation = explainRequest(index, selected === undefined ? {} : { traceIds: selected, ...(values.rid !== undefined ? { rid: values.rid } : {}) })
    io.stdout(values.json === true ? explanationJson(explanation, file) : renderExplanation(explanation, file))
    return 0
  }

  if (command === 'show') {
    if (selected === undefined) io.stdout(renderTraceList(index.summaries()))
    else io.stdout(selected.map((traceId) => renderWaterfall(index, traceId, { width })).join('\n'))
    return 0
  }

  const chosen = selected === undefined ? spans : spans.filter((s) => selected.includes(s.traceId))
  const json = formatChromeTrace(toChromeTrace(chosen))
  if (values.output === undefined) {
    io.stdout(json)
    return 0
  }
  try {
    await writeFile(values.output, json)
  } catch (err) {
    throw new InputError(`cannot write ${values.output}: ${(err as Error).message}`)
  }
  const traces = new Set(chosen.map((s) => s.traceId)).size
  io.stderr(`wrote ${values.output}: ${chosen.length} spans in ${traces} trace(s); open it at https://ui.perfetto.dev\n`)
  return 0
}

function isCommand(s: string): s is Command {
  return Object.hasOwn(COMMAND_OPTIONS, s)
}

function parseWidth(raw: string): number {
  const n = Number(raw)
  if (!/^\d+$/.test(raw) || n < 10 || n > 400) throw new UsageError(`--width must be a whole number from 10 to 400, got '${raw}'`)
  return n
}

async function readSpans(file: string, io: CliIo): Promise<SpanRecord[]> {
  try {
    return await readOtlpJsonFile(file, { warn: (m) => io.stderr(`spanserve: warning: ${m}\n`) })
  } catch (err) {
    if (err instanceof TraceFileError) throw err
    const e = err as NodeJS.ErrnoException
    throw new InputError(`cannot read ${file}: ${e.code === 'ENOENT' ? 'no such file' : e.code === 'EISDIR' ? 'is a directory' : e.message}`)
  }
}

function selectTraces(index: SpanIndex, by: { rid?: string; trace?: string }, file: string): string[] {
  if (by.rid !== undefined) {
    const found = index.tracesWithRequestId(by.rid)
    if (found.length === 0) throw new InputError(`no request with rid ${by.rid} in ${file}`)
    return found
  }
  const wanted = by.trace!.toLowerCase()
  const ids = index.traceIds()
  if (ids.includes(wanted)) return [wanted]
  const found = wanted.length === 0 ? [] : ids.filter((id) => id.startsWith(wanted))
  if (found.length === 0) throw new InputError(`no trace ${by.trace} in ${file}`)
  if (found.length > 1) throw new InputError(`trace id prefix ${by.trace} matches ${found.length} traces in ${file}; give more of it`)
  return found
}
