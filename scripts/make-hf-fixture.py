#!/usr/bin/env python3
"""Writes test/fixtures/hf-tiny/<type>/: tiny random-weight Hugging Face checkpoints (llama, qwen2,
mistral) and what transformers generates from them, for test/model/hf-interop.test.ts.

CI does not run this script: its outputs are committed. Rerun it (torch CPU, transformers, onnx)
only to change the fixtures:

    python3 scripts/make-hf-fixture.py [--tokenizer-dir DIR]

Each model has the embedded model's tokenizer (so token ids line up with spanserve's), and its
weights are stored in a different dtype, to cover the safetensors reader: llama F32, qwen2 BF16 with
tied embeddings, mistral F16 in shards (model.safetensors.index.json). transformers computes the
expectations in float32 from the weights as stored. llama is also exported to ONNX in Optimum's
layout (past_key_values.* inputs, present.* outputs) for the file graph.
"""

import argparse
import glob
import json
import os
import shutil

import torch
import transformers
from transformers import AutoConfig, AutoModelForCausalLM

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "test", "fixtures", "hf-tiny")
PROMPTS = [[5, 80, 200, 31, 77], [400, 12], [7, 7, 300, 41, 99, 150, 3, 512, 640]]
MAX_NEW_TOKENS = 24
# Greedy tokens must not hinge on float rounding: every step's top-2 logit gap must exceed this.
MIN_GAP = 2e-3
STD = 0.1

COMMON = dict(
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    intermediate_size=128,
    vocab_size=1024,
    max_position_embeddings=256,
    rms_norm_eps=1e-6,
    rope_theta=10000.0,
    bos_token_id=1021,
    eos_token_id=1021,
    pad_token_id=1021,
)
MODELS = {
    "llama": dict(config=dict(model_type="llama", tie_word_embeddings=False), dtype=torch.float32, shard=None),
    "qwen2": dict(config=dict(model_type="qwen2", tie_word_embeddings=True, use_sliding_window=False), dtype=torch.bfloat16, shard=None),
    # sliding_window above max_position_embeddings: never reached, so the fused graph may serve it.
    "mistral": dict(config=dict(model_type="mistral", tie_word_embeddings=False, sliding_window=4096), dtype=torch.float16, shard="150KB"),
}


def randomize(model, seed):
    """Every parameter random (transformers zeroes biases and sets norm gains to one)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g) * STD
            p.copy_(1 + noise if "norm" in name else noise)


def expectations(model):
    rows = []
    min_gap = float("inf")
    for prompt in PROMPTS:
        ids = torch.tensor([prompt])
        out = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=MAX_NEW_TOKENS,
            do_sample=False,
            output_logits=True,
            return_dict_in_generate=True,
        )
        tokens = out.sequences[0, len(prompt):].tolist()
        for step in out.logits:
            top = torch.topk(step[0].double(), 2).values
            min_gap = min(min_gap, float(top[0] - top[1]))
        first = torch.log_softmax(out.logits[0][0].double(), dim=-1)
        top5 = torch.topk(first, 5)
        rows.append({"prompt": prompt, "tokens": tokens, "top5": {"ids": top5.indices.tolist(), "logprobs": top5.values.tolist()}})
    return rows, min_gap


class OptimumLayout(torch.nn.Module):
    """The decoder with Optimum's flat inputs and outputs: past_key_values.{i}.key/value → present.{i}.key/value."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.layers = model.config.num_hidden_layers

    def forward(self, input_ids, attention_mask, position_ids, *past):
        from transformers.cache_utils import DynamicCache

        cache = DynamicCache(config=self.model.config)
        for i in range(self.layers):
            cache.update(past[2 * i], past[2 * i + 1], i)
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, past_key_values=cache, use_cache=True)
        present = []
        for i in range(self.layers):
            layer = out.past_key_values.layers[i]
            present += [layer.keys, layer.values]
        return (out.logits, *present)


def export_optimum(model, path):
    cfg = model.config
    layers, kv, hd = cfg.num_hidden_layers, cfg.num_key_value_heads, cfg.hidden_size // cfg.num_attention_heads
    past_len, seq = 3, 2
    args = [torch.tensor([[5, 6]]), torch.ones(1, past_len + seq, dtype=torch.int64), torch.tensor([[past_len, past_len + 1]])]
    names_in = ["input_ids", "attention_mask", "position_ids"]
    names_out = ["logits"]
    axes = {"input_ids": {0: "batch_size", 1: "sequence_length"}, "attention_mask": {0: "batch_size", 1: "total_sequence_length"}, "position_ids": {0: "batch_size", 1: "sequence_length"}, "logits": {0: "batch_size", 1: "sequence_length"}}
    for i in range(layers):
        for kind in ("key", "value"):
            args.append(torch.randn(1, kv, past_len, hd))
            names_in.append(f"past_key_values.{i}.{kind}")
            names_out.append(f"present.{i}.{kind}")
            axes[f"past_key_values.{i}.{kind}"] = {0: "batch_size", 2: "past_sequence_length"}
            axes[f"present.{i}.{kind}"] = {0: "batch_size", 2: "total_sequence_length"}
    torch.onnx.export(OptimumLayout(model).eval(), tuple(args), path, input_names=names_in, output_names=names_out, dynamic_axes=axes, opset_version=17, dynamo=False)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokenizer-dir", help="a spanserve model directory (default: the newest ~/.cache/spanserve/models/default-*)")
    args = parser.parse_args()
    tok_dir = args.tokenizer_dir or max(glob.glob(os.path.expanduser("~/.cache/spanserve/models/default-*/")), key=os.path.getmtime)
    torch.manual_seed(0)
    summary = {}
    for kind, spec in MODELS.items():
        out_dir = os.path.join(OUT, kind)
        shutil.rmtree(out_dir, ignore_errors=True)
        for seed in range(100):
            config = AutoConfig.for_model(**{**COMMON, **spec["config"]})
            model = AutoModelForCausalLM.from_config(config, attn_implementation="eager").eval()
            randomize(model, seed)
            model = model.to(spec["dtype"])
            model.generation_config.eos_token_id = [1021, 1023]
            model.generation_config.pad_token_id = 1021
            model.generation_config.bos_token_id = 1021
            save = dict(safe_serialization=True)
            if spec["shard"]:
                save["max_shard_size"] = spec["shard"]
            model.save_pretrained(out_dir, **save)
            # The expectations come from the weights as stored, computed in float32.
            loaded = AutoModelForCausalLM.from_pretrained(out_dir, dtype=torch.float32, attn_implementation="eager").eval()
            with torch.no_grad():
                rows, gap = expectations(loaded)
            if gap >= MIN_GAP:
                break
            shutil.rmtree(out_dir)
        else:
            raise SystemExit(f"{kind}: no seed gave a top-2 gap of {MIN_GAP}")
        for name in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(os.path.join(tok_dir, name), os.path.join(out_dir, name))
        expected = {
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "seed": seed,
            "max_new_tokens": MAX_NEW_TOKENS,
            "min_top2_gap": gap,
            "prompts": rows,
        }
        if kind == "llama":
            with torch.no_grad():
                export_optimum(loaded, os.path.join(out_dir, "model.onnx"))
        with open(os.path.join(out_dir, "expected.json"), "w") as f:
            json.dump(expected, f, indent=1)
            f.write("\n")
        summary[kind] = {"seed": seed, "gap": gap, "files": sorted(os.listdir(out_dir))}
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
