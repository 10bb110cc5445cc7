/**
 * What spanserve does with each request field, by endpoint: the words of docs/api.md, whose types
 * and ranges come from the route schemas themselves (tools/api-docs.ts). A test requires a note for
 * every field a schema declares, so that a new field is documented when it is added.
 */

/** Fields that mean the same on every endpoint that takes them. */
const COMMON: Record<string, string> = {
  model: 'Must be the served model name (`--served-model-name`); another is a 404 `SPANSERVE_ERR_MODEL_NOT_FOUND` with `param: "model"`.',
  max_tokens: 'Tokens to generate at most. Prompt + max_tokens beyond the context is a 400 `SPANSERVE_ERR_CONTEXT_LENGTH`.',
  temperature: "Sampling temperature; 0 is greedy. Absent: the model's generation_config.json, else 1.",
  top_p: 'Nucleus sampling. Absent: generation_config.json, else 1.',
  top_k: "vLLM's top-k; -1 or 0 means no cut. Absent: generation_config.json, else none.",
  seed: 'Makes sampling reproducible: the same seed, prompt and parameters give the same text (each choice its own stream, seed + index). Folded to 32 bits.',
  presence_penalty: "OpenAI's presence penalty (-2..2), applied in the worker's batched sampler.",
  frequency_penalty: "OpenAI's frequency penalty (-2..2), applied in the worker's batched sampler.",
  repetition_penalty: "vLLM's repetition penalty (> 0; 1 is none), over prompt and output tokens.",
  min_p: "vLLM's min-p: tokens below min_p × the top probability are dropped.",
  min_tokens: "vLLM's min_tokens: end-of-sequence and stop_token_ids are masked, and stop strings are not matched, until this many tokens (a stop string that ends after them counts).",
  stop_token_ids: 'vLLM\'s stop_token_ids: generation ends on any of these ids (finish_reason "stop"); ids outside the vocabulary are a 400.',
  logit_bias: 'Token id (as a string key) → bias in -100..100 added to its logit; ids outside the vocabulary are a 400.',
  stop: 'Up to 64 strings; the text ends before the first one (not included), finish_reason "stop".',
  stream: "Server-sent events in OpenAI's chunk shape, ending with `data: [DONE]`.",
  stream_options:
    "`include_usage`: a last chunk with empty `choices` and the usage, the only usage in a stream (OpenAI's and vLLM's rule: without it no chunk carries usage, the finish chunk neither); vLLM's `continuous_usage_stats` (with include_usage): every chunk carries the usage so far. Other keys are ignored (warned).",
  n: "Choices per prompt (1..128), each its own sequence (its own `llm_request` span in the request's trace); with a `seed`, choice i draws from seed + i, as vLLM's. n × (prompt + max_tokens) beyond --max-request-kv-share (default half) of --max-total-tokens is a 400 on n (SPANSERVE_ERR_INVALID_REQUEST). The prompt is prefilled once: with the prefix cache on, the first sequence goes alone and the other n − 1 start when its first token is back, from the prompt's cached whole blocks (16 tokens each), each prefilling only the last partial block; the first token of the response is not held back. With the cache off, each sequence prefills the prompt.",
  user: "Accepted and ignored (OpenAI's end-user id).",
  metadata: 'Accepted and ignored (OpenAI stores it with stored completions; nothing is stored here). Up to 16 string values.',
  store: 'Accepted and ignored on completions and chat (nothing is stored).',
  service_tier: 'Accepted and ignored (there is one tier).',
  ignore_eos: "vLLM's ignore_eos: keep generating past end-of-sequence until max_tokens (benchmarks).",
  response_format:
    '`text`, `json_object` or `json_schema` (with `strict`): the output is constrained by xgrammar at sampling time, so it parses and matches, even from the embedded model. A schema that does not compile is a 400 naming it.',
  guided_json: "vLLM's older structured-output field: a JSON Schema the output matches.",
  guided_regex: "vLLM's older structured-output field: a regular expression the whole output matches.",
  guided_choice: "vLLM's older structured-output field: the output is exactly one of these strings.",
  guided_grammar: "vLLM's older structured-output field: an EBNF grammar (xgrammar's dialect), root rule `root`.",
  structured_outputs: "vLLM's current structured-output field: one of `json`, `regex`, `choice`, `grammar`, `json_object`, `structural_tag`. One constraint per request.",
  bootstrap_host:
    "SGLang's prefill/decode field, set by `spanserve router` (docs/deployment.md): on a `--disaggregation-mode prefill` instance, the decode instance's address, where the prompt's KV goes. Required there (400 naming it); ignored on other instances.",
  bootstrap_port: "SGLang's prefill/decode field: the decode instance's `--disaggregation-bootstrap-port`. Required on a prefill instance; ignored elsewhere.",
  bootstrap_room:
    "SGLang's prefill/decode field: the integer pairing a request's prefill and decode instances. On a prefill instance (with the two above): the prompt is prefilled, its KV sent to that room and one token answered. On a decode instance: the request waits for that room's KV (`--disaggregation-transfer-timeout`, then prefills itself). With n or best_of above 1, a 400 on n. Ignored by a co-located instance.",
}

