// The embedded model's chat template: ChatML as Qwen2.5 writes it, tools included. With `tools`, the
// system turn lists their signatures in <tools></tools>, and calls are written (and expected back)
// as Hermes-style <tool_call>{"name": ..., "arguments": {...}}</tool_call> blocks; tool results go
// back as <tool_response> blocks in a user turn. The hermes tool-call parser reads this format.

export const CHAT_TEMPLATE = [
  '{%- if tools %}',
  "{{- '<|im_start|>system\\n' }}",
  "{%- if messages[0].role == 'system' %}{{- messages[0].content + '\\n\\n' }}{%- endif %}",
  "{{- '# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are provided with function signatures within <tools></tools> XML tags:\\n<tools>' }}",
  "{%- for tool in tools %}{{- '\\n' }}{{- tool | tojson }}{%- endfor %}",
  '{{- \'\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{"name": <function-name>, "arguments": <args-json-object>}\\n</tool_call><|im_end|>\\n\' }}',
  "{%- elif messages[0].role == 'system' %}",
  "{{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}",
  '{%- endif %}',
  '{%- for message in messages %}',
  "{%- if message.role == 'system' and loop.first %}",
  "{%- elif message.role == 'tool' %}",
  "{%- if loop.first or messages[loop.index0 - 1].role != 'tool' %}{{- '<|im_start|>user' }}{%- endif %}",
  "{{- '\\n<tool_response>\\n' + message.content + '\\n</tool_response>' }}",
  "{%- if loop.last or messages[loop.index0 + 1].role != 'tool' %}{{- '<|im_end|>\\n' }}{%- endif %}",
  '{%- else %}',
  "{{- '<|im_start|>' + message.role + '\\n' + message.content }}",
  "{%- if message.role == 'assistant' and message.tool_calls %}",
  '{%- for tool_call in message.tool_calls %}',
  "{%- if (loop.first and message.content) or not loop.first %}{{- '\\n' }}{%- endif %}",
  '{%- if tool_call.function %}{%- set tool_call = tool_call.function %}{%- endif %}',
  '{{- \'<tool_call>\\n{"name": "\' + tool_call.name + \'", "arguments": \' }}',
  '{%- if tool_call.arguments is string %}{{- tool_call.arguments }}{%- else %}{{- tool_call.arguments | tojson }}{%- endif %}',
  "{{- '}\\n</tool_call>' }}",
  '{%- endfor %}',
  '{%- endif %}',
  "{{- '<|im_end|>\\n' }}",
  '{%- endif %}',
  '{%- endfor %}',
  "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}",
].join('')
