/** Loading and validating deploy/'s files for the test/deploy tests. */
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { parse, parseAllDocuments } from 'yaml'

export const deployPath = (f: string): string => fileURLToPath(new URL(`../../deploy/${f}`, import.meta.url))
export const readDeploy = (f: string): string => readFileSync(deployPath(f), 'utf8')
export const loadYaml = (f: string): any => parse(readDeploy(f))
export const loadAllYaml = (f: string): any[] => parseAllDocuments(readDeploy(f)).map((d) => d.toJS())

/** `kubectl kustomize DIR` (kustomize built into kubectl, no cluster needed), or null without kubectl. */
export function kustomizeBuild(dir: string): any[] | null {
  let out: string
  try {
    out = execFileSync('kubectl', ['kustomize', deployPath(dir)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
  } catch (err: any) {
    if (err.code === 'ENOENT') return null
    throw new Error(`kubectl kustomize ${dir} failed: ${err.stderr || err.message}`)
  }
  return parseAllDocuments(out).map((d) => d.toJS())
}

/**
 * Validates one object against the Kubernetes API's JSON schema for its apiVersion and kind
 * (kubernetes-models: the OpenAPI schemas of the Kubernetes API, compiled to ajv validators).
 * Throws on an unknown apiVersion/kind or an object that does not match.
 */
export async function validateK8s(obj: any): Promise<void> {
  const { apiVersion, kind } = obj ?? {}
  if (typeof apiVersion !== 'string' || typeof kind !== 'string') throw new Error('not a Kubernetes object: apiVersion and kind are required')
  const slash = apiVersion.indexOf('/')
  const modulePath = slash < 0 ? `kubernetes-models/${apiVersion}/${kind}` : `kubernetes-models/${apiVersion.slice(0, slash)}/${apiVersion.slice(slash + 1)}/${kind}`
  let mod: any
  try {
    mod = await import(modulePath)
  } catch {
    throw new Error(`no Kubernetes API schema for ${apiVersion} ${kind}`)
  }
  new mod[kind](structuredClone(obj)).validate()
}

/** A Collector configuration's pipelines and the components they name that are not defined. */
export function undefinedComponents(cfg: any): string[] {
  const missing: string[] = []
  for (const [name, p] of Object.entries<any>(cfg.service?.pipelines ?? {})) {
    for (const kind of ['receivers', 'processors', 'exporters'] as const) {
      for (const c of p[kind] ?? []) if (!(c in (cfg[kind] ?? {}))) missing.push(`${name}: ${kind}.${c}`)
    }
    if (!(p.receivers?.length > 0) || !(p.exporters?.length > 0)) missing.push(`${name}: a pipeline needs a receiver and an exporter`)
  }
  for (const e of cfg.service?.extensions ?? []) if (!(e in (cfg.extensions ?? {}))) missing.push(`extensions.${e}`)
  return missing
}

/** The tail_sampling policies by type, for comparing configurations. */
export function tailSamplingPolicies(cfg: any): any[] {
  const ts = Object.entries<any>(cfg.processors ?? {}).find(([k]) => k === 'tail_sampling' || k.startsWith('tail_sampling/'))
  return ts?.[1]?.policies ?? []
}
