/**
 * Splices generated Markdown into a hand-written page: only the lines between
 * `<!-- bench:begin NAME -->` and `<!-- bench:end NAME -->` are replaced, so the prose around them
 * is edited in the page itself. A block without a generator, or a generated block the page has no
 * place for, is an error rather than a silently stale or lost figure.
 */

const BLOCK_RE = /<!-- bench:begin ([\w-]+) -->\n[\s\S]*?\n<!-- bench:end \1 -->/g

export function fillBlocks(page: string, blocks: Readonly<Record<string, string>>): string {
  const filled = new Set<string>()
  const out = page.replace(BLOCK_RE, (_, name: string) => {
    const body = blocks[name]
    if (body === undefined) throw new Error(`the page has a block "${name}" that nothing generates`)
    filled.add(name)
    return `<!-- bench:begin ${name} -->\n\n${body.replace(/\n{3,}/g, '\n\n').trim()}\n\n<!-- bench:end ${name} -->`
  })
  const missing = Object.keys(blocks).filter((name) => !filled.has(name))
  if (missing.length > 0) throw new Error(`the page has no <!-- bench:begin NAME --> … <!-- bench:end NAME --> block for ${missing.join(', ')}`)
  return out
}
