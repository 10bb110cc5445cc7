/**
 * deploy/kubernetes/overlays/router: built with kubectl's kustomize and validated against the
 * Kubernetes API schemas; the router's arguments parsed by the router's own parser; its
 * --instances-dns name followed to the headless Service and the spanserve pods' port; its probes
 * asked of the router's own app. No cluster here: DNS is checked by name, not resolved.
 */
import t from 'tap'
import { existsSync, readFileSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { parseConfig } from '../../src/config/parse.ts'
import { createLogger } from '../../src/logging.ts'
import { assembleRouter } from '../../src/router/assemble.ts'
import { parseRouterConfig, type RouterConfig } from '../../src/router/config.ts'
import { kustomizeBuild, loadAllYaml, loadYaml, validateK8s } from './manifests.ts'

const repoPath = (f: string): string => new URL(`../../${f}`, import.meta.url).pathname

const built = kustomizeBuild('kubernetes/overlays/router')
if (built === null) t.comment('kubectl not found: checking the resource files as written, with the namespace set by hand (no image tags, no replicas count)')

/** The overlay's objects: as kustomize builds them, or the base's and the overlay's files with the overlay's namespace. */
function overlayObjects(): any[] {
  if (built) return built
  const k = loadYaml('kubernetes/overlays/router/kustomization.yaml')
  const files = (dir: string, resources: string[]) => resources.filter((r) => r.endsWith('.yaml')).flatMap((r) => loadAllYaml(`${dir}/${r}`))
  const objs = [...files('kubernetes/base', loadYaml('kubernetes/base/kustomization.yaml').resources), ...files('kubernetes/overlays/router', k.resources)]
  for (const o of objs) if (o.kind !== 'Namespace') o.metadata.namespace = k.namespace
  return objs
}
const find = (objs: any[], kind: string, name: string): any => {
  const o = objs.find((x) => x.kind === kind && x.metadata?.name === name)
  if (!o) throw new Error(`no ${kind} ${name}`)
  return o
}
const envOf = (c: any): Record<string, string> => Object.fromEntries((c.env ?? []).filter((e: any) => 'value' in e).map((e: any) => [e.name, e.value]))
const selects = (selector: Record<string, string>, labels: Record<string, string>): boolean => Object.entries(selector).every(([k, v]) => labels?.[k] === v)
/** A port given by name or number, as the container's port number. */
const containerPort = (c: any, port: string | number): number | undefined => (typeof port === 'number' ? port : c.ports?.find((p: any) => p.name === port)?.containerPort)

const routerOf = (objs: any[]) => {
  const d = find(objs, 'Deployment', 'spanserve-router')
  const c = d.spec.template.spec.containers[0]
  return { d, c, config: parseRouterConfig(c.args, envOf(c)).config }
}
const instanceOf = (objs: any[]) => {
  const d = find(objs, 'Deployment', 'spanserve')
  const c = d.spec.template.spec.containers[0]
  return { d, c, config: parseConfig(c.args, envOf(c)).config }
}

/**
 * Where --instances-dns leads, as problems (empty: it names, in the router's namespace, a headless
 * Service that selects the spanserve pods and only them, on the port they listen on). A headless
 * name resolves to the pods' own addresses, so the DNS port must be the container's, not a Service's.
 */
function dnsProblems(objs: any[], config: RouterConfig): string[] {
  if (config.dns === null) return ['no --instances-dns']
  const m = /^([a-z0-9-]+)\.([a-z0-9-]+)\.svc\.cluster\.local$/.exec(config.dns.name)
  if (m === null) return [`${config.dns.name} is not SERVICE.NAMESPACE.svc.cluster.local`]
  const [, name, ns] = m
  const problems: string[] = []
  if (!objs.some((o) => o.kind === 'Namespace' && o.metadata.name === ns)) problems.push(`no Namespace ${ns}`)
  const svc = objs.find((o) => o.kind === 'Service' && o.metadata.name === name && o.metadata.namespace === ns)
  if (!svc) return [...problems, `no Service ${name} in ${ns}`]
  if (svc.spec.clusterIP !== 'None') problems.push(`Service ${name} is not headless (clusterIP ${svc.spec.clusterIP}): its name would resolve to one virtual IP`)
  const instance = instanceOf(objs)
  if (!selects(svc.spec.selector, instance.d.spec.template.metadata.labels)) problems.push(`Service ${name} does not select the spanserve pods`)
  for (const d of objs.filter((o) => o.kind === 'Deployment' && o.metadata.name !== 'spanserve')) {
    if (selects(svc.spec.selector, d.spec.template.metadata.labels)) problems.push(`Service ${name} also selects ${d.metadata.name}'s pods`)
  }
  if (config.dns.port !== instance.config.port) problems.push(`DNS port ${config.dns.port} is not the port spanserve listens on (${instance.config.port})`)
  if (!svc.spec.ports.some((p: any) => containerPort(instance.c, p.targetPort ?? p.port) === config.dns!.port)) problems.push(`Service ${name} has no port onto ${config.dns.port}`)
  if (svc.metadata.namespace !== find(objs, 'Deployment', 'spanserve-router').metadata.namespace) problems.push('the router and the Service are in different namespaces')
  return problems
}

t.test('the overlay renders, and every object validates against the Kubernetes API schema', async (t) => {
  const objs = overlayObjects()
  for (const o of objs) await t.resolves(validateK8s(o), `${o.kind} ${o.metadata?.name}`)
  for (const [kind, name] of [
    ['Deployment', 'spanserve'],
    ['Deployment', 'spanserve-router'],
    ['Service', 'spanserve-instances'],
    ['Service', 'spanserve-router'],
    ['Deployment', 'otel-collector'],
    ['Deployment', 'jaeger'],
  ]) {
    t.equal(find(objs, kind!, name!).metadata.namespace, 'spanserve', `${kind} ${name} in the spanserve namespace`)
  }
  if (!built) return
  t.ok(find(objs, 'Deployment', 'spanserve').spec.replicas >= 2, 'N spanserve replicas')
  t.equal(routerOf(objs).c.image, instanceOf(objs).c.image, 'the router runs the image the instances run')
  t.match(routerOf(objs).c.image, /^spanserve:\d/, 'a tagged image')
  t.equal(routerOf(objs).d.metadata.labels['app.kubernetes.io/part-of'], 'spanserve')
})

t.test("the router's command and flags are spanserve router's own", async (t) => {
  const objs = overlayObjects()
  const { d, c, config } = routerOf(objs)
  // The image's workdir holds the repository (COPY . .); bin/spanserve.js dispatches `router`.
  const [node, script, word] = c.command
  t.equal(node, 'node', 'node is PID 1')
  t.equal(word, 'router')
  t.ok(existsSync(repoPath(script)), `${script} is in the repository`)
  t.match(readFileSync(repoPath(script), 'utf8'), /process\.argv\[2\] === 'router'[\s\S]*src\/router\/main\.ts/, `${script} runs src/router/main.ts for \`router\``)
  t.notMatch(readFileSync(repoPath('deploy/Dockerfile.dockerignore'), 'utf8'), new RegExp(`^${script.split('/')[0]}`, 'm'), 'and the image has it')

  // The parser refuses a flag it does not know, so every flag above exists.
  t.throws(() => parseRouterConfig([...c.args, '--disaggregation-mode', 'prefill'], {}), /unknown flag --disaggregation-mode/, 'an invented flag is refused')
  t.equal(config.host, '0.0.0.0')
  t.equal(containerPort(c, 'http'), config.port, "the container port is the router's")
  t.equal(config.instances.length, 0, 'instances come from DNS only')

  // Tracing: the same collector, flags and variables as the instances; spans named as the router's.
  const instance = instanceOf(objs)
  t.equal(config.shared.traceEnable, true)
  t.equal(config.shared.otlpTracesEndpoint, instance.config.otlpTracesEndpoint, 'spans go to the collector the instances use')
  const [host, port] = config.shared.otlpTracesEndpoint.split(':')
  t.ok(
    find(objs, 'Service', host!).spec.ports.some((p: any) => p.port === Number(port)),
    `${config.shared.otlpTracesEndpoint} is a Service port`,
  )
  for (const v of ['OTEL_RESOURCE_ATTRIBUTES', 'OTEL_BSP_EXPORT_TIMEOUT', 'SPANSERVE_LOG_FORMAT']) t.equal(envOf(c)[v], envOf(instance.c)[v], `${v} as on the instances`)
  t.equal(config.shared.serviceName, 'spanserve-router')
  t.equal(config.shared.resourceAttributes['k8s.pod.name'], '$(POD_NAME)', 'the pod name on every span (the kubelet expands it)')

  // The key: whatever Secret the instances read, the router reads too (the base has none: no key).
  const secretRefs = (c: any) => (c.env ?? []).filter((e: any) => e.valueFrom?.secretKeyRef).map((e: any) => [e.name, e.valueFrom.secretKeyRef])
  t.same(secretRefs(c), secretRefs(instance.c), 'the same Secret-backed variables')
  t.equal(config.shared.apiKey, instance.config.apiKey, 'the same key')

  // Stop: preStop, the drain and the span flush fit in the grace period.
  const pod = d.spec.template.spec
  const preStopS = Number(c.lifecycle.preStop.exec.command.at(-1))
  const needed = preStopS + config.shared.shutdownTimeout + config.shared.traceExportTimeout / 1000
  t.ok(pod.terminationGracePeriodSeconds >= needed, `terminationGracePeriodSeconds ${pod.terminationGracePeriodSeconds} >= ${needed}`)
  t.equal(config.shared.shutdownTimeout, instance.config.shutdownTimeout, 'the router drains as long as the instances do')
  t.equal(pod.securityContext.runAsNonRoot, true)
  t.ok(
    c.volumeMounts.some((m: any) => m.mountPath === '/tmp'),
    "a writable /tmp under the read-only root (tsx's cache)",
  )
})

t.test('--instances-dns names the headless Service of the spanserve pods, on their port', async (t) => {
  const objs = overlayObjects()
  const { config } = routerOf(objs)
  t.same(dnsProblems(objs, config), [], `${config.dns?.name}:${config.dns?.port}`)
  t.equal(find(objs, 'Service', 'spanserve').spec.clusterIP, undefined, "the base's Service keeps its virtual IP")

  // The check catches each way it could be wrong.
  const broken = (edit: (objs: any[], config: RouterConfig) => void): string[] => {
    const o = structuredClone(objs)
    const c = structuredClone(config)
    edit(o, c)
    return dnsProblems(o, c)
  }
  t.match(
    broken((o) => delete find(o, 'Service', 'spanserve-instances').spec.clusterIP),
    [/not headless/],
  )
  t.match(
    broken((_o, c) => (c.dns!.port = 80)),
    [/DNS port 80/, /no port onto 80/],
  )
  t.match(
    broken((_o, c) => (c.dns!.name = 'spanserve-instances.default.svc.cluster.local')),
    [/no Namespace default/, /no Service spanserve-instances in default/],
  )
  t.match(
    broken((o) => (find(o, 'Deployment', 'spanserve-router').spec.template.metadata.labels = { 'app.kubernetes.io/name': 'spanserve' })),
    [/also selects spanserve-router/],
  )
  t.match(
    broken((_o, c) => (c.dns!.name = 'spanserve-instances')),
    [/not SERVICE\.NAMESPACE/],
  )
})

t.test("the router's probes and Service point at what the router serves", async (t) => {
  const objs = overlayObjects()
  const { d, c, config } = routerOf(objs)
  const log = createLogger('silent', {})
  // The router's own app, as main.ts builds it, in front of one scripted instance.
  const upstream = createServer((req, res) => void res.writeHead(req.url === '/health' ? 200 : 404).end('{}'))
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r))
  t.teardown(() => new Promise<void>((r) => upstream.close(() => r())))
  const appFor = async (urls: string[]) => {
    const r = await assembleRouter({ ...config, instances: urls, dns: null, healthCheckInterval: 60, healthCheckTimeout: 1 }, log, { resolve: async () => [] })
    await r.start()
    t.teardown(async () => {
      r.stop()
      await r.app.close()
    })
    return r.app
  }
  const up = await appFor([`http://127.0.0.1:${(upstream.address() as AddressInfo).port}`])
  const down = await appFor(['http://127.0.0.1:1'])

  const ready = c.readinessProbe.httpGet
  t.equal(containerPort(c, ready.port), config.port, 'readiness asks the port the router listens on')
  t.equal((await up.inject({ method: 'GET', url: ready.path })).statusCode, 200, `${ready.path}: 200 with a healthy instance`)
  t.equal((await down.inject({ method: 'GET', url: ready.path })).statusCode, 503, `${ready.path}: 503 with none, so the router leaves its Service`)
  t.equal((await up.inject({ method: 'GET', url: '/healthz' })).statusCode, 404, 'a route the router lacks is a 404 (the check can fail)')
  t.equal(containerPort(c, c.livenessProbe.tcpSocket?.port), config.port, 'liveness: the port accepts (not /health, which is red whenever the instances are)')

  const annotations = d.spec.template.metadata.annotations
  t.equal(Number(annotations['prometheus.io/port']), config.port)
  t.equal((await up.inject({ method: 'GET', url: annotations['prometheus.io/path'] })).statusCode, 200, 'the scrape path is served')

  const svc = find(objs, 'Service', 'spanserve-router')
  t.ok(selects(svc.spec.selector, d.spec.template.metadata.labels), 'the Service selects the router pods')
  t.notOk(selects(svc.spec.selector, instanceOf(objs).d.spec.template.metadata.labels), 'and not the instances')
  t.ok(
    svc.spec.ports.some((p: any) => containerPort(c, p.targetPort) === config.port),
    "the Service reaches the router's port",
  )
})