/** POST /v1/completions */
const COMPLETIONS: Record<string, string> = {
  max_tokens:
    'Tokens to generate at most. Prompt + max_tokens beyond the context is a 400 `SPANSERVE_ERR_CONTEXT_LENGTH`. 0 only with `echo: true` (what lm-evaluation-harness sends to score a prompt, as vLLM takes it): the text is the prompt, with its logprobs when `logprobs` is set (the same values as max_tokens 1 gives for the prompt), finish_reason "length", completion_tokens 0; run as one generated token that is dropped, so the prompt must leave room for one token. 0 without echo is a 400 on max_tokens.',
  prompt:
    "A string, token ids, or up to 128 of either: choices are indexed prompt-major, n per prompt. Token ids outside the vocabulary are a 400 `SPANSERVE_ERR_TOKEN_ID`. Default max_tokens is 16, as OpenAI's.",
  echo: "The prompt is sent back before the completion (with its logprobs when `logprobs` is set; the first token's is null).",
  logprobs:
    "Legacy logprobs (0..20): `tokens`, `token_logprobs`, `top_logprobs` (the sampled token always among them), `text_offset`. From the raw model output (log-softmax of the logits before temperature, penalties, logit_bias and grammar masks: vLLM's default) in float32, as vLLM returns them, computed only for requests that ask.",
  best_of: 'Sequences generated per prompt (≥ n, else a 400 on best_of); the n with the highest total logprob are returned, most likely first. Cannot be streamed when above n.',
  suffix: 'Only null: insertion is not supported.',
}

/** POST /v1/chat/completions */
const CHAT: Record<string, string> = {
  messages:
    "Roles system, developer, user, assistant, tool; content a string or text parts (other part types are a 400). An assistant message may have content null (with or without tool_calls); a tool message needs tool_call_id. All go to the model's chat template, tool calls with their arguments parsed to objects (as Hugging Face templates expect).",
  max_completion_tokens: 'Same as max_tokens (wins when both are given). Absent: the rest of the context.',
  max_tokens: 'Tokens to generate at most; absent: the rest of the context. Prompt + max_tokens beyond the context is a 400 `SPANSERVE_ERR_CONTEXT_LENGTH`.',
  logprobs:
    "Each output token's logprob in OpenAI's `choices[].logprobs.content[]` shape (token, logprob, bytes, top_logprobs), streamed too (each chunk its tokens'). From the raw model output (log-softmax of the logits before temperature, penalties, logit_bias and grammar masks: vLLM's default) in float32, as vLLM returns them, computed only for requests that ask.",
  top_logprobs: '0..20 most likely alternatives per token (needs logprobs).',
  tools: 'Function tools, given to the chat template as `tools` (Hugging Face convention). Other tool types are a 400. Names unique, `^[a-zA-Z0-9_.:-]{1,64}$`.',
  tool_choice:
    '`none`: tools are left out of the prompt, plain text. `auto` (the default with tools): the model\'s output is read by the `--tool-call-parser` (vLLM\'s names: `hermes` `<tool_call>{…}</tool_call>`, `llama3_json` `{"name": …, "parameters": {…}}`, `mistral` `[TOOL_CALLS][{…}]` or `[TOOL_CALLS]name[ARGS]{…}`, `pythonic` `[f(a=1)]`) into `message.tool_calls` / `delta.tool_calls`, finish_reason "tool_calls". Streamed, the arguments go out as they are generated: a first delta with index, id, type and `function.name` (arguments ""), then deltas of `function.arguments` fragments. `required` / a named function: the output is constrained to a valid call whose arguments match the function\'s parameters, written in Hermes blocks whatever the parser (vLLM too constrains such requests to a format of its own) and read back as such. A choice without tools, or naming a function not given, is a 400 on tool_choice.',
  parallel_tool_calls:
    'false: at most one call is returned. Under `required` or a named function the output is constrained to one call unless this is `true` outright (OpenAI defaults to true): a model free to go on writing calls may never stop, one call always ends. Under `auto`, default true.',
  reasoning_effort:
    "Accepted and ignored (no reasoning mode). With `--reasoning-parser` (qwen3, deepseek_r1) the model's `<think>…</think>` comes back apart from the answer as `message.reasoning_content` (streamed as `delta.reasoning_content`), as vLLM returns it; not under a forced tool_choice (the grammar leaves no room for thinking).",
  verbosity: 'Accepted and ignored.',
  prediction: 'Accepted and ignored (a speed-up OpenAI offers; the output is the same without it).',
  prompt_cache_key: 'Accepted and ignored (prefix caching here is by content, per data-parallel group).',
  safety_identifier: 'Accepted and ignored.',
  modalities: 'Only `["text"]`: audio output is a 400.',
}

