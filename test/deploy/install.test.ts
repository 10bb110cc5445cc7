/**
 * The install's script policy (package.json allowScripts, npm's install-script policy): every
 * dependency with an install script is reviewed, so npm warns about none, and a future npm that
 * blocks unreviewed scripts still runs the ones the project needs. onnxruntime-node's is denied:
 * its only job is the CUDA download, which an offline install cannot do (the README's GPU section
 * runs it by hand). The clean-clone install itself is run by CI (`npm ci` in .ci/run).
 */
import t from 'tap'
import { existsSync, readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

const root = (f: string): string => fileURLToPath(new URL(`../../${f}`, import.meta.url))
const pkg = JSON.parse(readFileSync(root('package.json'), 'utf8'))
const lock = JSON.parse(readFileSync(root('package-lock.json'), 'utf8'))

t.test('every locked package with an install script is covered by allowScripts', async (t) => {
  const withScripts = new Set<string>()
  for (const [path, entry] of Object.entries<any>(lock.packages)) {
    if (path && entry.hasInstallScript && !entry.optional) withScripts.add(path.slice(path.lastIndexOf('node_modules/') + 'node_modules/'.length))
  }
  t.ok(withScripts.size > 0)
  for (const name of withScripts) t.type(pkg.allowScripts?.[name], 'boolean', `${name} is reviewed`)
})

t.test('onnxruntime-node skips its CUDA download; zeromq and protobufjs keep their scripts', async (t) => {
  t.equal(pkg.allowScripts['onnxruntime-node'], false)
  t.equal(pkg.allowScripts.zeromq, true, 'zeromq: prebuilt binary check, build as a fallback')
  t.equal(pkg.allowScripts.protobufjs, true)
  t.equal(pkg.allowScripts.esbuild, true, 'esbuild (under tsx): checks its platform binary')
  const npmrc = existsSync(root('.npmrc')) ? readFileSync(root('.npmrc'), 'utf8') : ''
  t.notMatch(npmrc, /onnxruntime-node-install/, 'no project .npmrc key that npm 11 calls unknown')
})
