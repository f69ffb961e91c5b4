"""Section 4.8's ModernGPTModel against two independent implementations of the same architectures:
transformers' Llama, Qwen3, Qwen3-MoE, Gemma 3, Olmo 3, gpt-oss, Qwen3-Next, DeepSeek V3 and
Gemma 4, and the book package's Llama 3 and Qwen3 (llms_from_scratch). Each reference model is
saved with random weights in the published Hugging Face format (config.json + model.safetensors),
read back, and loaded into ours."""

import importlib
import re

import pytest
import safetensors.torch
import torch
import transformers

from shared import (
    DeltaNetCache,
    GPTModel,
    GroupedQueryAttention,
    ModernGPTModel,
    RMSNorm,
    apply_rope,
    rope_angles,
    rope_attention_factor,
    rope_frequencies,
    validate_modern_config,
)


VOCAB = 257
LLAMA3_FREQ = {"factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_context_length": 16}  # Llama 3's scaling, at a context of 16

SLIDING_WINDOW = 5
YARN_FREQ = {"type": "yarn", "factor": 8.0, "beta_fast": 32, "beta_slow": 1,
             "original_context_length": 16}  # Olmo 3's kind of scaling (4.8.9), from 16

QWEN3_NEXT_DELTANET = {"key_heads": 2, "value_heads": 4, "key_dim": 8, "value_dim": 12,
                       "conv_kernel": 4}

