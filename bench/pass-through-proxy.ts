/**
 * The control for the router's overhead (bench/router.ts): the least a proxy process can do, node:http
 * forwarding each request to one upstream and piping the answer back, no parsing, no policy. Its
 * upstream calls are the router's (node:http over a keep-alive agent, the answer piped), so the two
 * differ only in what the router does besides relaying.
 * `node bench/pass-through-proxy.ts UPSTREAM_URL` prints {"port": N} once listening.
 */
import http from 'node:http'

const upstream = new URL(process.argv[2] ?? '')
// The router's own client settings (src/router/upstream.ts): keep-alive, most recent socket first, no Nagle.
const agent = new http.Agent({ keepAlive: true, scheduling: 'lifo', noDelay: true })
const server = http.createServer((req, res) => {
  const out = http.request({ host: upstream.hostname, port: upstream.port, path: req.url, method: req.method, headers: req.headers, agent }, (answer) => {
    res.writeHead(answer.statusCode ?? 502, answer.headers)
    answer.pipe(res)
  })
  out.on('error', () => res.destroy())
  req.pipe(out)
})
server.listen(0, '127.0.0.1', () => {
  const address = server.address()
  process.stdout.write(`${JSON.stringify({ port: typeof address === 'object' && address ? address.port : 0 })}\n`)
})
process.on('SIGTERM', () => process.exit(0))