/** POST /v1/responses */
const RESPONSES: Record<string, string> = {
  input:
    "A string (one user message) or items: messages (roles system, developer, user, assistant; `input_text` / `output_text` parts), `function_call` and `function_call_output` items (an assistant turn's calls and their results), `reasoning` items (skipped).",
  instructions: "A system message before the input; not carried over from a previous response (OpenAI's rule).",
  max_output_tokens: 'Tokens to generate at most; absent: the rest of the context. Reached: status "incomplete", incomplete_details.reason "max_output_tokens".',
  stream:
    'Responses events (`event:` named SSE): response.created, response.in_progress, output_item.added, content_part.added, output_text.delta, …, function_call_arguments.delta (as the arguments are generated) then .done, output_item.done; with `--reasoning-parser`, a `reasoning` item first (summary empty, its text a `reasoning_text` content part, streamed as reasoning_text.delta/done), response.completed or response.incomplete; no [DONE].',
  store:
    'Default true: the response is kept in memory (the 1,024 most recent, lost on restart) for previous_response_id and `GET`/`DELETE /v1/responses/{id}`, without its logprobs. false: not kept (retrieving it is a 404).',
  previous_response_id: 'Continue a stored response: its conversation (input and output) comes before this input. Not kept (store false, evicted, restarted) is a 400 naming previous_response_id.',
  tools: 'Function tools (`{type: "function", name, parameters}`), as in chat. OpenAI\'s hosted tools (web_search, file_search, …) are a 400 on `tools.N.type`.',
  tool_choice: 'As in chat: none, auto, required, or `{type: "function", name}`. Calls come back as `function_call` output items.',
  parallel_tool_calls: 'As in chat.',
  text: "`format`: `text`, `json_object` or `json_schema` (name, schema, strict), constrained at sampling time as chat's response_format. `verbosity` ignored.",
  structured_outputs:
    "vLLM's extension, as in chat: one of `json`, `regex`, `choice`, `grammar`, `json_object`, `structural_tag`. Set beside a `text.format` other than `text`, a 400 naming structured_outputs.",
  metadata: 'Echoed in the response object; not otherwise used.',
  reasoning: 'Accepted and ignored (no reasoning mode).',
  include:
    "`\"message.output_text.logprobs\"`: each generated token's logprob on the output_text part (`logprobs: [{token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]}]`) and on each `output_text.delta` / `.done` event, as chat's; the tokens add up to the text (with tool calls, the calls' tokens are on the message too). Other values (hosted tools' output) are ignored.",
  top_logprobs: 'Alternatives per token (0..20) in each logprob\'s `top_logprobs`; logprobs come only when `include` lists `"message.output_text.logprobs"` (vLLM\'s rule), default 0.',
  truncation: 'Accepted; nothing is truncated (a prompt beyond the context is a 400).',
  prompt_cache_key: 'Accepted and ignored.',
  safety_identifier: 'Accepted and ignored.',
  background: 'Only false: background runs are not supported.',
}

/** POST /tokenize */
const TOKENIZE: Record<string, string> = {
  model: 'Optional; when given, the served model name.',
  prompt: 'Text to tokenize (this or messages).',
  messages: 'Chat messages, rendered by the chat template first (this or prompt).',
  tools: 'Tools for the chat template, as in chat.',
  add_special_tokens: 'Default true for a prompt, false for messages (the template writes them), as vLLM.',
  add_generation_prompt: "Default true: the template's assistant header is appended.",
  return_token_strs: "Also return each token's vocabulary string (`token_strs`).",
}

/** POST /detokenize */
const DETOKENIZE: Record<string, string> = {
  model: 'Optional; when given, the served model name.',
  tokens: 'Token ids to decode (special tokens skipped); an id outside the vocabulary is a 400 on tokens.',
}

export const FIELD_NOTES: Record<string, Record<string, string>> = {
  'POST /v1/completions': { ...COMMON, ...COMPLETIONS },
  'POST /v1/chat/completions': { ...COMMON, ...CHAT },
  'POST /v1/responses': { ...COMMON, ...RESPONSES },
  'POST /tokenize': TOKENIZE,
  'POST /detokenize': DETOKENIZE,
}
