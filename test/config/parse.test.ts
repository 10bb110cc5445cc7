import t from 'tap'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseConfig, helpText, ConfigError } from '../../src/config/parse.ts'
import { OPTIONS } from '../../src/config/schema.ts'
import { tracingOptions } from '../../src/config/tracing.ts'

t.test('defaults', async (t) => {
  const { config } = parseConfig([], {})
  t.equal(config.host, '127.0.0.1', 'binds loopback unless told otherwise')
  t.equal(config.port, 8000)
  t.equal(config.device, 'auto')
  t.equal(config.traceEnable, false)
  t.same(config.traceExcludeUrls, ['/health', '/metrics', '/v1/models'])
})

t.test('flags win over environment, environment over defaults', async (t) => {
  const env = { SPANSERVE_PORT: '9000', SPANSERVE_MAX_BATCH_SIZE: '8' }
  t.equal(parseConfig([], env).config.port, 9000)
  t.equal(parseConfig(['--port', '9100'], env).config.port, 9100)
  t.equal(parseConfig(['--port=9200'], env).config.maxBatchSize, 8)
})

t.test('OTEL_* variables win over FastDeploy aliases', async (t) => {
  const env = { OTEL_SERVICE_NAME: 'otel-name', FD_SERVICE_NAME: 'fd-name', EXPORTER_OTLP_ENDPOINT: 'fd:1', OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'otel:2' }
  const { config } = parseConfig([], env)
  t.equal(config.serviceName, 'otel-name')
  t.equal(config.otlpTracesEndpoint, 'otel:2')
  t.equal(parseConfig([], { FD_SERVICE_NAME: 'fd-name', TRACES_ENABLE: 'true' }).config.serviceName, 'fd-name')
  t.equal(parseConfig([], { TRACES_ENABLE: 'true' }).config.traceEnable, true)
  t.same(parseConfig([], { OTEL_EXPORTER_OTLP_HEADERS: 'a=1,b=x%3Dy' }).config.otlpTracesHeaders, { a: '1', b: 'x=y' })
  t.equal(parseConfig([], { OTEL_TRACES_SAMPLER: 'always_off' }).config.traceSampleRate, 0)
  t.equal(parseConfig([], { OTEL_TRACES_SAMPLER: 'traceidratio', OTEL_TRACES_SAMPLER_ARG: '0.25' }).config.traceIgnoreParentSampling, true)
})

t.test('aliases and SGLang spellings', async (t) => {
  t.equal(parseConfig(['--oltp-traces-endpoint', 'x:1']).config.otlpTracesEndpoint, 'x:1')
  t.equal(parseConfig(['--data-parallel-size', '2']).config.dpSize, 2)
  t.equal(parseConfig(['--trace-enable']).config.traceEnable, true)
  t.equal(parseConfig(['--trace-enable', 'false']).config.traceEnable, false)
  t.equal(parseConfig(['--no-trace-enable'], { TRACES_ENABLE: '1' }).config.traceEnable, false)
})

t.test('unknown flags and bad values are refused with a message', async (t) => {
  t.throws(() => parseConfig(['--nope']), { message: /unknown flag --nope/ })
  t.throws(() => parseConfig(['--port', 'abc']), { code: 'SPANSERVE_ERR_CONFIG', message: /expected an integer/ })
  t.throws(() => parseConfig(['--port', '70000']), { message: /at most 65535/ })
  t.throws(() => parseConfig(['--device', 'tpu']), { message: /auto, cpu, cuda/ })
  t.throws(() => parseConfig(['--max-batch-size', '1.5']), { message: /integer/ })
  t.throws(() => parseConfig(['--model']), { message: /needs a value/ })
  t.throws(() => parseConfig(['stray']), { message: /unexpected argument/ })
  t.throws(() => parseConfig([], { SPANSERVE_PORT: 'x' }), { message: /SPANSERVE_PORT/ })
})

t.test('--help lists every flag with its default', async (t) => {
  t.equal(parseConfig(['--help']).help, true)
  const help = helpText()
  for (const o of OPTIONS) {
    t.match(help, o.flag, `${o.flag} is listed`)
  }
  t.match(help, '(default: 8000')
})

t.test('collector endpoints are normalised per protocol', async (t) => {
  const grpc = tracingOptions(parseConfig(['--otlp-traces-endpoint', 'collector:4317']).config)
  t.equal(grpc.otlpEndpoint, 'http://collector:4317')
  t.equal(tracingOptions(parseConfig(['--otlp-traces-endpoint', 'grpc://c:4317']).config).otlpEndpoint, 'http://c:4317')
  const http = tracingOptions(parseConfig(['--otlp-traces-protocol', 'http/protobuf', '--otlp-traces-endpoint', 'http://c:4318']).config)
  t.equal(http.otlpEndpoint, 'http://c:4318/v1/traces')
  const defaultHttp = tracingOptions(parseConfig(['--otlp-traces-protocol', 'http/protobuf']).config)
  t.equal(defaultHttp.otlpEndpoint, 'http://localhost:4318/v1/traces')
})