# name: (transformers class, its config, our config); small, but every option switched on
ARCHITECTURES = {
    "llama3": ("LlamaForCausalLM", transformers.LlamaConfig(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=128,
        rope_theta=500_000.0, rms_norm_eps=1e-5, tie_word_embeddings=True,
        rope_scaling={"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                      "high_freq_factor": 4.0, "original_max_position_embeddings": 16}),
        {"vocab_size": VOCAB, "context_length": 128, "emb_dim": 64, "n_heads": 8,
         "n_layers": 2, "hidden_dim": 96, "n_kv_groups": 2, "rope_base": 500_000.0,
         "rope_freq": LLAMA3_FREQ, "norm_eps": 1e-5, "tie_weights": True}),
    "qwen3": ("Qwen3ForCausalLM", transformers.Qwen3Config(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=8, num_key_value_heads=2, head_dim=16, max_position_embeddings=128,
        rope_theta=1_000_000.0, tie_word_embeddings=True),
        {"vocab_size": VOCAB, "context_length": 128, "emb_dim": 64, "n_heads": 8,
         "n_layers": 2, "hidden_dim": 96, "n_kv_groups": 2, "head_dim": 16, "qk_norm": True,
         "rope_base": 1_000_000.0, "tie_weights": True}),
    # local (sliding-window) and global layers; the texts below are longer than the window
    "qwen3_sliding": ("Qwen3ForCausalLM", transformers.Qwen3Config(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=3,
        num_attention_heads=8, num_key_value_heads=2, head_dim=16, max_position_embeddings=128,
        rope_theta=1_000_000.0, tie_word_embeddings=True, use_sliding_window=True,
        sliding_window=SLIDING_WINDOW,
        layer_types=["sliding_attention", "full_attention", "sliding_attention"]),
        {"vocab_size": VOCAB, "context_length": 128, "emb_dim": 64, "n_heads": 8,
         "n_layers": 3, "hidden_dim": 96, "n_kv_groups": 2, "head_dim": 16, "qk_norm": True,
         "rope_base": 1_000_000.0, "tie_weights": True, "sliding_window": SLIDING_WINDOW,
         "layer_types": ["local", "global", "local"]}),
    # Gemma 3: 5 local layers to 1 global, windows shorter than the texts below, a query scale
    # apart from head_dim, two RoPE bases; the pair fixture randomises its norms, which start at 0
    "gemma3": ("Gemma3ForCausalLM", transformers.Gemma3TextConfig(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=6,
        num_attention_heads=4, num_key_value_heads=1, head_dim=24, max_position_embeddings=128,
        sliding_window=SLIDING_WINDOW, query_pre_attn_scalar=20, rope_theta=1_000_000.0,
        rope_local_base_freq=10_000.0, rms_norm_eps=1e-6, tie_word_embeddings=True,
        eos_token_id=None),  # Gemma's default, 1, would stop generate() early
        {"vocab_size": VOCAB, "context_length": 128, "emb_dim": 64, "n_heads": 4,
         "n_layers": 6, "hidden_dim": 96, "n_kv_groups": 1, "head_dim": 24, "qk_norm": True,
         "rope_base": 1_000_000.0, "rope_local_base": 10_000.0, "tie_weights": True,
         "sliding_window": SLIDING_WINDOW, "layer_types": ["local"] * 5 + ["global"],
         "query_pre_attn_scalar": 20, "norm_unit_offset": True, "post_norms": True,
         "ffn_activation": "gelu_tanh", "scale_embeddings": True}),
    # Olmo 3: norms after the sublayers only, QK-norm across the heads, 3 local layers of 4 with
    # windows shorter than the texts, YaRN in the global one, its factor's attention scale
    "olmo3": ("Olmo3ForCausalLM", transformers.Olmo3Config(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=4,
        num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=128,
        sliding_window=SLIDING_WINDOW, rope_theta=500_000.0, rms_norm_eps=1e-6,
        rope_scaling={"rope_type": "yarn", "factor": 8.0, "beta_fast": 32, "beta_slow": 1,
                      "original_max_position_embeddings": 16},
        pad_token_id=0, eos_token_id=None),
        {"vocab_size": VOCAB, "context_length": 128, "emb_dim": 64, "n_heads": 8,
         "n_layers": 4, "hidden_dim": 96, "n_kv_groups": 2, "qk_norm": True,
         "qk_norm_across_heads": True, "pre_norms": False, "post_norms": True,
         "rope_base": 500_000.0, "rope_local_base": 500_000.0, "rope_freq": YARN_FREQ,
         "sliding_window": SLIDING_WINDOW, "layer_types": ["local"] * 3 + ["global"]}),
    # gpt-oss: attention sinks and biases, 4 experts with biases and the clamped SwiGLU,
    # windows in every other layer, YaRN untruncated (the pair fixture randomises the sinks and
    # biases, which start at 0)
    "gpt_oss": ("GptOssForCausalLM", transformers.GptOssConfig(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=48, num_hidden_layers=4,
        num_attention_heads=8, num_key_value_heads=2, head_dim=16, max_position_embeddings=128,
        sliding_window=SLIDING_WINDOW, num_local_experts=4, num_experts_per_tok=2,
        rope_parameters={"rope_type": "yarn", "factor": 4.0, "beta_fast": 32.0, "beta_slow": 1.0,
                         "truncate": False, "original_max_position_embeddings": 32,
                         "rope_theta": 150_000.0}, pad_token_id=0, eos_token_id=None),
        {"vocab_size": VOCAB, "context_length": 128, "emb_dim": 64, "n_heads": 8,
         "n_layers": 4, "n_kv_groups": 2, "head_dim": 16, "rope_base": 150_000.0,
         "rope_freq": {**YARN_FREQ, "factor": 4.0, "original_context_length": 32,
                       "truncate": False},
         "norm_eps": 1e-5, "sliding_window": SLIDING_WINDOW, "layer_types": ["local", "global"] * 2,
         "qkv_bias": True, "attention_out_bias": True, "attention_sinks": True, "num_experts": 4,
         "num_experts_per_tok": 2, "moe_hidden_dim": 48, "ffn_bias": True,
         "ffn_activation": "clamped_silu", "swiglu_alpha": 1.702, "swiglu_limit": 7.0}),
    # Qwen3-Next: 3 Gated DeltaNet layers to 1 of gated attention (4 of whose 16 numbers per
    # head RoPE turns), experts with a gated shared expert; 2 key heads serve 4 value heads
    "qwen3_next": ("Qwen3NextForCausalLM", transformers.Qwen3NextConfig(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=128,
        linear_num_key_heads=2, linear_num_value_heads=4, linear_key_head_dim=8,
        linear_value_head_dim=12, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
        shared_expert_intermediate_size=48, rope_parameters={
            "rope_type": "default", "rope_theta": 10_000.0, "partial_rotary_factor": 0.25},
        pad_token_id=0, eos_token_id=None),
        {"vocab_size": VOCAB, "context_length": 128, "emb_dim": 64, "n_heads": 4,
         "n_layers": 4, "n_kv_groups": 2, "head_dim": 16, "qk_norm": True, "rope_base": 10_000.0,
         "rope_dim": 4, "attention_gate": True, "norm_unit_offset": True, "num_experts": 4,
         "num_experts_per_tok": 2, "moe_hidden_dim": 32, "shared_expert_dim": 48,
         "layer_types": ["linear"] * 3 + ["global"], "deltanet": QWEN3_NEXT_DELTANET}),
    # DeepSeek V3: latent attention (queries through a latent too, interleaved RoPE pairs), the
    # first layer dense, then 8 experts in 4 groups, routed by sigmoid scores with a bias (drawn
    # at random by the pair fixture) within the best 2 groups, and an ungated shared expert
    "deepseek_v3": ("DeepseekV3ForCausalLM", transformers.DeepseekV3Config(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=96, moe_intermediate_size=32,
        num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=4,
        max_position_embeddings=128, q_lora_rank=24, kv_lora_rank=16, qk_nope_head_dim=12,
        qk_rope_head_dim=8, v_head_dim=10, n_routed_experts=8, num_experts_per_tok=2,
        n_group=4, topk_group=2, n_shared_experts=1, routed_scaling_factor=2.5,
        first_k_dense_replace=1, rope_theta=10_000.0, pad_token_id=0, eos_token_id=None),
        {"vocab_size": VOCAB, "context_length": 128, "emb_dim": 64, "n_heads": 4,
         "n_layers": 3, "n_kv_groups": 4, "head_dim": 20, "rope_dim": 8, "rope_base": 10_000.0,
         "hidden_dim": 96, "mla": {"q_rank": 24, "kv_rank": 16, "v_dim": 10, "interleaved": True},
         "num_experts": 8, "num_experts_per_tok": 2, "moe_hidden_dim": 32,
         "shared_expert_dim": 32, "shared_expert_gate": False, "dense_layers": 1,
         "moe_router": {"groups": 4, "topk_groups": 2, "scale": 2.5}}),
    # Gemma 4: per-layer inputs; the last 3 of 6 layers reuse the keys and values of the last
    # local and global layers before them, with feed-forwards twice as wide; global layers of
    # wider heads, one key-value head whose values are its keys, RoPE on a quarter of their
    # pairs; 4 experts beside each dense feed-forward; logits capped where the cap bends them
    "gemma4": ("Gemma4ForCausalLM", transformers.Gemma4TextConfig(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=48, num_hidden_layers=6,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, global_head_dim=32,
        num_global_key_value_heads=1, attention_k_eq_v=True, max_position_embeddings=128,
        sliding_window=SLIDING_WINDOW, num_kv_shared_layers=3, use_double_wide_mlp=True,
        layer_types=["sliding_attention", "sliding_attention", "full_attention"] * 2,
        hidden_size_per_layer_input=8, vocab_size_per_layer_input=VOCAB,
        enable_moe_block=True, num_experts=4, top_k_experts=2, moe_intermediate_size=24,
        final_logit_softcapping=1.0, rope_parameters={
            "full_attention": {"rope_type": "proportional", "partial_rotary_factor": 0.25,
                               "rope_theta": 1_000_000.0},
            "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0}},
        pad_token_id=0, eos_token_id=None, bos_token_id=None),
        {"vocab_size": VOCAB, "context_length": 128, "emb_dim": 64, "n_heads": 4,
         "n_layers": 6, "hidden_dim": 48, "n_kv_groups": 2, "head_dim": 16, "qk_norm": True,
         "rope_base": 1_000_000.0, "rope_local_base": 10_000.0, "tie_weights": True,
         "sliding_window": SLIDING_WINDOW, "layer_types": ["local", "local", "global"] * 2,
         "query_pre_attn_scalar": 1, "post_norms": True, "ffn_activation": "gelu_tanh",
         "scale_embeddings": True, "value_norm": True, "layer_scalar": True,
         "per_layer_dim": 8, "kv_shared_layers": 3, "double_wide_mlp": True,
         "global_head_dim": 32, "global_kv_groups": 1, "values_from_keys": True,
         "global_rope_fraction": 0.25, "final_logit_softcap": 1.0, "experts_beside_mlp": True,
         "num_experts": 4, "num_experts_per_tok": 2, "moe_hidden_dim": 24}),
    **{f"qwen3_moe_{'norm' if norm else 'plain'}": ("Qwen3MoeForCausalLM",
       transformers.Qwen3MoeConfig(
           vocab_size=VOCAB, hidden_size=64, intermediate_size=96, moe_intermediate_size=32,
           num_experts=8, num_experts_per_tok=2, norm_topk_prob=norm, num_hidden_layers=2,
           num_attention_heads=8, num_key_value_heads=2, head_dim=16,
           max_position_embeddings=128, rope_theta=1_000_000.0),
       {"vocab_size": VOCAB, "context_length": 128, "emb_dim": 64, "n_heads": 8,
        "n_layers": 2, "n_kv_groups": 2, "head_dim": 16, "qk_norm": True,
        "rope_base": 1_000_000.0, "num_experts": 8, "num_experts_per_tok": 2,
        "moe_hidden_dim": 32, "norm_topk_prob": norm})
       for norm in (True, False)},
}


def hf_names(model: ModernGPTModel) -> dict[str, torch.nn.Parameter]:
    """Our parameters under their names in a Hugging Face checkpoint of the model's family."""
    names = {"model.embed_tokens.weight": model.tok_emb.weight,
             "model.norm.weight": model.final_norm.weight}
    if model.out_head.weight is not model.tok_emb.weight:
        names["lm_head.weight"] = model.out_head.weight
    if model.cfg["per_layer_dim"]:  # Gemma 4's
        names.update({"model.embed_tokens_per_layer.weight": model.per_layer_emb.weight,
                      "model.per_layer_model_projection.weight": model.per_layer_proj.weight,
                      "model.per_layer_projection_norm.weight": model.per_layer_norm.weight})
    for i, block in enumerate(model.trf_blocks):
        p, att = f"model.layers.{i}.", block.att
        if model.cfg["layer_scalar"]:  # Gemma 4's
            names.update(gemma4_names(p, block))
            continue
        if model.cfg["deltanet"]:  # Qwen3-Next's
            names.update(qwen3_next_names(p, block))
            continue
        if model.cfg["mla"]:  # DeepSeek V3's
            names.update(deepseek_v3_names(p, block))
            continue
        if model.cfg["pre_norms"]:  # Olmo 3 has none
            names[p + "input_layernorm.weight"] = block.norm1.weight
        if model.cfg["post_norms"]:  # Gemma's, Olmo's: post_attention_layernorm is a post-norm
            names[p + "post_attention_layernorm.weight"] = block.post_norm1.weight
            if model.cfg["pre_norms"]:
                names[p + "pre_feedforward_layernorm.weight"] = block.norm2.weight
            names[p + "post_feedforward_layernorm.weight"] = block.post_norm2.weight
        else:
            names[p + "post_attention_layernorm.weight"] = block.norm2.weight
        for ours, theirs in [("W_query", "q"), ("W_key", "k"), ("W_value", "v"), ("out_proj", "o")]:
            names[f"{p}self_attn.{theirs}_proj.weight"] = getattr(att, ours).weight
            if getattr(att, ours).bias is not None:  # gpt-oss's
                names[f"{p}self_attn.{theirs}_proj.bias"] = getattr(att, ours).bias
        if att.sinks is not None:
            names[p + "self_attn.sinks"] = att.sinks
        if model.cfg["ffn_bias"]:  # gpt-oss's router; its packed experts: copy_packed_experts
            names[p + "mlp.router.weight"] = block.ff.router.weight
            names[p + "mlp.router.bias"] = block.ff.router.bias
            continue
        if model.cfg["qk_norm"]:
            names[p + "self_attn.q_norm.weight"] = att.q_norm.weight
            names[p + "self_attn.k_norm.weight"] = att.k_norm.weight
        if model.cfg["num_experts"]:
            names[p + "mlp.gate.weight"] = block.ff.router.weight
            experts = {f"mlp.experts.{e}.": expert for e, expert in enumerate(block.ff.experts)}
        else:
            experts = {"mlp.": block.ff}
        for prefix, ff in experts.items():
            for part in ("gate", "up", "down"):
                names[f"{p}{prefix}{part}_proj.weight"] = getattr(ff, part).weight
    return names


def gemma4_names(p: str, block) -> dict[str, torch.Tensor]:
    """One Gemma 4 layer's parameters (and its scalar) under their published names: attention
    with no key and value layers where it reuses them, no value layer where its values are its
    keys; the dense feed-forward and the experts beside it, stacked; the per-layer input's."""
    att, moe = block.att, block.moe
    names = {p + "input_layernorm.weight": block.norm1.weight,
             p + "post_attention_layernorm.weight": block.post_norm1.weight,
             p + "pre_feedforward_layernorm.weight": block.norm2.weight,
             p + "post_feedforward_layernorm.weight": block.post_norm2.weight,
             p + "post_feedforward_layernorm_1.weight": block.post_norm_dense.weight,
             p + "pre_feedforward_layernorm_2.weight": block.moe_norm.weight,
             p + "post_feedforward_layernorm_2.weight": block.post_norm_moe.weight,
             p + "per_layer_input_gate.weight": block.per_layer_gate.weight,
             p + "per_layer_projection.weight": block.per_layer_up.weight,
             p + "post_per_layer_input_norm.weight": block.per_layer_norm.weight,
             p + "layer_scalar": block.layer_scalar,
             p + "self_attn.q_proj.weight": att.W_query.weight,
             p + "self_attn.q_norm.weight": att.q_norm.weight,
             p + "self_attn.o_proj.weight": att.out_proj.weight,
             p + "router.proj.weight": moe.router.weight, p + "router.scale": moe.router_scale,
             p + "router.per_expert_scale": moe.expert_scales}
    if not att.reuse_kv:
        names[p + "self_attn.k_proj.weight"] = att.W_key.weight
        names[p + "self_attn.k_norm.weight"] = att.k_norm.weight
    if hasattr(att, "W_value"):
        names[p + "self_attn.v_proj.weight"] = att.W_value.weight
    for part in ("gate", "up", "down"):
        names[f"{p}mlp.{part}_proj.weight"] = getattr(block.ff, part).weight
    return names


def copy_stacked_experts(model: ModernGPTModel, tensors: dict) -> set[str]:
    """Gemma 4's experts into ours: each layer's gate and up layers stacked, (experts, 2 *
    moe_hidden_dim, emb_dim), gates first, and their down layers; returns the names copied."""
    copied = set()
    for i, block in enumerate(model.trf_blocks):
        p = f"model.layers.{i}.experts."
        for e, expert in enumerate(block.moe.experts):
            gate, up = tensors[p + "gate_up_proj"][e].chunk(2)
            expert.gate.weight.copy_(gate)
            expert.up.weight.copy_(up)
            expert.down.weight.copy_(tensors[p + "down_proj"][e])
        copied |= {p + "gate_up_proj", p + "down_proj"}
    return copied


def qwen3_next_names(p: str, block) -> dict[str, torch.nn.Parameter]:
    """One Qwen3-Next layer's parameters under their published names: a Gated DeltaNet or
    gated attention, and experts with a gated shared expert."""
    att, ff = block.att, block.ff
    names = {p + "input_layernorm.weight": block.norm1.weight,
             p + "post_attention_layernorm.weight": block.norm2.weight,
             p + "mlp.gate.weight": ff.router.weight,
             p + "mlp.shared_expert_gate.weight": ff.shared_gate.weight}
    if hasattr(att, "W_qkvz"):
        for theirs, ours in [("in_proj_qkvz.weight", att.W_qkvz.weight),
                             ("in_proj_ba.weight", att.W_ba.weight),
                             ("conv1d.weight", att.conv.weight), ("A_log", att.A_log),
                             ("dt_bias", att.dt_bias), ("norm.weight", att.norm.weight),
                             ("out_proj.weight", att.out_proj.weight)]:
            names[f"{p}linear_attn.{theirs}"] = ours
    else:
        for ours, theirs in [("W_query", "q"), ("W_key", "k"), ("W_value", "v"), ("out_proj", "o")]:
            names[f"{p}self_attn.{theirs}_proj.weight"] = getattr(att, ours).weight
        names[p + "self_attn.q_norm.weight"] = att.q_norm.weight
        names[p + "self_attn.k_norm.weight"] = att.k_norm.weight
    experts = {f"mlp.experts.{e}.": expert for e, expert in enumerate(ff.experts)}
    for prefix, expert in {**experts, "mlp.shared_expert.": ff.shared_expert}.items():
        for part in ("gate", "up", "down"):
            names[f"{p}{prefix}{part}_proj.weight"] = getattr(expert, part).weight
    return names


def deepseek_v3_names(p: str, block) -> dict[str, torch.Tensor]:
    """One DeepSeek V3 layer's parameters (and its routing bias) under their published names:
    latent attention, and a dense SwiGLU or experts with an ungated shared expert."""
    att, ff = block.att, block.ff
    names = {p + "input_layernorm.weight": block.norm1.weight,
             p + "post_attention_layernorm.weight": block.norm2.weight,
             p + "self_attn.q_a_proj.weight": att.W_query_down.weight,
             p + "self_attn.q_a_layernorm.weight": att.query_norm.weight,
             p + "self_attn.q_b_proj.weight": att.W_query_up.weight,
             p + "self_attn.kv_a_proj_with_mqa.weight": att.W_kv_down.weight,
             p + "self_attn.kv_a_layernorm.weight": att.kv_norm.weight,
             p + "self_attn.kv_b_proj.weight": att.W_kv_up.weight,
             p + "self_attn.o_proj.weight": att.out_proj.weight}
    if hasattr(ff, "experts"):
        names[p + "mlp.gate.weight"] = ff.router.weight
        names[p + "mlp.gate.e_score_correction_bias"] = ff.score_bias
        experts = {f"mlp.experts.{e}.": expert for e, expert in enumerate(ff.experts)}
        experts["mlp.shared_experts."] = ff.shared_expert
    else:
        experts = {"mlp.": ff}
    for prefix, expert in experts.items():
        for part in ("gate", "up", "down"):
            names[f"{p}{prefix}{part}_proj.weight"] = getattr(expert, part).weight
    return names


def copy_packed_experts(model: ModernGPTModel, tensors: dict) -> set[str]:
    """gpt-oss's experts into ours: each layer's gate and up layers packed in one tensor, their
    columns alternating, stored (in, out); returns the names copied."""
    copied = set()
    for i, block in enumerate(model.trf_blocks):
        p = f"model.layers.{i}.mlp.experts."
        gate_up, gate_up_bias = tensors[p + "gate_up_proj"], tensors[p + "gate_up_proj_bias"]
        for e, expert in enumerate(block.ff.experts):
            expert.gate.weight.copy_(gate_up[e][:, ::2].t())
            expert.up.weight.copy_(gate_up[e][:, 1::2].t())
            expert.gate.bias.copy_(gate_up_bias[e][::2])
            expert.up.bias.copy_(gate_up_bias[e][1::2])
            expert.down.weight.copy_(tensors[p + "down_proj"][e].t())
            expert.down.bias.copy_(tensors[p + "down_proj_bias"][e])
        copied |= {p + name for name in ("gate_up_proj", "gate_up_proj_bias", "down_proj",
                                          "down_proj_bias")}
    return copied


@pytest.fixture(scope="module", params=list(ARCHITECTURES))
def pair(request, tmp_path_factory):
    """(name, transformers' model, the published-format tensors it saved, ours loaded from them)"""
    class_name, hf_config, cfg = ARCHITECTURES[request.param]
    torch.manual_seed(0)
    reference = getattr(transformers, class_name)(hf_config).eval()
    # norms at 0 or 1, sinks and biases at 0: make them matter
    if request.param in ("gemma3", "olmo3", "gpt_oss", "qwen3_next", "deepseek_v3", "gemma4"):
        with torch.no_grad():  # (DeepSeek's routing bias is a buffer, as Gemma 4's scalars)
            for name, parameter in [*reference.named_parameters(), *reference.named_buffers()]:
                if any(part in name for part in ("norm", "sinks", "bias", "layer_scalar",
                                                 "router.")):
                    parameter.normal_(0.0, 0.3)
    folder = tmp_path_factory.mktemp(request.param)
    reference.save_pretrained(folder)
    tensors = safetensors.torch.load_file(folder / "model.safetensors")
    ours = ModernGPTModel(cfg).eval()
    names = hf_names(ours)
    with torch.no_grad():
        packed = (copy_packed_experts(ours, tensors) if ours.cfg["ffn_bias"] else
                  copy_stacked_experts(ours, tensors) if ours.cfg["experts_beside_mlp"] else set())
        # every published tensor has a place, and only one
        assert sorted(names) == sorted(set(tensors) - packed)
        for name, parameter in names.items():
            parameter.copy_(tensors[name])
    return request.param, reference, tensors, ours


def greedy(model, prompt, steps):
    """`steps` greedy tokens after `prompt`, through our KV cache."""
    caches, ids = model.make_kv_caches(prompt.shape[1] + steps), prompt
    with torch.no_grad():
        logits = model(prompt, caches, last_only=True)
        for _ in range(steps):
            next_id = logits[:, -1].argmax(dim=-1, keepdim=True)
            ids = torch.cat([ids, next_id], dim=1)
            logits = model(next_id, caches, last_only=True)
    return ids


def test_logits_and_greedy_tokens_match_transformers(pair):
    name, reference, _, ours = pair
    ids = torch.randint(0, VOCAB, (2, 24), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        difference = (reference(ids).logits - ours(ids)).abs().max().item()
    assert difference <= 1e-4, f"{name}: logits differ by {difference}"
    prompt = ids[:1, :5]
    expected = reference.generate(prompt, max_new_tokens=30, do_sample=False, pad_token_id=0)
    assert torch.equal(greedy(ours, prompt, 30), expected)


@pytest.mark.parametrize("pair", ["qwen3_sliding", "gemma3", "olmo3", "gpt_oss"], indirect=True)
def test_sliding_window_layers_match_transformers_cached_in_pieces(pair):
    """Local layers see their window only, fused or explicit, whole or continued
    through windowed caches in pieces of any size, and those caches keep window - 1 positions;
    30 greedy tokens through those caches, fused, are transformers' too."""
    _, reference, _, ours = pair
    windows = [block.att.window for block in ours.trf_blocks]
    assert SLIDING_WINDOW in windows and None in windows
    ids = torch.randint(0, VOCAB, (2, 23), generator=torch.Generator().manual_seed(3))
    try:
        _compare_windowed(reference, ours, ids, windows)
    finally:  # the pair is shared by later tests: explicit attention again, even on a failure
        for block in ours.trf_blocks:
            block.att.use_sdpa = False


def _compare_windowed(reference, ours, ids, windows):
    with torch.no_grad():
        expected = reference(ids).logits
        for sdpa in (False, True):
            for block in ours.trf_blocks:
                block.att.use_sdpa = sdpa
            torch.testing.assert_close(ours(ids), expected, atol=1e-4, rtol=1e-4)
            for sizes in ([23], [1] * 23, [5, 3, 15], [9, 1, 6, 7], [4, 4, 4, 11]):
                caches, pieces, start = ours.make_kv_caches(), [], 0
                for size in sizes:
                    pieces.append(ours(ids[:, start:start + size], caches))
                    start += size
                torch.testing.assert_close(torch.cat(pieces, dim=1), expected, atol=1e-4,
                                           rtol=1e-4, msg=f"sdpa={sdpa}, pieces {sizes}")
                assert [c.window for c in caches] == windows
                assert all(c.keys.shape[2] == SLIDING_WINDOW - 1 for c in caches if c.window)
                assert all(c.length == 23 for c in caches)
        prompt = ids[:1, :5]  # still fused
        expected = reference.generate(prompt, max_new_tokens=30, do_sample=False, pad_token_id=0)
        assert torch.equal(greedy(ours, prompt, 30), expected)


@pytest.mark.parametrize("pair", ["gemma4"], indirect=True)
def test_gemma4s_shared_layers_cache_nothing_and_match_transformers_in_pieces(pair):
    """Gemma 4's last layers read the keys and values of the last layer of their kind before
    them: fused or explicit, whole or continued through the caches in pieces of any size, the
    logits are transformers'; those layers' caches hold nothing, the local layers' keep
    window - 1 positions; 30 greedy tokens through the caches are transformers' too."""
    _, reference, _, ours = pair
    reusing = [block.att.reuse_kv for block in ours.trf_blocks]
    assert reusing == [False] * 3 + [True] * 3
    ids = torch.randint(0, VOCAB, (2, 23), generator=torch.Generator().manual_seed(3))
    try:
        with torch.no_grad():
            expected = reference(ids).logits
            for sdpa in (False, True):
                for block in ours.trf_blocks:
                    block.att.use_sdpa = sdpa
                torch.testing.assert_close(ours(ids), expected, atol=1e-4, rtol=1e-4)
                for sizes in ([23], [1] * 23, [5, 3, 15], [9, 1, 6, 7]):
                    caches, pieces, start = ours.make_kv_caches(), [], 0
                    for size in sizes:
                        pieces.append(ours(ids[:, start:start + size], caches))
                        start += size
                    torch.testing.assert_close(torch.cat(pieces, dim=1), expected, atol=1e-4,
                                               rtol=1e-4, msg=f"sdpa={sdpa}, pieces {sizes}")
                    assert [c.keys is None for c in caches] == reusing
                    assert [c.keys.shape[2] for c in caches[:2]] == [SLIDING_WINDOW - 1] * 2
                    assert caches[2].length == 23
            prompt = ids[:1, :5]
            expected = reference.generate(prompt, max_new_tokens=30, do_sample=False,
                                          pad_token_id=0)
            assert torch.equal(greedy(ours, prompt, 30), expected)
    finally:  # the pair is shared by later tests: explicit attention again, even on a failure
        for block in ours.trf_blocks:
            block.att.use_sdpa = False


@pytest.mark.parametrize("pair", ["qwen3_next"], indirect=True)
def test_deltanet_layers_match_transformers_past_a_chunk_and_cached_in_pieces(pair):
    """Qwen3-Next over 90 tokens, more than one 64-token chunk of its DeltaNet layers, whole
    and continued through the caches in pieces that cross the chunks; each DeltaNet layer's
    state keeps its size, whatever the tokens seen."""
    _, reference, _, ours = pair
    ids = torch.randint(0, VOCAB, (2, 90), generator=torch.Generator().manual_seed(4))
    state_shape = (2, QWEN3_NEXT_DELTANET["value_heads"], QWEN3_NEXT_DELTANET["key_dim"],
                   QWEN3_NEXT_DELTANET["value_dim"])
    with torch.no_grad():
        expected = reference(ids).logits
        torch.testing.assert_close(ours(ids), expected, atol=1e-4, rtol=1e-4)
        for sizes in ([70, 20], [5, 64, 21], [1] * 10 + [80]):
            caches, pieces, start = ours.make_kv_caches(), [], 0
            for size in sizes:
                pieces.append(ours(ids[:, start:start + size], caches))
                start += size
                states = [c.state.shape for c in caches if isinstance(c, DeltaNetCache)]
                assert states == [state_shape] * 3, f"after {start} tokens"
            torch.testing.assert_close(torch.cat(pieces, dim=1), expected, atol=1e-4, rtol=1e-4,
                                       msg=f"pieces {sizes}")
            assert all(c.length == 90 for c in caches)


@pytest.mark.parametrize("pair", ["deepseek_v3"], indirect=True)
def test_latent_attention_matches_transformers_cached_in_pieces_keeping_the_latents_only(pair):
    """DeepSeek V3 over 40 tokens, whole and continued through the caches in pieces; each
    layer's cache holds one latent (kv_rank numbers) and one rotated key (rope_dim) a token,
    not a key and a value for every head."""
    _, reference, _, ours = pair
    ids = torch.randint(0, VOCAB, (2, 40), generator=torch.Generator().manual_seed(5))
    mla = ours.cfg["mla"]
    with torch.no_grad():
        expected = reference(ids).logits
        for sizes in ([40], [1] * 40, [7, 1, 32]):
            caches, pieces, start = ours.make_kv_caches(), [], 0
            for size in sizes:
                pieces.append(ours(ids[:, start:start + size], caches))
                start += size
            torch.testing.assert_close(torch.cat(pieces, dim=1), expected, atol=1e-4, rtol=1e-4,
                                       msg=f"pieces {sizes}")
            assert all(cache.keys[:, :, :40].shape == (2, 1, 40, mla["kv_rank"])
                       and cache.values[:, :, :40].shape == (2, 1, 40, ours.cfg["rope_dim"])
                       for cache in caches)


def test_a_window_changes_only_what_it_hides():
    """The same weights with every layer global: the first `window` positions agree."""
    torch.manual_seed(0)
    local = ModernGPTModel({**TINY, "n_layers": 2, "sliding_window": 3,
                            "layer_types": ["local", "global"]}).eval()
    plain = ModernGPTModel({**TINY, "n_layers": 2}).eval()
    plain.load_state_dict(local.state_dict())
    ids = torch.randint(0, 50, (1, 10))
    with torch.no_grad():
        same = (local(ids) - plain(ids)).abs().amax(dim=-1)[0] < 1e-6
    assert same.tolist() == [True] * 3 + [False] * 7


def book_model(name, tensors):
    """The book package's Llama 3 or Qwen3 model, with `tensors` loaded by its own loader."""
    _, _, cfg = ARCHITECTURES[name]
    book_cfg = {"vocab_size": VOCAB, "context_length": cfg["context_length"],
                "emb_dim": cfg["emb_dim"], "n_heads": cfg["n_heads"],
                "n_layers": cfg["n_layers"], "n_kv_groups": cfg["n_kv_groups"],
                "rope_base": cfg["rope_base"], "dtype": torch.float32}
    if name == "llama3":
        from llms_from_scratch import llama3 as book
        model = book.Llama3Model({**book_cfg, "hidden_dim": cfg["hidden_dim"],
                                  "rope_freq": LLAMA3_FREQ})
        book.load_weights_into_llama(model, model.cfg, tensors)
    else:
        from llms_from_scratch import qwen3 as book
        book_cfg.update(head_dim=cfg["head_dim"], qk_norm=True)
        if cfg.get("num_experts"):
            book_cfg.update(num_experts=cfg["num_experts"], moe_intermediate_size=32,
                            num_experts_per_tok=cfg["num_experts_per_tok"])
        else:
            book_cfg["hidden_dim"] = cfg["hidden_dim"]
        model = book.Qwen3Model(book_cfg)
        book.load_weights_into_qwen(model, book_cfg, tensors)
    return model.eval()


# The book's MoE always renormalises the chosen experts' weights: no qwen3_moe_plain
@pytest.mark.parametrize("pair", ["llama3", "qwen3", "qwen3_moe_norm"], indirect=True)
def test_logits_and_greedy_tokens_match_the_book_package(pair):
    name, _, tensors, ours = pair
    book = book_model(name, tensors)
    ids = torch.randint(0, VOCAB, (2, 24), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        difference = (book(ids) - ours(ids)).abs().max().item()
        assert difference <= 1e-4, f"{name}: logits differ from the book package's by {difference}"
        expected = ids[:1, :5]
        for _ in range(30):  # the book's models have no cache: the whole sequence each step
            expected = torch.cat([expected, book(expected)[:, -1:].argmax(-1)], dim=1)
    assert torch.equal(greedy(ours, ids[:1, :5], 30), expected)


@pytest.mark.parametrize("module, options", [
    ("llama", {}), ("qwen3", {}), ("olmo3", {"float32_scale": True}),
    ("gpt_oss", {"float32_scale": True}), ("gemma4", {"float32_scale": True}),
    ("gemma3", {"unit_offset": True})])
def test_rms_norm_in_bfloat16_rounds_as_each_familys_own(module, options):
    """In bfloat16 a norm's scaling rounds once (in float32, then cast) or twice (cast, then
    scaled), as each family computes it: the same bits as transformers' own norm."""
    classes = {"llama": "LlamaRMSNorm", "qwen3": "Qwen3RMSNorm", "olmo3": "Olmo3RMSNorm",
               "gpt_oss": "GptOssRMSNorm", "gemma4": "Gemma4RMSNorm", "gemma3": "Gemma3RMSNorm"}
    modeling = importlib.import_module(f"transformers.models.{module}.modeling_{module}")
    theirs = getattr(modeling, classes[module])(1536, eps=1e-6)
    ours = RMSNorm(1536, 1e-6, **options)
    torch.manual_seed(0)
    with torch.no_grad():
        theirs.weight.normal_(0.5, 0.3)
        ours.weight.copy_(theirs.weight)
        x = torch.randn(4, 1536).to(torch.bfloat16)
        assert torch.equal(ours.to(torch.bfloat16)(x), theirs.to(torch.bfloat16)(x))


def test_rope_scores_depend_on_distance_only():
    freqs = rope_frequencies(16, 10_000.0)
    q, k = torch.randn(2, 1, 1, 16).unbind(0)
    def at(x, position):
        return apply_rope(x, *rope_angles(freqs, position, 1))

    scores = [(at(q, m) * at(k, m - 3)).sum() for m in (3, 50, 700)]
    assert torch.allclose(torch.stack(scores), scores[0].expand(3), atol=1e-4)


def test_attention_sinks_far_below_every_score_change_nothing_and_take_weight_when_high():
    from shared import attend, attend_with_sinks

    q, k, v = (torch.randn(2, 4, 6, 8, generator=torch.Generator().manual_seed(s))
               for s in range(3))
    plain = attend(q, k, v, 0, torch.nn.Identity(), False, False, window=3)
    low = attend_with_sinks(q, k, v, 0, torch.full((4,), -1e4), torch.nn.Identity(), window=3)
    torch.testing.assert_close(low, plain)
    high = attend_with_sinks(q, k, v, 0, torch.full((4,), 1e4), torch.nn.Identity(), window=3)
    assert high.abs().max() < 1e-6  # all weight on the sink, which has no value


def test_llama3_frequency_scaling_keeps_fast_and_slows_slow_pairs():
    plain = rope_frequencies(64, 500_000.0)
    scaled = rope_frequencies(64, 500_000.0, {**LLAMA3_FREQ, "original_context_length": 8192})
    assert scaled[0] == plain[0] and torch.equal(scaled[-1], plain[-1] / 32)
    assert ((scaled <= plain) & (scaled >= plain / 32)).all()


@pytest.mark.parametrize("settings", [  # Olmo 3's kind; gpt-oss's (not truncated); one given
    {"factor": 8.0, "beta_fast": 32, "beta_slow": 1, "original_max_position_embeddings": 8192},
    {"factor": 32.0, "beta_fast": 32, "beta_slow": 1, "original_max_position_embeddings": 4096,
     "truncate": False},
    {"factor": 4.0, "beta_fast": 16, "beta_slow": 2, "original_max_position_embeddings": 512,
     "attention_factor": 1.5},
])
def test_yarn_frequencies_and_attention_factor_are_transformers(settings):
    from transformers.modeling_rope_utils import _compute_yarn_parameters

    config = transformers.LlamaConfig(hidden_size=1024, num_attention_heads=8,
                                      max_position_embeddings=65_536, rope_parameters={
                                          "rope_type": "yarn", "rope_theta": 150_000.0, **settings})
    expected_freqs, expected_factor = _compute_yarn_parameters(config)
    ours = {"type": "yarn", "original_context_length": settings["original_max_position_embeddings"],
            **{k: v for k, v in settings.items() if k != "original_max_position_embeddings"}}
    torch.testing.assert_close(rope_frequencies(128, 150_000.0, ours), expected_freqs)
    assert rope_attention_factor(ours) == pytest.approx(expected_factor, rel=1e-12)


TINY = {"vocab_size": 50, "context_length": 16, "emb_dim": 16, "n_heads": 4, "n_kv_groups": 2,
        "n_layers": 1, "hidden_dim": 32, "rope_base": 10_000.0}


MOE = {"hidden_dim": None, "num_experts": 2, "num_experts_per_tok": 1, "moe_hidden_dim": 8}
DEEPSEEK_ROUTER = {"groups": 4, "topk_groups": 2, "scale": 2.5}


@pytest.mark.parametrize("change, named", [
    ({"pos_emb": True}, "pos_emb"),  # a key ModernGPTModel would ignore
    ({"n_kv_groups": 3}, "num_kv_groups"),  # refused by GroupedQueryAttention, as it is built
    ({"emb_dim": 18}, "emb_dim"),  # 18 // 4 heads would build a narrower model than asked
    ({"head_dim": 3}, "head_dim"),  # RoPE's halves would not match, at the first forward pass
    # RoPE: a base of 1 turns every pair alike, one of 0 or below gives nan angles
    ({"rope_base": 1}, "rope_base"),
    ({"rope_local_base": 0.5, "sliding_window": 4, "layer_types": ["local"]}, "rope_local_base"),
    ({"norm_eps": 0.0}, "norm_eps"),  # RMSNorm's nan at an all-zero vector, far from here
    # Llama 3's RoPE scaling: numbers that divide by zero, making logits nan or the blend a step
    ({"rope_freq": {**LLAMA3_FREQ, "factor": 0.0}}, "rope_freq"),
    ({"rope_freq": {**LLAMA3_FREQ, "high_freq_factor": 1.0}}, "rope_freq"),
    ({"rope_freq": {**YARN_FREQ, "factor": 0.5}}, "rope_freq"),  # YaRN's log would be negative
    ({"swiglu_alpha": 1.702, "swiglu_limit": 7.0}, "ffn_activation"),  # SiLU would ignore them
    ({"ffn_activation": "clamped_silu", "swiglu_alpha": 1.702, "swiglu_limit": 0.0},
     "ffn_activation"),  # a limit of 0 zeroes the gate
    ({**MOE, "num_experts_per_tok": 0}, "num_experts_per_tok"),  # a feed-forward of zeros
    ({**MOE, "num_experts_per_tok": 3}, "num_experts_per_tok"),  # top-k fails at forward
    ({"sliding_window": 4}, "sliding_window"),  # no local layer: it would be ignored
    ({"layer_types": ["local"]}, "sliding_window"),  # a local layer without a window
    ({"layer_types": ["local", "global"], "sliding_window": 4}, "layer_types"),
    ({"layer_types": ["locl"], "sliding_window": 4}, "layer_types"),
    ({"layer_types": "local", "sliding_window": 4}, "layer_types"),  # 5 letters
    # a window that is not an int >= 1: 2.0 fails at the cache's first slice, True is not an
    # int, 0 is refused only at the first forward pass, as causal_mask's window
    *[({"layer_types": ["local"], "sliding_window": w}, "sliding_window=") for w in (2.0, True, 0)],
    ({"ffn_activation": "gelu"}, "ffn_activation"),  # would gate with silu without a word
    ({**MOE, "ffn_activation": "gelu_tanh"}, "ffn_activation"),  # the experts are SwiGLUs
    # Qwen3-Next's (4.8.11, 4.9): an odd or too wide rope_dim fails only at the first forward
    # pass; a linear layer without DeltaNet's sizes, or sizes no layer reads
    *[({"rope_dim": rope_dim}, "rope_dim") for rope_dim in (3, TINY["emb_dim"] * 2)],
    ({"layer_types": ["linear"]}, "deltanet"),
    ({"deltanet": QWEN3_NEXT_DELTANET}, "deltanet"),
    ({"shared_expert_dim": 8}, "shared_expert_dim"),  # no experts: it would be ignored
    # DeepSeek V3's (4.8.12): a router without experts, groups that do not divide them, and
    # latent attention beside a window
    ({"moe_router": DEEPSEEK_ROUTER}, "moe_router"),
    ({**MOE, "num_experts": 6, "moe_router": DEEPSEEK_ROUTER}, "groups"),
    # 6 experts per token from 2 groups of 2 would reach outside the groups, without a word
    ({**MOE, "num_experts": 8, "num_experts_per_tok": 6, "moe_router": DEEPSEEK_ROUTER},
     "num_experts_per_tok=6"),
    ({"mla": {"kv_rank": 8, "v_dim": 4}, "rope_dim": 2, "qk_norm": True}, "qk_norm"),  # ignored
    ({"mla": {"kv_rank": 8, "v_dim": 4}, "rope_dim": 2, "layer_types": ["local"],
      "sliding_window": 4}, "mla"),
    # Gemma 4's (4.8.13): reusing layers with no earlier layer of their kind to reuse (a
    # KeyError deep in the first forward pass), or all of them; a wider feed-forward for no
    # reusing layer, or experts beside a feed-forward without experts (ignored); RoPE on no
    # pairs, or on a fraction of rope_dim's; a cap of 0 (logits of nan)
    ({"n_layers": 2, "layer_types": ["global", "local"], "sliding_window": 4,
      "kv_shared_layers": 1}, "kv_shared_layers=1"),
    ({"n_layers": 2, "kv_shared_layers": 2}, "kv_shared_layers=2"),
    ({"n_layers": 2, "kv_shared_layers": 1, "qk_norm_across_heads": True}, "across"),
    ({"double_wide_mlp": True}, "double_wide_mlp"),
    ({"experts_beside_mlp": True}, "experts_beside_mlp"),
    ({"global_rope_fraction": 0.0}, "global_rope_fraction=0.0"),
    ({"global_rope_fraction": 0.5, "rope_dim": 2}, "rope_dim"),
    ({"final_logit_softcap": 0.0}, "final_logit_softcap=0.0"),
    ({"global_head_dim": 5}, "global_head_dim"),
])
def test_bad_configurations_are_refused_by_name(change, named):
    with pytest.raises(ValueError, match=named):
        ModernGPTModel({**TINY, **change})


@pytest.mark.parametrize("change, named", [
    ({"qk_norm": "no"}, "qk_norm='no'"),  # a str would switch QK-norm on
    ({"post_norms": None}, "post_norms=None"),
    ({"scale_embeddings": "yes", "norm_unit_offset": 1},  # every one named
     "norm_unit_offset=1, scale_embeddings='yes'"),
])
def test_flags_that_are_not_bools_are_refused_by_name(change, named):
    with pytest.raises(TypeError, match=re.escape(named)):
        ModernGPTModel({**TINY, **change})


def test_a_rope_base_of_one_gets_its_message():  # exemplary wording
    with pytest.raises(ValueError, match=r"^rope_base must be > 1, got 1$"):
        validate_modern_config({**TINY, "rope_base": 1})


def test_grouped_query_attention_refuses_groups_that_do_not_divide_its_heads():
    # its own arguments' names: built alone, no configuration names them
    with pytest.raises(ValueError, match=r"^num_kv_groups must be a positive count dividing "
                                         r"num_heads \(5\), got 2$"):
        GroupedQueryAttention(16, num_heads=5, num_kv_groups=2, head_dim=4)


def test_the_gpt2_layout_refuses_a_modern_model():
    from shared import check_gpt2_architecture
    model = ModernGPTModel(TINY)
    with pytest.raises(TypeError, match="4.8's modern family .*save_open_model saves it"):
        check_gpt2_architecture(model)


def test_a_modern_model_trains_and_generates_with_chapter_5s_code():
    from shared import calc_loss_batch
    from shared import generate_text as generate
    torch.manual_seed(0)
    model = ModernGPTModel({**validate_modern_config(TINY), "qk_norm": True})
    assert isinstance(model, GPTModel)
    batch = torch.randint(0, 50, (2, 9))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(5):
        loss = calc_loss_batch(batch[:, :-1], batch[:, 1:], model, "cpu")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    model.eval()
    prompt = batch[:1, :4]
    cached = generate(model, prompt, max_new_tokens=8, context_size=16)
    assert cached.shape == (1, 12) and torch.equal(cached, greedy(model, prompt, 8))


def test_gemma3s_keys_each_change_what_they_name():
    """Each Gemma 3 key alone changes the logits of the same weights; norm_unit_offset's
    weights start at 0 (a scale of 1), and w - 1 under it scales as w does without."""
    torch.manual_seed(0)
    cfg = {**TINY, "n_layers": 2}
    plain = ModernGPTModel(cfg).eval()
    ids = torch.randint(0, 50, (1, 10))
    with torch.no_grad():
        for name, parameter in plain.named_parameters():  # scales other than 1, so that an
            if "norm" in name:                            # offset applied wrongly shows
                parameter.uniform_(0.5, 1.5)
        expected = plain(ids)
        offset = ModernGPTModel({**cfg, "norm_unit_offset": True}).eval()
        assert not any(p.any() for name, p in offset.named_parameters() if "norm" in name)
        offset.load_state_dict({name: p - 1 if "norm" in name else p
                                for name, p in plain.state_dict().items()})
        torch.testing.assert_close(offset(ids), expected)
        for change in [{"post_norms": True}, {"ffn_activation": "gelu_tanh"},
                       {"scale_embeddings": True}, {"query_pre_attn_scalar": 3},
                       {"rope_local_base": 100.0, "sliding_window": 16,  # hides nothing here
                        "layer_types": ["local", "global"]}]:
            model = ModernGPTModel({**cfg, **change}).eval()
            model.load_state_dict(plain.state_dict(), strict="post_norms" not in change)
            assert (model(ids) - expected).abs().max() > 1e-3, change
