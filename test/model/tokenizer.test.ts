// The trained tokenizer loads in the real tokenizers library, round-trips text, and the chat
// template renders ChatML.

import t from 'tap'
import { Template } from '@huggingface/jinja'
import { Tokenizer } from '@huggingface/tokenizers'
import { trainBpe, tokenizerConfigJson, tokenizerJson, EOS_TOKEN, IM_END, IM_START } from '../../src/model/bpe.ts'
import { corpusDocuments, CORPUS_PATH } from '../../src/model/build.ts'
import { readFileSync } from 'node:fs'

const bpe = trainBpe(corpusDocuments(readFileSync(CORPUS_PATH, 'utf8')), 1024)
const config = tokenizerConfigJson(bpe, 2048) as { chat_template: string; bos_token: string; eos_token: string }
const tokenizer = new Tokenizer(tokenizerJson(bpe), config)

t.test('vocabulary: 1024 entries, bytes first, specials last', async (t) => {
  t.equal(bpe.tokens.length, 1024)
  t.equal(tokenizer.token_to_id(EOS_TOKEN), 1021)
  t.equal(tokenizer.token_to_id(IM_START), 1022)
  t.equal(tokenizer.token_to_id(IM_END), 1023)
  t.equal(tokenizer.encode(' little').ids.length, 1, 'a frequent corpus word is one token')
})

t.test('encode then decode returns the text', async (t) => {
  for (const text of ['Once upon a time, there was a little girl.', 'café ☃ 日本', '  two  spaces\n\n\ttab', "it's 42 o'clock!"]) {
    t.equal(tokenizer.decode(tokenizer.encode(text).ids), text, JSON.stringify(text))
  }
})

t.test('special tokens are single ids and decode back', async (t) => {
  const ids = tokenizer.encode(`${IM_START}user\nHi${IM_END}\n${EOS_TOKEN}`).ids
  t.equal(ids[0], 1022)
  t.ok(ids.includes(1023) && ids.includes(1021))
  t.equal(tokenizer.decode(ids, { skip_special_tokens: true }), 'user\nHi\n')
})

t.test('chat template renders ChatML with a generation prompt', async (t) => {
  const messages = [
    { role: 'system', content: 'You are kind.' },
    { role: 'user', content: 'Tell me a story.' },
  ]
  const render = (add_generation_prompt: boolean): string => new Template(config.chat_template).render({ messages, add_generation_prompt, bos_token: config.bos_token, eos_token: config.eos_token })
  t.equal(render(true), '<|im_start|>system\nYou are kind.<|im_end|>\n<|im_start|>user\nTell me a story.<|im_end|>\n<|im_start|>assistant\n')
  t.equal(render(false), '<|im_start|>system\nYou are kind.<|im_end|>\n<|im_start|>user\nTell me a story.<|im_end|>\n')
})
