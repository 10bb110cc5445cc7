/**
 * The one configuration schema. Each option names its flag, its environment variables (in
 * precedence order: OTEL_* before FastDeploy-style aliases) and its default. The CLI parser,
 * --help and docs/configuration.md are all generated from this table.
 */
export type OptionType = 'int' | 'float' | 'string' | 'bool' | 'enum' | 'list' | 'kv'

export interface OptionSpec {
  /** Key in the resolved Config object. */
  key: string
  flag: string
  aliases?: string[]
  env?: string[]
  type: OptionType
  choices?: readonly string[]
  default: unknown
  min?: number
  max?: number
  group: 'server' | 'model' | 'scheduler' | 'worker' | 'ipc' | 'tracing' | 'logging'
  help: string
}

export const OPTIONS = [
  // server
  { key: 'host', flag: '--host', env: ['SPANSERVE_HOST'], type: 'string', default: '127.0.0.1', group: 'server', help: 'Address the HTTP server binds; 0.0.0.0 listens on all interfaces.' },
  { key: 'port', flag: '--port', env: ['SPANSERVE_PORT'], type: 'int', default: 8000, min: 0, max: 65535, group: 'server', help: 'HTTP port (0 picks a free one).' },
  { key: 'servedModelName', flag: '--served-model-name', env: ['SPANSERVE_SERVED_MODEL_NAME'], type: 'string', default: 'default', group: 'server', help: 'Model name the API reports and accepts.' },
  { key: 'bodyLimit', flag: '--body-limit', env: ['SPANSERVE_BODY_LIMIT'], type: 'int', default: 4 * 1024 * 1024, min: 1024, group: 'server', help: 'Largest request body in bytes (larger is refused with 413).' },
  { key: 'startupTimeout', flag: '--startup-timeout', env: ['SPANSERVE_STARTUP_TIMEOUT'], type: 'float', default: 120, min: 1, group: 'server', help: 'Seconds the launcher waits for every process to become ready.' },
  { key: 'apiKey', flag: '--api-key', env: ['SPANSERVE_API_KEY'], type: 'string', default: '', group: 'server', help: 'When set, every /v1 route and /tokenize, /detokenize require "Authorization: Bearer KEY" (compared in constant time, checked on the matched route); /health and /metrics stay open. Prefer --api-key-file or the environment variable: a flag\'s value shows in ps and in npm start\'s echo.' },
  { key: 'adminApiKey', flag: '--admin-api-key', env: ['SPANSERVE_ADMIN_API_KEY'], type: 'string', default: '', group: 'server', help: 'When set, routes that change the server (POST /v1/trace/setting) require this key instead of --api-key; without it they require --api-key.' },
  { key: 'apiKeyFile', flag: '--api-key-file', env: ['SPANSERVE_API_KEY_FILE'], type: 'string', default: '', group: 'server', help: 'File whose content is the API key (a trailing line break is dropped), in place of --api-key: a key given as a flag is echoed by npm start and shown by ps. An empty or unreadable file stops the start; giving both --api-key and --api-key-file does too.' },
  { key: 'adminApiKeyFile', flag: '--admin-api-key-file', env: ['SPANSERVE_ADMIN_API_KEY_FILE'], type: 'string', default: '', group: 'server', help: 'File whose content is the admin key, in place of --admin-api-key, as --api-key-file is for the API key.' },
  { key: 'protectMetrics', flag: '--protect-metrics', env: ['SPANSERVE_PROTECT_METRICS'], type: 'bool', default: false, group: 'server', help: '/metrics requires the admin key (--admin-api-key, else --api-key) as a Bearer token, as Prometheus scrape configs can send.' },
  { key: 'headersTimeout', flag: '--headers-timeout', env: ['SPANSERVE_HEADERS_TIMEOUT'], type: 'float', default: 10, min: 0.1, max: 300, group: 'server', help: 'Seconds a client may take to send its request headers (slowloris); then 408 and the connection is closed.' },
  { key: 'bodyTimeout', flag: '--body-timeout', env: ['SPANSERVE_BODY_TIMEOUT'], type: 'float', default: 30, min: 0.1, max: 3600, group: 'server', help: 'Seconds a client may take to send its whole request, headers and body (slow bodies); then 408 and the connection is closed. Not a limit on the response.' },
  { key: 'maxHeaders', flag: '--max-headers', env: ['SPANSERVE_MAX_HEADERS'], type: 'int', default: 100, min: 8, max: 1000, group: 'server', help: 'Most header fields a request may carry (431 beyond); their total size is bounded by Node at 16 KiB (431 beyond).' },
  { key: 'maxConnectionsPerClient', flag: '--max-connections-per-client', env: ['SPANSERVE_MAX_CONNECTIONS_PER_CLIENT'], type: 'int', default: 256, min: 1, group: 'server', help: 'Open connections one client address may hold; one more is answered 429 and closed.' },
  { key: 'streamStallTimeout', flag: '--stream-stall-timeout', env: ['SPANSERVE_STREAM_STALL_TIMEOUT'], type: 'float', default: 30, min: 0.1, group: 'server', help: 'Seconds a stream may wait for a client that stopped reading (the socket buffer full, no drain); then the connection is closed, the request aborted and its KV freed.' },
  { key: 'requestTimeout', flag: '--request-timeout', env: ['SPANSERVE_REQUEST_TIMEOUT'], type: 'float', default: 0, min: 0, group: 'server', help: 'Seconds a request may run before it is ended with SPANSERVE_ERR_TIMEOUT and its KV freed; 0 means no limit.' },
  { key: 'streamBufferLimit', flag: '--stream-buffer-limit', env: ['SPANSERVE_STREAM_BUFFER_LIMIT'], type: 'int', default: 1024 * 1024, min: 1024, group: 'server', help: 'Bytes a stream may have waiting for a slow reader before its request is ended (backpressure).' },
  { key: 'shutdownTimeout', flag: '--shutdown-timeout', env: ['SPANSERVE_SHUTDOWN_TIMEOUT'], type: 'float', default: 10, min: 0, group: 'server', help: 'Seconds requests in flight may finish after SIGTERM.' },
  // model
  { key: 'model', flag: '--model', env: ['SPANSERVE_MODEL'], type: 'string', default: '', group: 'model', help: 'Hugging Face / Optimum ONNX directory to serve; empty serves the embedded default model.' },
  { key: 'modelPreset', flag: '--model-preset', env: ['SPANSERVE_MODEL_PRESET'], type: 'enum', choices: ['default', 'large'], default: 'default', group: 'model', help: 'Size of the embedded model built when --model is not given.' },
  { key: 'cacheDir', flag: '--cache-dir', env: ['SPANSERVE_CACHE_DIR'], type: 'string', default: '', group: 'model', help: 'Where the embedded model is built (default ~/.cache/spanserve/models).' },
  { key: 'contextLength', flag: '--context-length', env: ['SPANSERVE_CONTEXT_LENGTH'], type: 'int', default: 0, min: 0, group: 'model', help: 'Largest prompt + completion in tokens; 0 takes the model\'s max_position_embeddings.' },
  { key: 'toolCallParser', flag: '--tool-call-parser', env: ['SPANSERVE_TOOL_CALL_PARSER'], type: 'enum', choices: ['hermes', 'llama3_json', 'mistral', 'pythonic', 'none'], default: 'hermes', group: 'model', help: 'How the model writes tool calls, read back into OpenAI tool_calls (vLLM\'s flag and names): hermes is <tool_call>{"name": ..., "arguments": {...}}</tool_call>, as Qwen2.5/Qwen3, Hermes and the embedded model write them; llama3_json is Llama 3.x\'s {"name": ..., "parameters": {...}} (after an optional <|python_tag|>, several separated by ;); mistral is [TOOL_CALLS] and a JSON array of calls, or name[ARGS]{...} per call from tokenizer v11; pythonic is [f(a=1, b="x"), g()] as Llama 3.2 and Llama 4 write them; none refuses requests that ask for tool calls. The arguments stream as they are generated.' },
  { key: 'reasoningParser', flag: '--reasoning-parser', env: ['SPANSERVE_REASONING_PARSER'], type: 'enum', choices: ['none', 'qwen3', 'deepseek_r1'], default: 'none', group: 'model', help: 'How a reasoning model marks its thinking, returned apart from the answer as reasoning_content (chat) and a reasoning output item (Responses) (vLLM\'s flag and names): qwen3 reads a <think>...</think> block that the completion begins with; deepseek_r1 reads the completion as reasoning up to </think> (its template opens the block in the prompt), all of it when the block never closes; none leaves the text as it is.' },
  // scheduler
  { key: 'maxBatchSize', flag: '--max-batch-size', aliases: ['--max-running-requests'], env: ['SPANSERVE_MAX_BATCH_SIZE'], type: 'int', default: 64, min: 1, max: 4096, group: 'scheduler', help: 'Most sequences decoded together in one step.' },
  { key: 'heavyClientStepSize', flag: '--heavy-client-step-size', env: ['SPANSERVE_HEAVY_CLIENT_STEP_SIZE'], type: 'int', default: 8, min: 0, max: 4096, group: 'scheduler', help: 'While a client with more running sequences than this shares the server with a lighter one (active, or within the last 2 s), a step runs at most this many of each client\'s sequences, so the light client\'s requests start within a short step (0: off). The heavy client pays in throughput meanwhile.' },
  { key: 'maxQueue', flag: '--max-queue', env: ['SPANSERVE_MAX_QUEUE'], type: 'int', default: 1024, min: 0, group: 'scheduler', help: 'Most requests waiting per scheduler; beyond it requests get 429 with Retry-After.' },
  { key: 'maxPrefillTokens', flag: '--max-prefill-tokens', aliases: ['--chunked-prefill-size'], env: ['SPANSERVE_MAX_PREFILL_TOKENS'], type: 'int', default: 512, min: 1, group: 'scheduler', help: 'Token budget for prompt (prefill) work in one step; longer prompts prefill in chunks.' },
  { key: 'disableOverlapSchedule', flag: '--disable-overlap-schedule', env: ['SPANSERVE_DISABLE_OVERLAP_SCHEDULE'], type: 'bool', default: false, group: 'scheduler', help: 'Run each step only after the last one\'s tokens are back (lockstep). By default the next decode step is sent while the current one runs, so the worker never waits on the scheduler; always lockstep with --tp-size above 1.' },
  { key: 'numContinuousDecodeSteps', flag: '--num-continuous-decode-steps', env: ['SPANSERVE_NUM_CONTINUOUS_DECODE_STEPS'], type: 'int', default: 1, min: 1, max: 64, group: 'scheduler', help: 'Decode steps the worker runs per scheduler message, each sequence fed its own sampled tokens (SGLang\'s flag): the hops between processes are paid once per N tokens rather than per token, so throughput rises where they weigh (small models, low concurrency). Streams then receive N tokens at a time, and a request arriving meanwhile waits up to N steps to join. Needs --tp-size 1.' },
  { key: 'maxTotalTokens', flag: '--max-total-tokens', env: ['SPANSERVE_MAX_TOTAL_TOKENS'], type: 'int', default: 262144, min: 1, group: 'scheduler', help: 'KV cache budget in tokens per data-parallel rank (prompt + max_tokens reserved per request).' },
  { key: 'maxRequestKvShare', flag: '--max-request-kv-share', env: ['SPANSERVE_MAX_REQUEST_KV_SHARE'], type: 'float', default: 0.5, min: 0.01, max: 1, group: 'scheduler', help: 'Share of --max-total-tokens one request of several sequences (n, best_of, several prompts) may reserve: sequences × (prompt + max_tokens) beyond it is a 400 naming `n` (or `best_of`, or `prompt` for several prompts), so one request cannot take the whole KV cache from other clients. A token-id prompt counts its tokens, a text or chat prompt at least one, and a max_tokens left to the rest of the context counts the whole context (docs/operations.md, "Fair sharing between clients").' },
  { key: 'disableRadixCache', flag: '--disable-radix-cache', env: ['SPANSERVE_DISABLE_RADIX_CACHE'], type: 'bool', default: false, group: 'scheduler', help: 'Turn the prefix cache off (SGLang\'s flag). By default finished prompts\' KV stays cached, in whole blocks of 16 tokens, while --max-total-tokens has room, and a request whose prompt starts with a cached prefix prefills only the rest; cached entries are evicted least recently used first when running or waiting requests need the room (docs/operations.md, "Prefix cache").' },
  { key: 'enablePrefixCaching', flag: '--enable-prefix-caching', env: ['SPANSERVE_ENABLE_PREFIX_CACHING'], type: 'bool', default: true, group: 'scheduler', help: 'vLLM\'s name for the prefix cache, on by default; --no-enable-prefix-caching turns it off like --disable-radix-cache.' },
  { key: 'dpBalanceAbsThreshold', flag: '--dp-balance-abs-threshold', env: ['SPANSERVE_DP_BALANCE_ABS_THRESHOLD'], type: 'int', default: 4096, min: 0, group: 'scheduler', help: 'Cache-aware data-parallel dispatch (with the prefix cache on and --dp-size above 1): a request goes to the group believed to hold the longest cached prefix of its prompt, unless the most loaded group has more than this many outstanding tokens (prompt + max_tokens) over the least loaded, and --dp-balance-rel-threshold times as many; then, or without a match, to the least loaded (the SGLang router\'s balance thresholds).' },
  { key: 'dpBalanceRelThreshold', flag: '--dp-balance-rel-threshold', env: ['SPANSERVE_DP_BALANCE_REL_THRESHOLD'], type: 'float', default: 1.5, min: 1, group: 'scheduler', help: 'See --dp-balance-abs-threshold: the load ratio between the most and least loaded groups beyond which dispatch ignores cached prefixes.' },
  { key: 'dpSize', flag: '--dp-size', aliases: ['--data-parallel-size'], env: ['SPANSERVE_DP_SIZE'], type: 'int', default: 1, min: 1, max: 64, group: 'scheduler', help: 'Data-parallel groups (one scheduler and its workers each).' },
  { key: 'tpSize', flag: '--tp-size', aliases: ['--tensor-parallel-size'], env: ['SPANSERVE_TP_SIZE'], type: 'int', default: 1, min: 1, max: 64, group: 'scheduler', help: 'Tensor-parallel ranks per group: attention heads and MLP units are split across this many worker processes (needs a spanserve-format model).' },
  // worker
  { key: 'grammarCompileTimeout', flag: '--grammar-compile-timeout', env: ['SPANSERVE_GRAMMAR_COMPILE_TIMEOUT'], type: 'float', default: 10, min: 0.1, max: 3600, group: 'worker', help: 'Seconds a structured-output constraint (JSON schema, regex, grammar, tool calls) may take to compile in the worker\'s grammar threads; past it the request gets a 400 (SPANSERVE_ERR_CONSTRAINT_TOO_COMPLEX) naming the constraint, the compile is stopped, and the same constraint is refused at once afterwards. Compiles never run on the step loop: other requests keep decoding meanwhile.' },
  { key: 'grammarThreads', flag: '--grammar-threads', env: ['SPANSERVE_GRAMMAR_THREADS'], type: 'int', default: 8, min: 1, max: 64, group: 'worker', help: 'Most grammar threads per sampling worker (each holds its own copy of the vocabulary; idle ones beyond the first end after a minute). A thread compiles a constraint and then serves the token masks of the requests that use it, so a compile never waits on, or stalls, another request\'s masks; a new constraint waits (out of the batch) while every thread is busy.' },
  { key: 'grammarThreadMemory', flag: '--grammar-thread-memory', env: ['SPANSERVE_GRAMMAR_THREAD_MEMORY'], type: 'int', default: 256, min: 16, group: 'worker', help: 'MiB of WebAssembly memory a grammar thread (its compiled-grammar cache included) may hold once its requests are done; past it the thread is ended, which gives the memory back, and a fresh one starts when needed.' },
  { key: 'device', flag: '--device', env: ['SPANSERVE_DEVICE'], type: 'enum', choices: ['auto', 'cpu', 'cuda'], default: 'auto', group: 'worker', help: 'Execution provider: auto tries CUDA and falls back to CPU.' },
  { key: 'intraOpThreads', flag: '--intra-op-threads', env: ['SPANSERVE_INTRA_OP_THREADS'], type: 'int', default: 0, min: 0, group: 'worker', help: 'ONNX Runtime threads per worker; 0 lets ONNX Runtime choose.' },
  { key: 'intraOpSpinning', flag: '--intra-op-spinning', env: ['SPANSERVE_INTRA_OP_SPINNING'], type: 'bool', default: false, group: 'worker', help: 'Let ONNX Runtime\'s threads spin while they wait for work (its own default). Off here: spinning threads take the cores that the server, tokenizer and scheduler need between steps (docs/benchmarks.md).' },
  { key: 'cpuMemArena', flag: '--cpu-mem-arena', env: ['SPANSERVE_CPU_MEM_ARENA'], type: 'bool', default: false, group: 'worker', help: 'Let ONNX Runtime keep its CPU memory arena and memory patterns (its own defaults). Off here: with shapes that change every step the arena grows by doubling regions it never returns, so a worker\'s memory does not settle after load; off costs a few percent of tokens/s (docs/operations.md).' },
  // ipc
  { key: 'ipc', flag: '--ipc', env: ['SPANSERVE_IPC'], type: 'string', default: 'ipc', group: 'ipc', help: 'ZeroMQ transport: "ipc" (sockets in a private directory) or tcp://HOST:PORT (each process takes the next port from PORT up). tcp is for trusted networks only.' },
  { key: 'hangTimeout', flag: '--hang-timeout', env: ['SPANSERVE_HANG_TIMEOUT'], type: 'float', default: 60, min: 0, group: 'server', help: 'Seconds a ready process may go without its periodic report before it is taken as hung, killed and restarted; 0 turns the watchdog off.' },
  { key: 'restartWait', flag: '--restart-wait', env: ['SPANSERVE_RESTART_WAIT'], type: 'float', default: 30, min: 0, group: 'server', help: 'Seconds a request waits for a dead process to be restarted (arriving while it restarts, or resumed from it) before it gets 503 with Retry-After; 0 answers 503 at once.' },
  { key: 'crashLoopDeaths', flag: '--crash-loop-deaths', env: ['SPANSERVE_CRASH_LOOP_DEATHS'], type: 'int', default: 5, min: 1, group: 'server', help: 'Deaths of one process within --crash-loop-window that open its circuit: requests that need it get 503 at once instead of waiting, and its restarts back off up to 30 s, until it is ready again.' },
  { key: 'crashLoopWindow', flag: '--crash-loop-window', env: ['SPANSERVE_CRASH_LOOP_WINDOW'], type: 'float', default: 60, min: 1, group: 'server', help: 'Seconds over which --crash-loop-deaths are counted.' },
  { key: 'statsInterval', flag: '--stats-interval', env: ['SPANSERVE_STATS_INTERVAL'], type: 'float', default: 1, min: 0.05, max: 60, group: 'server', help: 'Seconds between the reports each process sends for /metrics.' },
  { key: 'ipcSecret', flag: '--ipc-secret', env: ['SPANSERVE_IPC_SECRET'], type: 'string', default: '', group: 'ipc', help: 'Shared secret for tcp transport: every ZeroMQ socket uses CURVE encryption with keys derived from it, so peers without it cannot connect. Give every node the same one.' },
  { key: 'nnodes', flag: '--nnodes', env: ['SPANSERVE_NNODES'], type: 'int', default: 1, min: 1, max: 64, group: 'ipc', help: 'Nodes the processes spread over (needs --ipc tcp://…): node 0 runs the server, tokenizer and schedulers; the workers are shared out in (dp, tp) order.' },
  { key: 'nodeRank', flag: '--node-rank', env: ['SPANSERVE_NODE_RANK'], type: 'int', default: 0, min: 0, max: 63, group: 'ipc', help: 'This node: 0 serves HTTP; any other rank starts only its own worker ranks, which connect to node 0.' },
  { key: 'nodeHosts', flag: '--node-hosts', env: ['SPANSERVE_NODE_HOSTS'], type: 'list', default: [], group: 'ipc', help: 'Address of each node, in node-rank order (with --nnodes > 1).' },
  // logging
  { key: 'logLevel', flag: '--log-level', env: ['SPANSERVE_LOG_LEVEL', 'LOG_LEVEL'], type: 'enum', choices: ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'], default: 'info', group: 'logging', help: 'pino log level, in every process.' },
  // tracing
  { key: 'traceEnable', flag: '--trace-enable', aliases: ['--enable-trace'], env: ['TRACES_ENABLE'], type: 'bool', default: false, group: 'tracing', help: 'Export one OpenTelemetry trace per request from every process.' },
  { key: 'otlpTracesEndpoint', flag: '--otlp-traces-endpoint', aliases: ['--oltp-traces-endpoint'], env: ['OTEL_EXPORTER_OTLP_TRACES_ENDPOINT', 'OTEL_EXPORTER_OTLP_ENDPOINT', 'EXPORTER_OTLP_ENDPOINT'], type: 'string', default: 'localhost:4317', group: 'tracing', help: 'Collector address: HOST:PORT, grpc://HOST:PORT or http://HOST:PORT[/v1/traces].' },
  { key: 'otlpTracesProtocol', flag: '--otlp-traces-protocol', env: ['OTEL_EXPORTER_OTLP_TRACES_PROTOCOL', 'OTEL_EXPORTER_OTLP_PROTOCOL'], type: 'enum', choices: ['grpc', 'http/protobuf'], default: 'grpc', group: 'tracing', help: 'OTLP transport.' },
  { key: 'otlpTracesHeaders', flag: '--otlp-traces-headers', env: ['OTEL_EXPORTER_OTLP_TRACES_HEADERS', 'OTEL_EXPORTER_OTLP_HEADERS', 'EXPORTER_OTLP_HEADERS'], type: 'kv', default: {}, group: 'tracing', help: 'Headers sent with every export, k=v,k2=v2 (never logged).' },
  { key: 'otlpTracesInsecure', flag: '--otlp-traces-insecure', env: ['OTEL_EXPORTER_OTLP_TRACES_INSECURE', 'OTEL_EXPORTER_OTLP_INSECURE'], type: 'bool', default: true, group: 'tracing', help: 'Plain-text gRPC (no TLS).' },
  { key: 'traceExporter', flag: '--trace-exporter', env: ['OTEL_TRACES_EXPORTER', 'TRACES_EXPORTER'], type: 'enum', choices: ['otlp', 'console', 'file'], default: 'otlp', group: 'tracing', help: 'Where spans go: an OTLP collector, the console, or a file of OTLP JSON lines.' },
  { key: 'traceFile', flag: '--trace-file', env: ['SPANSERVE_TRACE_FILE'], type: 'string', default: 'spanserve-traces.jsonl', group: 'tracing', help: 'File the file exporter appends OTLP JSON lines to.' },
  { key: 'serviceName', flag: '--service-name', env: ['OTEL_SERVICE_NAME', 'FD_SERVICE_NAME'], type: 'string', default: 'spanserve', group: 'tracing', help: 'service.name of every span.' },
  { key: 'hostName', flag: '--host-name', env: ['FD_HOST_NAME'], type: 'string', default: '', group: 'tracing', help: 'host.name of every span (default: the machine\'s hostname).' },
  { key: 'resourceAttributes', flag: '--resource-attributes', env: ['OTEL_RESOURCE_ATTRIBUTES'], type: 'kv', default: {}, group: 'tracing', help: 'Extra resource attributes, k=v,k2=v2.' },
  { key: 'traceLevel', flag: '--trace-level', env: ['SPANSERVE_TRACE_LEVEL'], type: 'int', default: 2, min: 1, max: 3, group: 'tracing', help: '1: request and major stages; 2: + dispatch and scheduling; 3: + every decode step.' },
  { key: 'traceSampleRate', flag: '--trace-sample-rate', env: ['OTEL_TRACES_SAMPLER_ARG'], type: 'float', default: 1, min: 0, max: 1, group: 'tracing', help: 'Fraction of new traces sampled (parent-based: a caller\'s decision is honoured).' },
  { key: 'traceIgnoreParentSampling', flag: '--trace-ignore-parent-sampling', env: ['SPANSERVE_TRACE_IGNORE_PARENT_SAMPLING'], type: 'bool', default: false, group: 'tracing', help: 'Sample by --trace-sample-rate alone, whatever the caller\'s traceparent says.' },
  { key: 'traceRecordContent', flag: '--trace-record-content', env: ['SPANSERVE_TRACE_RECORD_CONTENT'], type: 'bool', default: false, group: 'tracing', help: 'Put prompts and completions into spans (off by default).' },
  { key: 'attributeValueLengthLimit', flag: '--attribute-value-length-limit', env: ['OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT', 'OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT'], type: 'int', default: 4096, min: 16, group: 'tracing', help: 'Longest attribute value; longer ones are cut.' },
  { key: 'traceQueueSize', flag: '--trace-queue-size', env: ['OTEL_BSP_MAX_QUEUE_SIZE'], type: 'int', default: 8192, min: 1, group: 'tracing', help: 'Spans waiting for export in each process; beyond it spans are dropped and counted.' },
  { key: 'traceExportTimeout', flag: '--trace-export-timeout', env: ['OTEL_BSP_EXPORT_TIMEOUT', 'OTEL_EXPORTER_OTLP_TRACES_TIMEOUT', 'OTEL_EXPORTER_OTLP_TIMEOUT'], type: 'int', default: 5000, min: 1, group: 'tracing', help: 'Milliseconds an export may take before its spans count as dropped.' },
  { key: 'traceExcludeUrls', flag: '--trace-exclude-urls', env: ['SPANSERVE_TRACE_EXCLUDE_URLS'], type: 'list', default: ['/health', '/metrics', '/v1/models'], group: 'tracing', help: 'HTTP paths that are not traced, comma-separated.' },
] as const satisfies readonly OptionSpec[]

type Spec = (typeof OPTIONS)[number]
type ValueOf<S extends Spec> = S['type'] extends 'int' | 'float'
  ? number
  : S['type'] extends 'bool'
    ? boolean
    : S['type'] extends 'list'
      ? string[]
      : S['type'] extends 'kv'
        ? Record<string, string>
        : S extends { choices: readonly (infer C)[] }
          ? C
          : string

/** The resolved configuration every process receives. */
export type Config = { -readonly [S in Spec as S['key']]: ValueOf<S> }
