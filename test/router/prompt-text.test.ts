/** The prompt text the router's policy reads from each API's body. */
import t from 'tap'
import { promptText } from '../../src/router/prompt-text.ts'

t.test('completions: a string, strings, token ids', async (t) => {
  t.equal(promptText('completions', { prompt: 'Once upon a time' }), 'Once upon a time')
  t.equal(promptText('completions', { prompt: ['a', 'b'] }), 'a\nb')
  t.equal(promptText('completions', { prompt: [1, 22, 333] }), '1 22 333')
  t.equal(promptText('completions', { prompt: [[1, 2], [3]] }), '1 2\n3')
  t.equal(promptText('completions', {}), '')
})

t.test("chat: every message's content in order, text parts only", async (t) => {
  const body = {
    messages: [
      { role: 'system', content: 'You are terse.' },
      {
        role: 'user',
        content: [
          { type: 'text', text: 'Hi' },
          { type: 'image_url', image_url: { url: 'x' } },
        ],
      },
      { role: 'assistant', content: null, tool_calls: [] },
      { role: 'user', content: 'Again' },
    ],
  }
  t.equal(promptText('chat', body), 'You are terse.\nHi\nAgain')
  t.equal(promptText('chat', { messages: 'not a list' }), '')
})

t.test('responses: instructions, then input as a string or items', async (t) => {
  t.equal(promptText('responses', { input: 'Hello' }), 'Hello')
  t.equal(promptText('responses', { instructions: 'Be brief.', input: 'Hello' }), 'Be brief.\nHello')
  const items = [
    { role: 'user', content: [{ type: 'input_text', text: 'What is 2+2?' }] },
    { type: 'function_call', name: 'add', arguments: '{"a":2,"b":2}' },
    { type: 'function_call_output', call_id: 'c', output: '4' },
  ]
  t.equal(promptText('responses', { input: items }), 'What is 2+2?\n{"a":2,"b":2}\n4')
})

t.test('anything else reads as no text', async (t) => {
  t.equal(promptText('chat', null), '')
  t.equal(promptText('completions', 'prompt'), '')
})
