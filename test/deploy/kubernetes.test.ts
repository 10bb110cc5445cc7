/**
 * deploy/kubernetes: the Kustomize base and GPU overlay, built with kubectl's kustomize and every
 * object validated against the Kubernetes API schemas; the spanserve Deployment's arguments parsed
 * by spanserve's own config parser; the Collector and Jaeger configurations checked structurally.
 * No cluster, Collector or Jaeger binary here: what could not run is said in a comment.
 */
import t from 'tap'
import { existsSync } from 'node:fs'
import { parse } from 'yaml'
import { parseConfig } from '../../src/config/parse.ts'
import { OPTIONS } from '../../src/config/schema.ts'
import { deployPath, kustomizeBuild, loadAllYaml, loadYaml, tailSamplingPolicies, undefinedComponents, validateK8s } from './manifests.ts'

t.comment(
  'not run here (no cluster, no Docker engine, no Collector or Jaeger binary): kubectl apply -k, otelcol validate, jaeger --config; the manifests are validated against the Kubernetes API schemas and the configurations structurally instead',
)

const base = kustomizeBuild('kubernetes/base')
const gpu = kustomizeBuild('kubernetes/overlays/gpu')
if (base === null) t.comment("kubectl not found: kustomize build not run; validating the base resources as written (the GPU overlay's patch is not applied)")

/** The base's objects: as kustomize builds them, or the listed resource files as written. */
function baseObjects(): any[] {
  if (base) return base
  const k = loadYaml('kubernetes/base/kustomization.yaml')
  return k.resources.flatMap((r: string) => loadAllYaml(`kubernetes/base/${r}`))
}
const find = (objs: any[], kind: string, name: string): any => {
  const o = objs.find((x) => x.kind === kind && x.metadata?.name === name)
  if (!o) throw new Error(`no ${kind} ${name}`)
  return o
}
const envOf = (c: any): Record<string, string> => Object.fromEntries((c.env ?? []).filter((e: any) => 'value' in e).map((e: any) => [e.name, e.value]))
/** A generated ConfigMap's data, by the ConfigMap's name before kustomize's hash suffix. */
const configOf = (objs: any[], deployment: any): any => {
  const vol = deployment.spec.template.spec.volumes.find((v: any) => v.configMap)
  const cm = objs.find((o) => o.kind === 'ConfigMap' && o.metadata.name === vol.configMap.name)
  if (cm) return parse(cm.data['config.yaml'])
  // Without kustomize: the generator's source file.
  const k = loadYaml('kubernetes/base/kustomization.yaml')
  const gen = k.configMapGenerator.find((g: any) => g.name === vol.configMap.name)
  return loadYaml(`kubernetes/base/${gen.files[0].split('=')[1]}`)
}

t.test('every object validates against the Kubernetes API schema', async (t) => {
  for (const [label, objs] of [
    ['base', baseObjects()],
    ['overlays/gpu', gpu ?? []],
  ] as const) {
    for (const o of objs) {
      await t.resolves(validateK8s(o), `${label}: ${o.kind} ${o.metadata?.name}`)
    }
  }
  const kinds = new Set(baseObjects().map((o) => o.kind))
  for (const k of ['Namespace', 'Deployment', 'Service', 'PersistentVolumeClaim']) t.ok(kinds.has(k), `base has a ${k}`)
  if (base) t.ok(kinds.has('ConfigMap'), 'the Collector and Jaeger configurations are generated ConfigMaps')
})

t.test('the validation rejects what the API server would', async (t) => {
  const d = structuredClone(find(baseObjects(), 'Deployment', 'spanserve'))
  d.spec.template.spec.containers[0].ports[0].containerPort = 'http'
  await t.rejects(validateK8s(d), /containerPort/, 'a port that is not a number')
  const s = structuredClone(find(baseObjects(), 'Service', 'spanserve'))
  delete s.spec.ports[0].port
  await t.rejects(validateK8s(s), /port/, 'a Service port without its number')
  await t.rejects(validateK8s({ apiVersion: 'apps/v1', kind: 'Deploymnt', metadata: { name: 'x' } }), /no Kubernetes API schema/, 'an unknown kind')
})