t.test('continuous decode steps need TP size 1, where the worker samples every token itself', async (t) => {
  t.equal(parseConfig([]).config.numContinuousDecodeSteps, 1, 'one step per message by default, as SGLang')
  t.equal(parseConfig(['--num-continuous-decode-steps', '4', '--dp-size', '2']).config.numContinuousDecodeSteps, 4)
  t.throws(() => parseConfig(['--num-continuous-decode-steps', '4', '--tp-size', '2']), { message: /needs --tp-size 1/ })
  t.throws(() => parseConfig(['--num-continuous-decode-steps', '0']), { message: /at least 1/ })
})

t.test('multi-node options are checked together', async (t) => {
  t.throws(() => parseConfig(['--nnodes', '2', '--node-hosts', 'a,b']), { message: /needs --ipc tcp/ })
  t.throws(() => parseConfig(['--nnodes', '2', '--ipc', 'tcp://a:5000', '--node-hosts', 'a', '--tp-size', '2']), { message: /must name 2 hosts/ })
  t.throws(() => parseConfig(['--node-rank', '1']), { message: /not below --nnodes 1/ })
  t.throws(() => parseConfig(['--nnodes', '2', '--ipc', 'tcp://a:5000', '--node-hosts', 'a,b']), { message: /1 workers cannot be spread over 2 nodes/ })
  const { config } = parseConfig(['--nnodes', '2', '--node-rank', '1', '--ipc', 'tcp://a:5000', '--node-hosts', 'a,b', '--tp-size', '2'])
  t.same(config.nodeHosts, ['a', 'b'])
})

t.test('keys from files: the content is the key; the flag and the variable still work', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'spanserve-keys-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const file = (name: string, text: string) => {
    writeFileSync(join(dir, name), text, { mode: 0o600 })
    return join(dir, name)
  }
  const key = file('key', 'sk-from-file\n')
  const admin = file('admin', 'sk-admin-file\r\n')
  const { config } = parseConfig(['--api-key-file', key, '--admin-api-key-file', admin], {})
  t.equal(config.apiKey, 'sk-from-file', 'the trailing line break is dropped')
  t.equal(config.adminApiKey, 'sk-admin-file', 'a CRLF too')
  t.equal(parseConfig([], { SPANSERVE_API_KEY_FILE: key }).config.apiKey, 'sk-from-file', 'SPANSERVE_API_KEY_FILE')
  t.equal(parseConfig(['--api-key', 'sk-flag'], {}).config.apiKey, 'sk-flag', '--api-key still works')
  t.equal(parseConfig([], { SPANSERVE_API_KEY: 'sk-env' }).config.apiKey, 'sk-env', 'SPANSERVE_API_KEY still works')
  // Flags win over variables, whichever of the two forms each is.
  t.equal(parseConfig(['--api-key-file', key], { SPANSERVE_API_KEY: 'sk-env' }).config.apiKey, 'sk-from-file', 'the file flag over the key variable')
  t.equal(parseConfig(['--api-key', 'sk-flag'], { SPANSERVE_API_KEY_FILE: key }).config.apiKey, 'sk-flag', 'the key flag over the file variable')

  const refused = (argv: string[], env: Record<string, string>, message: RegExp, what: string) => {
    try {
      parseConfig(argv, env)
      t.fail(`${what}: accepted`)
    } catch (err) {
      t.ok(err instanceof ConfigError, `${what}: a ConfigError`)
      t.match((err as Error).message, message, what)
      t.notMatch((err as Error).message, /sk-/, `${what}: the message holds no key`)
    }
  }
  refused(['--api-key-file', join(dir, 'absent')], {}, /--api-key-file: cannot read .*absent: ENOENT/, 'a missing file')
  refused(['--api-key-file', dir], {}, /--api-key-file: cannot read .*: EISDIR/, 'a directory')
  refused(['--api-key-file', file('empty', '')], {}, /--api-key-file: .*empty/, 'an empty file')
  refused(['--admin-api-key-file', file('blank', '\n')], {}, /--admin-api-key-file: .*empty/, 'a file of one line break')
  refused(['--api-key-file', file('two', 'sk-one\nsk-two\n')], {}, /more than one line/, 'two lines')
  refused(['--api-key', 'sk-flag', '--api-key-file', key], {}, /--api-key and --api-key-file are both set/, 'both flags')
  refused([], { SPANSERVE_ADMIN_API_KEY: 'sk-env', SPANSERVE_ADMIN_API_KEY_FILE: admin }, /--admin-api-key and --admin-api-key-file are both set/, 'both variables')
})
