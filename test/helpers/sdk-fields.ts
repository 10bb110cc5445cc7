/**
 * A chat request with every bookkeeping field the OpenAI SDK sends or documents (metadata, store,
 * service_tier, reasoning_effort …): accepted, and nothing of it reaches the engine. Used by the
 * route test (inject) and by the real client against a real server.
 */
export const SDK_FIELDS_CHAT = {
  model: 'default',
  messages: [
    { role: 'developer' as const, content: 'Be brief.' },
    { role: 'user' as const, content: 'Hello' },
  ],
  max_completion_tokens: 4,
  metadata: { team: 'search', run: '7' },
  store: false,
  service_tier: 'auto' as const,
  parallel_tool_calls: true,
  reasoning_effort: 'low' as const,
  verbosity: 'low' as const,
  modalities: ['text' as const],
  prediction: { type: 'content' as const, content: 'Hello there' },
  user: 'user-1',
  prompt_cache_key: 'k1',
  safety_identifier: 'hash-1',
}