t.test('spanserve Deployment: replicas, probes, drain, resources, model volume', async (t) => {
  const objs = baseObjects()
  const d = find(objs, 'Deployment', 'spanserve')
  const pod = d.spec.template.spec
  const c = pod.containers[0]
  t.ok(d.spec.replicas >= 2, 'more than one replica')
  t.equal(c.readinessProbe.httpGet.path, '/health', 'ready only while /health is 200')
  t.equal(c.startupProbe.httpGet.path, '/health', 'start-up (model load) waits for /health')
  t.ok(c.livenessProbe, 'a liveness probe')
  t.notOk(c.livenessProbe.httpGet?.path === '/health', 'liveness is not /health: the server restarts its own children')
  t.ok(c.resources.requests.cpu && c.resources.requests.memory, 'CPU and memory requests')

  // The arguments and environment as spanserve itself parses them.
  const { config } = parseConfig(c.args, envOf(c))
  t.equal(config.host, '0.0.0.0')
  t.equal(c.ports.find((p: any) => p.name === 'http').containerPort, config.port, "the container port is the server's")
  t.equal(config.traceEnable, true)

  // preStop + drain + children + span flush fit in the grace period.
  const preStop = c.lifecycle.preStop
  const preStopS = preStop.sleep?.seconds ?? Number(preStop.exec.command.at(-1))
  t.ok(preStopS > 0, 'preStop waits for the endpoints to be withdrawn')
  const shutdownEnv = OPTIONS.find((o) => o.key === 'shutdownTimeout')!.env![0]
  t.ok(shutdownEnv in envOf(c), `the drain is set explicitly (${shutdownEnv})`)
  const needed = preStopS + config.shutdownTimeout + 1 + config.traceExportTimeout / 1000
  t.ok(
    pod.terminationGracePeriodSeconds >= needed,
    `terminationGracePeriodSeconds ${pod.terminationGracePeriodSeconds} >= preStop ${preStopS} + drain ${config.shutdownTimeout} + 1 + flush ${config.traceExportTimeout / 1000}`,
  )

  // The model comes from a volume backed by a claim that the kustomization defines.
  const mount = c.volumeMounts.find((m: any) => config.model.startsWith(m.mountPath + '/'))
  t.ok(mount, `--model ${config.model} is on a mounted volume`)
  const vol = pod.volumes.find((v: any) => v.name === mount.name)
  t.ok(vol.persistentVolumeClaim, 'the model volume is a PersistentVolumeClaim')
  find(objs, 'PersistentVolumeClaim', vol.persistentVolumeClaim.claimName)

  t.equal(pod.securityContext.runAsNonRoot, true, 'runs as a non-root user')

  // Spans go to the Collector's Service.
  const [host, port] = config.otlpTracesEndpoint.replace(/^https?:\/\//, '').split(':')
  const svc = find(objs, 'Service', host)
  t.ok(
    svc.spec.ports.some((p: any) => p.port === Number(port)),
    `${config.otlpTracesEndpoint} is a Service port`,
  )
})

t.test('spanserve Service: selects the pods, Prometheus scrape annotations on /metrics', async (t) => {
  const objs = baseObjects()
  const d = find(objs, 'Deployment', 'spanserve')
  const svc = find(objs, 'Service', 'spanserve')
  t.match(d.spec.template.metadata.labels, svc.spec.selector, 'the selector matches the pod labels')
  for (const [what, annotations] of [
    ['Service', svc.metadata.annotations],
    ['pod', d.spec.template.metadata.annotations],
  ]) {
    t.equal(annotations['prometheus.io/scrape'], 'true', `${what}: scrape`)
    t.equal(annotations['prometheus.io/path'], '/metrics', `${what}: path`)
    t.equal(Number(annotations['prometheus.io/port']), d.spec.template.spec.containers[0].ports[0].containerPort, `${what}: port`)
  }
})

t.test('GPU overlay: nvidia.com/gpu and --device cuda', async (t) => {
  if (!gpu) {
    t.comment("kubectl not found: the overlay's patch was not applied; checking the patch itself")
    const ops = loadYaml('kubernetes/overlays/gpu/gpu.yaml')
    t.ok(ops.some((o: any) => o.path.endsWith('nvidia.com~1gpu')))
    t.ok(ops.some((o: any) => o.value === 'cuda'))
    return
  }
  const c = find(gpu, 'Deployment', 'spanserve').spec.template.spec.containers[0]
  t.equal(c.resources.limits['nvidia.com/gpu'], '1')
  const { config } = parseConfig(c.args, envOf(c))
  t.equal(config.device, 'cuda', 'spanserve parses --device cuda')
  t.match(c.image, /cuda/, 'the CUDA image')
  const baseC = find(baseObjects(), 'Deployment', 'spanserve').spec.template.spec.containers[0]
  t.equal(parseConfig(baseC.args, envOf(baseC)).config.device, 'auto', 'the base leaves the device to auto')
})

t.test('Collector tier 1: OTLP in, load balancing by trace id to the headless sampling Service', async (t) => {
  const objs = baseObjects()
  const cfg = configOf(objs, find(objs, 'Deployment', 'otel-collector'))
  t.same(undefinedComponents(cfg), [], 'every pipeline names defined components')
  const lb = cfg.exporters.loadbalancing
  t.equal(lb.routing_key, 'traceID')
  t.same(cfg.service.pipelines.traces.exporters, ['loadbalancing'])
  const sampler = find(objs, 'Service', lb.resolver.dns.hostname)
  t.equal(sampler.spec.clusterIP, 'None', "the sampling tier's Service is headless: DNS lists every pod")
  t.ok(sampler.spec.ports.some((p: any) => p.port === lb.resolver.dns.port))
  const samplerPods = find(objs, 'Deployment', 'otel-sampler').spec.template.metadata.labels
  t.match(samplerPods, sampler.spec.selector)
  t.notOk(
    Object.keys(cfg.processors ?? {}).some((p) => p.startsWith('tail_sampling')),
    'no sampling before the traces are gathered',
  )
  const svc = find(objs, 'Service', 'otel-collector')
  t.ok(svc.spec.ports.some((p: any) => p.port === 4317) && svc.spec.ports.some((p: any) => p.port === 4318), 'OTLP gRPC and HTTP')
})

t.test('Collector tier 2: tail sampling keeps errors, slow traces and a ratio of the rest', async (t) => {
  const objs = baseObjects()
  const cfg = configOf(objs, find(objs, 'Deployment', 'otel-sampler'))
  t.same(undefinedComponents(cfg), [], 'every pipeline names defined components')
  const policies = tailSamplingPolicies(cfg)
  const byType = (type: string) => policies.find((p: any) => p.type === type)
  t.same(byType('status_code')?.status_code.status_codes, ['ERROR'], 'every trace with an error')
  t.ok(byType('latency')?.latency.threshold_ms > 0, 'every trace slower than the threshold')
  const ratio = byType('probabilistic')?.probabilistic.sampling_percentage
  t.ok(ratio > 0 && ratio < 100, `a ratio of the rest (${ratio}%)`)
  t.ok(cfg.service.pipelines.traces.processors.includes('tail_sampling'))
  const exporter = Object.entries<any>(cfg.exporters).find(([k]) => k.startsWith('otlp'))![1]
  const [host, port] = exporter.endpoint.split(':')
  t.ok(
    find(objs, 'Service', host).spec.ports.some((p: any) => p.port === Number(port)),
    `sampled traces go to ${exporter.endpoint}`,
  )
})

t.test('Jaeger v2: OTLP in, Badger on a persistent volume', async (t) => {
  const objs = baseObjects()
  const d = find(objs, 'Deployment', 'jaeger')
  t.match(d.spec.template.spec.containers[0].image, /^jaegertracing\/jaeger:2\./)
  t.equal(d.spec.strategy.type, 'Recreate', 'one pod at a time on the volume')
  const cfg = configOf(objs, d)
  t.same(undefinedComponents(cfg), [], 'every pipeline names defined components')
  const backends = cfg.extensions.jaeger_storage.backends
  const store = cfg.exporters.jaeger_storage_exporter.trace_storage
  t.ok(store in backends, 'the exporter writes to a defined backend')
  t.equal(cfg.extensions.jaeger_query.storage.traces, store, 'the UI reads the same backend')
  const badger = backends[store].badger
  t.equal(badger.ephemeral, false)
  const c = d.spec.template.spec.containers[0]
  for (const dir of [badger.directories.keys, badger.directories.values]) {
    const m = c.volumeMounts.find((m: any) => dir.startsWith(m.mountPath + '/'))
    t.ok(m, `${dir} is on a mounted volume`)
    const v = d.spec.template.spec.volumes.find((v: any) => v.name === m.name)
    t.ok(v.persistentVolumeClaim, `${dir} is on a PersistentVolumeClaim`)
    find(objs, 'PersistentVolumeClaim', v.persistentVolumeClaim.claimName)
  }
})

t.test('each Collector reads the mounted configuration', async (t) => {
  const objs = baseObjects()
  for (const name of ['otel-collector', 'otel-sampler', 'jaeger']) {
    const d = find(objs, 'Deployment', name)
    const c = d.spec.template.spec.containers[0]
    const configArg = c.args.find((a: string) => a.startsWith('--config='))
    const vol = d.spec.template.spec.volumes.find((v: any) => v.configMap)
    const mount = c.volumeMounts.find((m: any) => m.name === vol.name)
    t.equal(configArg, `--config=${mount.mountPath}/config.yaml`, name)
  }
  t.ok(existsSync(deployPath('kubernetes/overlays/gpu/kustomization.yaml')))
})
