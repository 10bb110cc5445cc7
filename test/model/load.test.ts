// readModelInfo and checkSignature accept good directories and name exactly what is wrong in bad ones.

import t, { type Test } from 'tap'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ModelLoadError } from '../../src/model/errors.ts'
import { checkSignature, readModelInfo } from '../../src/model/load.ts'

const llamaConfig = {
  model_type: 'llama',
  hidden_size: 64,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  max_position_embeddings: 128,
  vocab_size: 100,
  bos_token_id: 1,
  eos_token_id: 2,
}

function modelDir(t: Test, files: Record<string, unknown>): string {
  const dir = mkdtempSync(join(tmpdir(), 'spanserve-load-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  for (const [name, content] of Object.entries(files)) {
    mkdirSync(join(dir, name, '..'), { recursive: true })
    writeFileSync(join(dir, name), typeof content === 'string' ? content : JSON.stringify(content))
  }
  return dir
}

const complete = { 'config.json': llamaConfig, 'tokenizer.json': '{}', 'model.onnx': '' }

function throwsNaming(t: Test, fn: () => unknown, pattern: RegExp): void {
  try {
    fn()
    t.fail(`expected ModelLoadError matching ${pattern}`)
  } catch (err) {
    t.type(err, ModelLoadError)
    t.equal((err as ModelLoadError).code, 'SPANSERVE_ERR_MODEL_INVALID')
    t.match((err as Error).message, pattern)
  }
}

t.test('a llama directory: defaults and generation_config eos list', async (t) => {
  const dir = modelDir(t, { ...complete, 'generation_config.json': { eos_token_id: [2, 7], bos_token_id: 1 } })
  const info = readModelInfo(dir)
  t.match(info, { modelType: 'llama', numLayers: 2, numHeads: 4, numKvHeads: 2, headDim: 16, hiddenSize: 64, vocabSize: 100, maxPositions: 128, bosTokenId: 1 })
  t.same(info.eosTokenIds, [2, 7])
  t.equal(info.onnxPath, join(dir, 'model.onnx'))
})

t.test('ONNX file search order', async (t) => {
  const dir = modelDir(t, { 'config.json': llamaConfig, 'tokenizer.json': '{}', 'onnx/model.onnx': '', 'decoder_with_past_model.onnx': '' })
  t.equal(readModelInfo(dir).onnxPath, join(dir, 'decoder_with_past_model.onnx'))
  const only = modelDir(t, { 'config.json': llamaConfig, 'tokenizer.json': '{}', 'onnx/model.onnx': '' })
  t.equal(readModelInfo(only).onnxPath, join(only, 'onnx', 'model.onnx'))
})

t.test('a gpt2-style config', async (t) => {
  const dir = modelDir(t, {
    ...complete,
    'config.json': { model_type: 'gpt2', n_layer: 3, n_head: 4, n_embd: 96, n_positions: 256, vocab_size: 500, eos_token_id: 499, bos_token_id: 499 },
  })
  t.match(readModelInfo(dir), { modelType: 'gpt2', numLayers: 3, numHeads: 4, numKvHeads: 4, headDim: 24, hiddenSize: 96, maxPositions: 256, eosTokenIds: [499] })
})

t.test('errors name the file or field', async (t) => {
  throwsNaming(t, () => readModelInfo(join(tmpdir(), 'spanserve-no-such-dir')), /spanserve-no-such-dir does not exist/)
  throwsNaming(t, () => readModelInfo(modelDir(t, { 'tokenizer.json': '{}', 'model.onnx': '' })), /config\.json does not exist/)
  throwsNaming(t, () => readModelInfo(modelDir(t, { ...complete, 'config.json': '{nope' })), /config\.json is not valid JSON/)
  const noTok = modelDir(t, { 'config.json': llamaConfig, 'model.onnx': '' })
  throwsNaming(t, () => readModelInfo(noTok), /tokenizer\.json does not exist/)
  const noOnnx = modelDir(t, { 'config.json': llamaConfig, 'tokenizer.json': '{}' })
  throwsNaming(t, () => readModelInfo(noOnnx), /no ONNX decoder .*model\.onnx/)
  throwsNaming(t, () => readModelInfo(modelDir(t, { ...complete, 'config.json': { ...llamaConfig, model_type: 'bert' } })), /config\.json: field "model_type" is "bert"/)
  throwsNaming(t, () => readModelInfo(modelDir(t, { ...complete, 'config.json': { ...llamaConfig, num_hidden_layers: 'two' } })), /field "num_hidden_layers" must be a positive integer/)
  const { hidden_size: _omit, ...noHidden } = llamaConfig
  throwsNaming(t, () => readModelInfo(modelDir(t, { ...complete, 'config.json': noHidden })), /config\.json: missing field "hidden_size"/)
  throwsNaming(t, () => readModelInfo(modelDir(t, { ...complete, 'config.json': { ...llamaConfig, num_key_value_heads: 3 } })), /not a multiple of num_key_value_heads 3/)
  throwsNaming(t, () => readModelInfo(modelDir(t, { ...complete, 'generation_config.json': { eos_token_id: 'x' } })), /generation_config\.json: field "eos_token_id"/)
})

t.test('checkSignature', async (t) => {
  const info = readModelInfo(modelDir(t, complete))
  const inputs = ['input_ids', 'attention_mask', 'position_ids', 'past_key_values.0.key', 'past_key_values.0.value', 'past_key_values.1.key', 'past_key_values.1.value']
  const outputs = ['logits', 'present.0.key', 'present.0.value', 'present.1.key', 'present.1.value']
  checkSignature(info, inputs, outputs)
  t.equal(info.hasPositionIds, true)
  checkSignature(
    info,
    inputs.filter((n) => n !== 'position_ids'),
    outputs,
  )
  t.equal(info.hasPositionIds, false, 'position_ids is optional')
  throwsNaming(
    t,
    () =>
      checkSignature(
        info,
        inputs.filter((n) => n !== 'past_key_values.1.value'),
        outputs,
      ),
    /no input "past_key_values\.1\.value"/,
  )
  throwsNaming(
    t,
    () =>
      checkSignature(
        info,
        inputs,
        outputs.filter((n) => n !== 'present.0.key'),
      ),
    /no output "present\.0\.key"/,
  )
  throwsNaming(t, () => checkSignature(info, inputs, ['present.0.key']), /no output "logits"/)
  throwsNaming(t, () => checkSignature(info, inputs.slice(1), outputs), /no input "input_ids"/)
})
