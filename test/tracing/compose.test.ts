/** deploy/: the Collector + Jaeger set-up users start; no Docker here, so checked structurally. */
import t from 'tap'
import { existsSync, readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { parse } from 'yaml'

const deploy = (f: string): string => fileURLToPath(new URL(`../../deploy/${f}`, import.meta.url))
const load = (f: string): any => parse(readFileSync(deploy(f), 'utf8'))

t.test('docker-compose.yaml: collector, jaeger, spanserve', async (t) => {
  const compose = load('docker-compose.yaml')
  const { 'otel-collector': col, jaeger, spanserve } = compose.services
  t.match(col.image, /^otel\/opentelemetry-collector-contrib(:|$)/)
  t.ok(col.ports.includes('4317:4317') && col.ports.includes('4318:4318'), 'OTLP gRPC and HTTP published')
  const mount = col.volumes.find((v: string) => v.startsWith('./otel-collector-config.yaml:'))
  t.ok(mount, 'collector config mounted from deploy/')
  const target = mount.split(':')[1]
  t.ok(col.command.some((a: string) => a === `--config=${target}`), 'collector reads the mounted config')
  t.match(jaeger.image, /^jaegertracing\/(all-in-one|jaeger)(:|$)/)
  t.ok(jaeger.ports.some((p: string) => p.startsWith('16686:16686')), 'Jaeger UI published')
  t.ok((jaeger.environment ?? []).includes('COLLECTOR_OTLP_ENABLED=true') || /jaegertracing\/jaeger/.test(jaeger.image), 'Jaeger accepts OTLP')
  t.equal(spanserve.build.dockerfile, 'deploy/Dockerfile')
  t.equal(spanserve.build.context, '..')
  t.ok(existsSync(deploy('Dockerfile')))
  const cmd = spanserve.command.join(' ')
  t.match(cmd, /^npm start -- /)
  t.match(cmd, /--host 0\.0\.0\.0/)
  t.match(cmd, /--trace-enable/)
  t.match(cmd, /--otlp-traces-endpoint otel-collector:4317/)
  t.ok(spanserve.ports.includes('8000:8000'))
})

t.test('otel-collector-config.yaml: OTLP in, Jaeger and file out', async (t) => {
  const cfg = load('otel-collector-config.yaml')
  t.equal(cfg.receivers.otlp.protocols.grpc.endpoint, '0.0.0.0:4317')
  t.equal(cfg.receivers.otlp.protocols.http.endpoint, '0.0.0.0:4318')
  t.ok('batch' in cfg.processors)
  t.equal(cfg.exporters.otlp.endpoint, 'jaeger:4317')
  t.equal(cfg.exporters.otlp.tls.insecure, true)
  t.equal(cfg.exporters.file.path, '/tmp/otel_trace.json')
  t.same(cfg.service.pipelines.traces, { receivers: ['otlp'], processors: ['batch'], exporters: ['otlp', 'file'] })
  for (const name of [...cfg.service.pipelines.traces.exporters, ...cfg.service.pipelines.traces.receivers, ...cfg.service.pipelines.traces.processors]) {
    t.ok(name in { ...cfg.exporters, ...cfg.receivers, ...cfg.processors }, `${name} is defined`)
  }
})

t.test('Dockerfile: node:20-slim, npm ci, npm start', async (t) => {
  const df = readFileSync(deploy('Dockerfile'), 'utf8')
  t.match(df, /^FROM node:20-slim$/m)
  t.match(df, /^RUN npm ci\b/m)
  t.match(df, /^CMD \["npm", "start"/m)
})
