# Generated from ch05_pretraining/beyond_6_open_models.ipynb
# by `python -m shared.tooling.notebooks export`. Do not edit: change the notebook's cells
# marked `#| export open_weights`, then export again.
# Each `# %%` line names the cell the code below it came from.

# %% beyond_6_open_models.ipynb cell 4, 5.9 Loading today's open models: Llama 3, Qwen3, Gemma 3...

"""Chapter 5, section 5.9 (beyond the book): Llama 3, Qwen3, Gemma 3, Olmo 3, gpt-oss, Qwen3-Next,
DeepSeek V3, Qwen3.5 and Gemma 4 (text) checkpoints in their published Hugging Face format
(config.json, safetensors, one file or shards with an index) loaded into chapter 4's
ModernGPTModel without a second copy in memory (copies only where a stored layout is
rearranged), and saved back in that format."""

import base64
import datetime
import json
import math
import re
import shutil
from pathlib import Path

import safetensors
import safetensors.torch
import tiktoken
import tokenizers
import torch

from ch04_gpt_model.modern import (
    MODERN_OPTIONAL_KEYS,
    MODERN_REQUIRED_KEYS,
    ModernGPTModel,
    validate_modern_config,
)
from ch05_pretraining.gpt2_weights import read_config_json
from shared.architecture import check_architecture
from shared.checks import check
from shared.data import (
    check_safetensors,
    mirror_dir,
)
from shared.safe_files import (
    SAVED_BY,
    write_model_folder,
)


# %% beyond_6_open_models.ipynb cell 5, 5.9 Loading today's open models: Llama 3, Qwen3, Gemma 3...

OPEN_MODEL_TYPES = ("llama", "qwen3", "qwen3_moe", "gemma3_text", "olmo3", "gpt_oss",
                    "qwen3_next", "deepseek_v3", "qwen3_5", "qwen3_5_moe", "qwen3_5_text",
                    "qwen3_5_moe_text", "gemma4", "gemma4_text")
# Qwen3.5 and Gemma 4 are published as models of images (Gemma 4's of sound too) and text:
# config.json keeps the text model's settings in text_config, and its tensors are under
# model.language_model. (beside the image encoder's): the text model's model_type, for each
TEXT_MODEL_OF = {"qwen3_5": "qwen3_5_text", "qwen3_5_moe": "qwen3_5_moe_text",
                 "gemma4": "gemma4_text"}


def config_from_hf(hf: dict) -> dict:
    """ModernGPTModel's configuration for a Llama 3, Qwen3 (dense or MoE), Gemma 3 (text), Olmo 3,
    gpt-oss, Qwen3-Next, DeepSeek V3, Qwen3.5 or Gemma 4 (their text models) config.json; an
    option the model does not compute is refused by name, never dropped."""
    model_type = hf.get("model_type")  # another would be read as Llama's, silently
    check(model_type in OPEN_MODEL_TYPES, f"model_type {model_type!r} is not in {OPEN_MODEL_TYPES}")
    if model_type in TEXT_MODEL_OF:  # the text model's settings, the images' unread; the
        # head tied as the whole model's setting says (absent: transformers' default for it)
        tied = hf.get("tie_word_embeddings", model_type == "gemma4")
        hf = {**hf["text_config"], "tie_word_embeddings": tied}
        model_type = hf["model_type"]
    # a key the family needs and the file lacks: KeyError, naming it
    readers = {"gemma3_text": _gemma3_config, "olmo3": _olmo3_config, "gpt_oss": _gpt_oss_config,
               "qwen3_next": _qwen3_next_config, "deepseek_v3": _deepseek_v3_config,
               "qwen3_5_text": _qwen3_next_config, "qwen3_5_moe_text": _qwen3_next_config,
               "gemma4_text": _gemma4_config}
    return readers.get(model_type, _llama_qwen3_config)(hf)


def _llama_qwen3_config(hf: dict) -> dict:
    """config_from_hf for Llama 3 and Qwen3 (dense or MoE)."""
    # transformers 5 names RoPE's settings rope_parameters (rope_theta among them); 4 named
    # them rope_scaling, with rope_theta beside
    rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    computed = {"attention_bias": False, "mlp_bias": False, "hidden_act": "silu",  # key: what
                "use_sliding_window": False, "mlp_only_layers": [], "decoder_sparse_step": 1,
                "quantization_config": None}  # ours computes, also a missing key's meaning
    unsupported = _not_computed(hf, computed)
    if rope_type not in ("default", "llama3"):
        unsupported.append(f"RoPE scaling {rope_type!r} (only Llama 3's)")
    check(not unsupported, f"ModernGPTModel does not compute {', '.join(unsupported)}")
    # absent or null: one per query head; 0 is refused as n_kv_groups
    kv_heads = hf.get("num_key_value_heads")
    cfg = {"vocab_size": hf["vocab_size"], "context_length": hf["max_position_embeddings"],
           "emb_dim": hf["hidden_size"], "n_heads": hf["num_attention_heads"],
           "n_layers": hf["num_hidden_layers"],
           "n_kv_groups": hf["num_attention_heads"] if kv_heads is None else kv_heads,
           "rope_base": float(rope.get("rope_theta", hf.get("rope_theta", 10_000.0))),
           "head_dim": hf.get("head_dim"),
           "qk_norm": hf["model_type"] != "llama",  # Qwen3's QK-norm, dense and MoE
           "norm_eps": hf["rms_norm_eps"], "tie_weights": hf.get("tie_word_embeddings", False)}
    if rope_type == "llama3":
        names = ("factor", "low_freq_factor", "high_freq_factor")
        cfg["rope_freq"] = {**{key: rope[key] for key in names},
                            "original_context_length": rope["original_max_position_embeddings"]}
    if hf["model_type"] == "qwen3_moe":
        cfg.update(num_experts=hf.get("num_experts") or hf["num_local_experts"],
                   num_experts_per_tok=hf["num_experts_per_tok"],
                   moe_hidden_dim=hf["moe_intermediate_size"],
                   norm_topk_prob=hf["norm_topk_prob"])
    else:
        cfg["hidden_dim"] = hf["intermediate_size"]
    return cfg


def _deepseek_v3_config(hf: dict) -> dict:
    """config_from_hf for DeepSeek V3 (4.8.12): latent attention in every layer, the first
    first_k_dense_replace layers dense, the others experts routed by groups beside a shared
    expert; its YaRN, whose mscale and mscale_all_dim set the attention factor and, as
    transformers' DeepSeek V3 code computes it, the scores' scale."""
    rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    computed = {"attention_bias": False, "hidden_act": "silu", "quantization_config": None,
                "topk_method": "noaux_tc", "scoring_func": "sigmoid", "moe_layer_freq": 1}
    unsupported = _not_computed(hf, computed)  # the published files' FP8 weights: refused
    if rope_type not in ("default", "yarn"):
        unsupported.append(f"RoPE scaling {rope_type!r}")
    check(not unsupported, f"ModernGPTModel does not compute {', '.join(unsupported)}")
    heads, n_layers = hf["num_attention_heads"], hf["num_hidden_layers"]
    head_dim = hf["qk_nope_head_dim"] + hf["qk_rope_head_dim"]
    cfg = {"vocab_size": hf["vocab_size"], "context_length": hf["max_position_embeddings"],
           "emb_dim": hf["hidden_size"], "n_heads": heads, "n_layers": n_layers,
           "n_kv_groups": heads, "head_dim": head_dim, "rope_dim": hf["qk_rope_head_dim"],
           "rope_base": float(rope.get("rope_theta", hf.get("rope_theta", 10_000.0))),
           "norm_eps": hf["rms_norm_eps"], "tie_weights": hf.get("tie_word_embeddings", False),
           "hidden_dim": hf["intermediate_size"],
           "mla": {"q_rank": hf.get("q_lora_rank"), "kv_rank": hf["kv_lora_rank"],
                   "v_dim": hf["v_head_dim"], "interleaved": hf.get("rope_interleave", True)}}
    if hf["first_k_dense_replace"] < n_layers:  # transformers' experts from that layer on
        shared = hf["moe_intermediate_size"] * hf["n_shared_experts"]
        cfg.update(num_experts=hf["n_routed_experts"], moe_hidden_dim=hf["moe_intermediate_size"],
                   num_experts_per_tok=hf["num_experts_per_tok"],
                   norm_topk_prob=hf["norm_topk_prob"], shared_expert_dim=shared or None,
                   shared_expert_gate=False, dense_layers=hf["first_k_dense_replace"],
                   moe_router={"groups": hf["n_group"], "topk_groups": hf["topk_group"],
                               "scale": hf["routed_scaling_factor"]})
    if rope_type == "yarn":
        factor = rope["factor"]

        def yarn_scale(m):  # transformers' get_mscale: 0.1 m ln(factor) + 1
            return 0.1 * m * math.log(factor) + 1.0 if factor > 1 else 1.0

        mscale, all_dims = rope.get("mscale"), rope.get("mscale_all_dim")
        cfg["rope_freq"] = {
            "type": "yarn", "factor": factor, "beta_fast": rope.get("beta_fast") or 32,
            "beta_slow": rope.get("beta_slow") or 1, "truncate": rope.get("truncate", True),
            "original_context_length": rope["original_max_position_embeddings"],
            "attention_factor": rope.get("attention_factor") or (
                yarn_scale(mscale) / yarn_scale(all_dims) if mscale and all_dims else None)}
        if all_dims:  # the scores times yarn_scale(mscale_all_dim) ** 2, as 4.8.8's scalar
            cfg["query_pre_attn_scalar"] = head_dim / yarn_scale(all_dims) ** 4
    return cfg


_GEMMA3_LAYER_TYPES = {"sliding_attention": "local", "full_attention": "global"}
_YARN_COMPUTED = {"mscale": None, "mscale_all_dim": None, "partial_rotary_factor": None}


def _not_computed(settings: dict, computed: dict, what: str = "") -> list[str]:
    """Each setting whose value differs from the one ModernGPTModel computes (`computed`: key ->
    that value, also what an absent key means), as `what` key=value."""
    return [f"{what}{key}={settings[key]!r}" for key, value in computed.items()
            if settings.get(key, value) != value]


def _layer_kinds(hf: dict, every: int, unsupported: list) -> list[str]:
    """config.json's layer_types, or as transformers fills them in (every `every`th layer
    global); a kind ModernGPTModel does not compute is added to `unsupported`."""
    kinds = hf.get("layer_types") or ["full_attention" if (i + 1) % every == 0
                                      else "sliding_attention"
                                      for i in range(hf["num_hidden_layers"])]
    unsupported += [f"layer type {kind!r}" for kind in dict.fromkeys(kinds)
                    if kind not in _GEMMA3_LAYER_TYPES]
    return kinds


def _gemma3_config(hf: dict) -> dict:
    """config_from_hf for Gemma 3's text models (270M, 1B): 4.8.8's keys switched on, and the
    layers' kinds, the window and the two RoPE bases read as transformers reads them."""
    # transformers 5 writes each kind of layer's RoPE settings in rope_parameters; the published
    # files (transformers 4) have rope_theta, rope_local_base_freq and rope_scaling
    rope = hf.get("rope_parameters") or {}
    ropes = {"global": rope.get("full_attention") or hf.get("rope_scaling") or {},
             "local": rope.get("sliding_attention") or {}}
    computed = {"attention_bias": False, "hidden_activation": "gelu_pytorch_tanh",
                "attn_logit_softcapping": None, "final_logit_softcapping": None,
                "use_bidirectional_attention": False, "quantization_config": None}
    unsupported = _not_computed(hf, computed)
    for kind, settings in ropes.items():
        rope_type = settings.get("rope_type", settings.get("type", "default"))
        if rope_type != "default":  # Gemma 3 4B and up stretch their global layers' RoPE
            unsupported.append(f"RoPE scaling {rope_type!r} in the {kind} layers")
    n_layers = hf["num_hidden_layers"]
    kinds = _layer_kinds(hf, every=hf.get("sliding_window_pattern", 6), unsupported=unsupported)
    check(not unsupported, f"ModernGPTModel does not compute {', '.join(unsupported)}")
    # null would be taken as our default, head_dim, silently (transformers fills in 256 only
    # for an absent key, and cannot compute with null)
    check(hf["query_pre_attn_scalar"] is not None, "query_pre_attn_scalar is null in config.json")
    cfg = {"vocab_size": hf["vocab_size"], "context_length": hf["max_position_embeddings"],
           "emb_dim": hf["hidden_size"], "n_heads": hf["num_attention_heads"],
           "n_layers": n_layers, "hidden_dim": hf["intermediate_size"],
           "head_dim": hf["head_dim"], "n_kv_groups": hf["num_key_value_heads"],
           "qk_norm": True, "rope_base": float(ropes["global"].get(
               "rope_theta", hf.get("rope_theta", 1_000_000.0))),
           "query_pre_attn_scalar": hf["query_pre_attn_scalar"], "norm_unit_offset": True,
           "post_norms": True, "ffn_activation": "gelu_tanh", "scale_embeddings": True,
           "norm_eps": hf["rms_norm_eps"], "tie_weights": hf.get("tie_word_embeddings", True)}
    layer_types = [_GEMMA3_LAYER_TYPES[kind] for kind in kinds]
    if "local" in layer_types:  # else no window, and no second base, to give
        cfg.update(sliding_window=hf["sliding_window"], layer_types=layer_types,
                   rope_local_base=float(ropes["local"].get(
                       "rope_theta", hf.get("rope_local_base_freq", 10_000.0))))
    return cfg


# transformers' defaults for Gemma 4, where config.json gives none
_GEMMA4_ROPE = {"full_attention": {"rope_type": "proportional", "partial_rotary_factor": 0.25,
                                   "rope_theta": 1_000_000.0},
                "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0}}


def _gemma4_config(hf: dict) -> dict:
    """config_from_hf for Gemma 4's text model (4.8.13): Gemma 3's keys (4.8.8) but its norms'
    1 + weight, and Gemma 4's: per-layer inputs, keys and values shared by the last layers,
    the global layers' own head width, key-value heads (with attention_k_eq_v) and RoPE on a
    fraction of their pairs ("proportional"), values normed, a scalar per layer, the scores'
    scale 1, the logits capped, and experts beside the dense feed-forward (enable_moe_block).
    The global layers' sizes are read as published (global_head_dim, num_global_key_value_heads)
    or as transformers 5.24 saves them (per_layer_config)."""
    rope = {**_GEMMA4_ROPE, **(hf.get("rope_parameters") or {})}
    computed = {"attention_bias": False, "hidden_activation": "gelu_pytorch_tanh",
                "quantization_config": None}
    unsupported = _not_computed(hf, computed)
    if hf.get("use_bidirectional_attention") == "all":  # "vision": images' tokens only
        unsupported.append("use_bidirectional_attention='all'")
    full, sliding = rope["full_attention"], rope["sliding_attention"]
    if full.get("rope_type") not in ("default", "proportional") or full.get("factor", 1.0) != 1:
        unsupported.append(f"RoPE {full} in the global layers")
    if sliding.get("rope_type", "default") != "default":
        unsupported.append(f"RoPE {sliding} in the local layers")
    kinds = _layer_kinds(hf, every=6, unsupported=unsupported)
    kinds = [*kinds[:-1], "full_attention"]  # as transformers makes it, whatever the file says
    per_layer = hf.get("per_layer_config")
    if per_layer is None:  # as published; transformers reads the key-value heads with k_eq_v
        wide = {"head_dim": hf.get("global_head_dim", 512)}
        if hf.get("attention_k_eq_v") and hf.get("num_global_key_value_heads") is not None:
            wide["num_key_value_heads"] = hf["num_global_key_value_heads"]
    else:  # as transformers saves it: one setting for all the global layers, none for others
        by_layer = {int(i): setting for i, setting in per_layer.items()}  # "04" for 35 layers
        settings = [(kind, by_layer.get(i, {})) for i, kind in enumerate(kinds)]
        wide = next((s for kind, s in settings if kind == "full_attention"), {})
        if any(s != (wide if kind == "full_attention" else {}) for kind, s in settings) or (
                set(wide) - {"head_dim", "num_key_value_heads"}):
            unsupported.append(f"per_layer_config={per_layer} (one setting for every global "
                               "layer, of head_dim and num_key_value_heads)")
    per_layer_vocab = hf.get("vocab_size_per_layer_input", 262_144)
    per_layer_dim = hf.get("hidden_size_per_layer_input", 256) or None
    if per_layer_dim and per_layer_vocab != hf["vocab_size"]:
        unsupported.append(f"vocab_size_per_layer_input={per_layer_vocab} apart from vocab_size")
    check(not unsupported, f"ModernGPTModel does not compute {', '.join(unsupported)}")
    fraction = full.get("partial_rotary_factor", 1.0) if full.get("rope_type") == "proportional" \
        else None
    layer_types = [_GEMMA3_LAYER_TYPES[kind] for kind in kinds]
    cfg = {"vocab_size": hf["vocab_size"], "context_length": hf["max_position_embeddings"],
           "emb_dim": hf["hidden_size"], "n_heads": hf["num_attention_heads"],
           "n_layers": hf["num_hidden_layers"], "hidden_dim": hf["intermediate_size"],
           "head_dim": hf["head_dim"], "n_kv_groups": hf["num_key_value_heads"],
           "qk_norm": True, "rope_base": float(full["rope_theta"]),
           "query_pre_attn_scalar": 1, "post_norms": True, "ffn_activation": "gelu_tanh",
           "scale_embeddings": True, "norm_eps": hf["rms_norm_eps"],
           "tie_weights": hf.get("tie_word_embeddings", True), "value_norm": True,
           "layer_scalar": True, "per_layer_dim": per_layer_dim, "norm_float32_scale": True,
           "kv_shared_layers": hf.get("num_kv_shared_layers", 0),
           "double_wide_mlp": hf.get("use_double_wide_mlp", False) and bool(  # else unread
               hf.get("num_kv_shared_layers", 0)),
           "global_head_dim": wide.get("head_dim", hf["head_dim"]),
           "global_rope_fraction": fraction,
           "final_logit_softcap": hf.get("final_logit_softcapping")}
    if hf.get("attention_k_eq_v"):  # 26B-A4B's and 31B's global layers
        cfg["values_from_keys"] = True
    if wide.get("num_key_value_heads") is not None:
        cfg["global_kv_groups"] = wide["num_key_value_heads"]
    if "local" in layer_types:
        cfg.update(sliding_window=hf["sliding_window"], layer_types=layer_types,
                   rope_local_base=float(sliding["rope_theta"]))
    if hf.get("enable_moe_block"):  # the top-k scores always rescaled to sum to 1
        cfg.update(experts_beside_mlp=True, num_experts=hf["num_experts"],
                   num_experts_per_tok=hf["top_k_experts"],
                   moe_hidden_dim=hf["moe_intermediate_size"])
    return cfg


def _olmo3_config(hf: dict) -> dict:
    """config_from_hf for Olmo 3 (4.8.9): norms after the sublayers only, QK-norm across the
    heads, windows in three layers of four, and YaRN, as transformers reads them."""
    # transformers 5 writes each kind of layer's RoPE settings in rope_parameters; the published
    # files have rope_theta and rope_scaling, which transformers gives the global layers alone,
    # the local ones keeping its default base, 500,000, whatever rope_theta says (5.24)
    ropes = {"full_attention": {"rope_theta": hf.get("rope_theta", 500_000.0)},
             "sliding_attention": {"rope_theta": 500_000.0}, **(hf.get("rope_parameters") or {})}
    ropes["full_attention"] = {**ropes["full_attention"], **(hf.get("rope_scaling") or {})}
    computed = {"attention_bias": False, "hidden_act": "silu", "quantization_config": None,
                "partial_rotary_factor": None}
    unsupported = _not_computed(hf, computed)
    n_layers = hf["num_hidden_layers"]
    kinds = _layer_kinds(hf, every=4, unsupported=unsupported)
    for kind, settings in ropes.items():
        rope_type = settings.get("rope_type", settings.get("type", "default"))
        if rope_type != "default" and (rope_type != "yarn" or kind == "sliding_attention"):
            unsupported.append(f"RoPE scaling {rope_type!r} in the {kind} layers")
        unsupported += _not_computed(settings, _YARN_COMPUTED, "YaRN's ")
    check(not unsupported, f"ModernGPTModel does not compute {', '.join(unsupported)}")
    kv_heads, full, context = hf.get("num_key_value_heads"), ropes["full_attention"], \
        hf["max_position_embeddings"]
    cfg = {"vocab_size": hf["vocab_size"], "context_length": context,
           "emb_dim": hf["hidden_size"], "n_heads": hf["num_attention_heads"],
           "n_layers": n_layers, "hidden_dim": hf["intermediate_size"],
           "head_dim": hf.get("head_dim"),
           "n_kv_groups": hf["num_attention_heads"] if kv_heads is None else kv_heads,
           "qk_norm": True, "qk_norm_across_heads": True, "pre_norms": False,
           "post_norms": True, "rope_base": float(full["rope_theta"]), "norm_float32_scale": True,
           "norm_eps": hf["rms_norm_eps"], "tie_weights": hf.get("tie_word_embeddings", False)}
    if full.get("rope_type", full.get("type")) == "yarn":  # truncate: transformers' True always
        old_context = full.get("original_max_position_embeddings", context)  # as transformers
        cfg["rope_freq"] = {"type": "yarn", "factor": full.get("factor") or context / old_context,
                            "original_context_length": old_context,
                            "beta_fast": full.get("beta_fast") or 32,
                            "beta_slow": full.get("beta_slow") or 1,
                            "attention_factor": full.get("attention_factor")}
    layer_types = [_GEMMA3_LAYER_TYPES[kind] for kind in kinds]
    if "local" in layer_types:
        cfg.update(sliding_window=hf.get("sliding_window", 4096), layer_types=layer_types,
                   rope_local_base=float(ropes["sliding_attention"]["rope_theta"]))
    return cfg


# transformers' GptOssConfig's RoPE when config.json gives none (rope_theta 150,000), and its
# defaults for the keys config_from_hf reads
_GPT_OSS_ROPE = {"rope_type": "yarn", "factor": 32.0, "beta_fast": 32.0, "beta_slow": 1.0,
                 "truncate": False, "original_max_position_embeddings": 4096}
_GPT_OSS_DEFAULTS = {"head_dim": 64, "num_key_value_heads": 8, "sliding_window": 128,
                     "rms_norm_eps": 1e-5, "num_experts_per_tok": 4, "num_local_experts": 128}


def _gpt_oss_config(hf: dict) -> dict:
    """config_from_hf for gpt-oss (4.8.10): attention sinks and biases, experts with biases and
    the clamped SwiGLU, windows in every other layer, YaRN in all of them."""
    # as transformers 5.24 reads them: rope_scaling first, then rope_parameters, its default
    # only where both are absent; a missing key: GptOssConfig's default
    rope = hf.get("rope_scaling") or hf.get("rope_parameters")
    rope = {"rope_theta": hf.get("rope_theta", 150_000.0),
            **(_GPT_OSS_ROPE if rope is None else rope)}
    hf = {**_GPT_OSS_DEFAULTS, **hf}
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    # the published files hold the experts in MXFP4, which transformers dequantizes on loading
    # with Mxfp4Config(dequantize=True); saved again, they load here
    computed = {"quantization_config": None, "partial_rotary_factor": None}
    unsupported = _not_computed(hf, computed)
    unsupported += _not_computed(rope, _YARN_COMPUTED, "YaRN's ")
    n_layers = hf["num_hidden_layers"]
    kinds = _layer_kinds(hf, every=2, unsupported=unsupported)
    if rope_type not in ("default", "yarn"):
        unsupported.append(f"RoPE scaling {rope_type!r}")
    check(not unsupported, f"ModernGPTModel does not compute {', '.join(unsupported)}")
    heads, kv_heads, bias = hf["num_attention_heads"], hf.get("num_key_value_heads"), \
        hf.get("attention_bias", True)
    cfg = {"vocab_size": hf["vocab_size"], "context_length": hf["max_position_embeddings"],
           "emb_dim": hf["hidden_size"], "n_heads": heads, "n_layers": n_layers,
           "head_dim": hf.get("head_dim"), "n_kv_groups": heads if kv_heads is None else kv_heads,
           "rope_base": float(rope["rope_theta"]), "norm_eps": hf["rms_norm_eps"],
           "tie_weights": hf.get("tie_word_embeddings", False), "qkv_bias": bias,
           "attention_out_bias": bias, "attention_sinks": True, "norm_float32_scale": True,
           "num_experts": hf.get("num_experts") or hf["num_local_experts"],
           "num_experts_per_tok": hf["num_experts_per_tok"],
           "moe_hidden_dim": hf["intermediate_size"], "norm_topk_prob": True, "ffn_bias": True,
           "ffn_activation": "clamped_silu", "swiglu_alpha": hf.get("swiglu_alpha", 1.702),
           "swiglu_limit": hf.get("swiglu_limit", 7.0)}
    if rope_type == "yarn":  # one RoPE for every layer, local or global
        old_context = rope.get("original_max_position_embeddings", cfg["context_length"])
        cfg["rope_freq"] = {"type": "yarn", "original_context_length": old_context,
                            "factor": rope.get("factor") or cfg["context_length"] / old_context,
                            "beta_fast": rope.get("beta_fast") or 32,
                            "beta_slow": rope.get("beta_slow") or 1,
                            "truncate": rope.get("truncate", True),
                            "attention_factor": rope.get("attention_factor")}
    layer_types = [_GEMMA3_LAYER_TYPES[kind] for kind in kinds]
    if "local" in layer_types:
        cfg.update(sliding_window=hf["sliding_window"], layer_types=layer_types)
    return cfg


_QWEN3_NEXT_LAYER_TYPES = {"linear_attention": "linear", "full_attention": "global"}


def _qwen3_next_config(hf: dict) -> dict:
    """config_from_hf for Qwen3-Next (4.8.11) and Qwen3.5: Gated DeltaNet (4.9) in the layers
    layer_types calls linear_attention (without layer_types, three in every
    full_attention_interval = 4), gated attention in the others with a part of each head turned
    by RoPE, norms of 1 + weight, experts with a gated shared expert or (Qwen3.5's dense models)
    a dense feed-forward. Qwen3.5's RoPE for images (mrope_section) turns a text token's numbers
    as plain RoPE does: its three positions are the token's one."""
    rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    computed = {"attention_bias": False, "hidden_act": "silu", "mlp_only_layers": [],
                "decoder_sparse_step": 1, "quantization_config": None,
                "attn_output_gate": True}  # as Qwen3.5's files spell the attention gate
    unsupported = _not_computed(hf, computed)
    every, n_layers = hf.get("full_attention_interval", 4), hf["num_hidden_layers"]
    kinds = hf.get("layer_types") or ["full_attention" if (i + 1) % every == 0
                                      else "linear_attention" for i in range(n_layers)]
    unsupported += [f"layer type {kind!r}" for kind in dict.fromkeys(kinds)
                    if kind not in _QWEN3_NEXT_LAYER_TYPES]
    if rope_type != "default":
        unsupported.append(f"RoPE scaling {rope_type!r}")
    check(not unsupported, f"ModernGPTModel does not compute {', '.join(unsupported)}")
    # the published files give it at the top level, transformers 5 among RoPE's settings
    head_dim = hf.get("head_dim", 256)
    fraction = rope.get("partial_rotary_factor", hf.get("partial_rotary_factor", 0.25))
    cfg = {"vocab_size": hf["vocab_size"], "context_length": hf["max_position_embeddings"],
           "emb_dim": hf["hidden_size"], "n_heads": hf["num_attention_heads"],
           "n_layers": n_layers, "n_kv_groups": hf["num_key_value_heads"], "head_dim": head_dim,
           "rope_base": float(rope.get("rope_theta", hf.get("rope_theta", 10_000.0))),
           "rope_dim": int(head_dim * fraction), "qk_norm": True, "attention_gate": True,
           "norm_unit_offset": True, "norm_eps": hf["rms_norm_eps"],
           "tie_weights": hf.get("tie_word_embeddings", False),
           "layer_types": [_QWEN3_NEXT_LAYER_TYPES[kind] for kind in kinds]}
    if "linear" in cfg["layer_types"]:
        cfg["deltanet"] = {"key_heads": hf["linear_num_key_heads"],
                           "value_heads": hf["linear_num_value_heads"],
                           "key_dim": hf["linear_key_head_dim"],
                           "value_dim": hf["linear_value_head_dim"],
                           "conv_kernel": hf["linear_conv_kernel_dim"]}
    if hf.get("num_experts"):  # every layer's, with a shared expert; Qwen3.5's always
        cfg.update(num_experts=hf["num_experts"], num_experts_per_tok=hf["num_experts_per_tok"],
                   moe_hidden_dim=hf["moe_intermediate_size"],  # rescales the chosen scores
                   shared_expert_dim=hf["shared_expert_intermediate_size"],
                   norm_topk_prob=hf.get("norm_topk_prob", True))
    else:
        cfg["hidden_dim"] = hf["intermediate_size"]
    return cfg


# %% beyond_6_open_models.ipynb cell 7, 5.9 Loading today's open models: Llama 3, Qwen3, Gemma 3...

# gpt-oss stores each layer's experts packed (4.8.10): one tensor of all experts' gate and up
# layers, their columns alternating gate, up, gate, ..., stored (in, out) as x @ W reads them;
# one of their down layers; and their biases. hf_layout names each as one pseudo-parameter.
PACKED_EXPERTS = ("gate_up_proj", "gate_up_proj_bias", "down_proj", "down_proj_bias")
# Qwen3.5's published experts are stacked: one tensor of each layer's experts' gate and up layers
# (experts, 2 * moe_hidden_dim, emb_dim), the gates first, and one of their down layers (experts,
# emb_dim, moe_hidden_dim), each expert's as nn.Linear holds it: two more pseudo-parameters.
STACKED_EXPERTS = ("stacked_gate_up", "stacked_down")


def unpack_experts(state: dict) -> dict:
    """`state` with each packed tensor (...ff.experts.gate_up_proj, as hf_layout names it) split
    into the experts' own weights and biases: views of it, but for gpt-oss's gate and up layers,
    copied from the interleaved columns (as views, every forward pass would copy them); Qwen3.5's
    stacked experts likewise, as views."""
    for name in [name for name in state if name.endswith(PACKED_EXPERTS + STACKED_EXPERTS)]:
        prefix, packed = name.rsplit(".", 1)
        for e, tensor in enumerate(state.pop(name)):
            expert = f"{prefix}.{e}."
            if packed == "stacked_gate_up":  # Qwen3.5's: views
                state[expert + "gate.weight"], state[expert + "up.weight"] = tensor.chunk(2)
            elif packed == "stacked_down":
                state[expert + "down.weight"] = tensor
            elif packed == "gate_up_proj":
                state[expert + "gate.weight"], state[expert + "up.weight"] = (
                    tensor[:, ::2].contiguous().t(), tensor[:, 1::2].contiguous().t())
            elif packed == "gate_up_proj_bias":
                state[expert + "gate.bias"], state[expert + "up.bias"] = tensor[::2], tensor[1::2]
            elif packed == "down_proj":
                state[expert + "down.weight"] = tensor.t()
            else:
                state[expert + "down.bias"] = tensor
    return state


def pack_experts(model: ModernGPTModel, name: str) -> torch.Tensor:
    """unpack_experts' inverse for one of hf_layout's packed names (trf_blocks.0.ff.experts.
    gate_up_proj): that layer's experts packed as gpt-oss (or Qwen3.5) stores them, built when
    asked."""
    prefix, packed = name.rsplit(".", 1)
    experts = model.get_submodule(prefix)
    if packed in STACKED_EXPERTS:  # Qwen3.5's
        return torch.stack([torch.cat([x.gate.weight, x.up.weight]) if packed == "stacked_gate_up"
                            else x.down.weight for x in experts])
    if packed == "gate_up_proj":  # (experts, in, 2 * hidden), gate and up columns alternating
        return torch.stack([torch.stack([x.gate.weight.t(), x.up.weight.t()], dim=-1)
                            .flatten(-2) for x in experts])
    if packed == "gate_up_proj_bias":
        return torch.stack([torch.stack([x.gate.bias, x.up.bias], dim=-1).flatten(-2)
                            for x in experts])
    if packed == "down_proj":
        return torch.stack([x.down.weight.t() for x in experts])
    return torch.stack([x.down.bias for x in experts])


# Qwen3-Next's names for a Gated DeltaNet layer's tensors (4.9) -> ours
_DELTANET_NAMES = {"in_proj_qkvz.weight": "W_qkvz.weight", "in_proj_ba.weight": "W_ba.weight",
                   "conv1d.weight": "conv.weight", "A_log": "A_log", "dt_bias": "dt_bias",
                   "norm.weight": "norm.weight", "out_proj.weight": "out_proj.weight"}
# Qwen3.5 stores the two input projections as four, not grouped by key head: queries, keys and
# values (each all heads, in that order), the output gate, the writing strengths, the decays.
# hf_layout names each as one pseudo-parameter of the layer, as it names gpt-oss's experts.
SEPARATE_PROJECTIONS = ("in_proj_qkv", "in_proj_z", "in_proj_b", "in_proj_a")
_QWEN3_5_DELTANET_NAMES = {**{f"{name}.weight": name for name in SEPARATE_PROJECTIONS},
                           **{theirs: ours for theirs, ours in _DELTANET_NAMES.items()
                              if not theirs.startswith("in_proj")}}


def group_projections(state: dict, model: ModernGPTModel) -> dict:
    """`state` with each DeltaNet layer's four Qwen3.5 projections (...att.in_proj_qkv, as
    hf_layout names them) joined into GatedDeltaNet's W_qkvz and W_ba, whose rows go key head by
    key head: its query, its key, its value heads' values and output gates (W_qkvz), its value
    heads' writing strengths and decays (W_ba). The joined tensors are copies."""
    for name in [name for name in state if name.endswith(".in_proj_qkv")]:
        prefix = name.removesuffix("in_proj_qkv")  # trf_blocks.0.att.
        layer = model.get_submodule(prefix[:-1])
        heads, width = layer.key_heads, layer.key_heads * layer.key_dim
        qkv, z, b, a = (state.pop(prefix + part) for part in SEPARATE_PROJECTIONS)
        state[prefix + "W_qkvz.weight"] = _by_key_head(heads, *qkv.split([width, width, len(z)]),
                                                       z)
        state[prefix + "W_ba.weight"] = _by_key_head(heads, b, a)
    return state


def _by_key_head(heads: int, *parts: torch.Tensor) -> torch.Tensor:
    """The parts' rows, each part cut into `heads` blocks: every part's first block, then every
    part's second, ..."""
    return torch.cat([part.unflatten(0, (heads, -1)) for part in parts], dim=1).flatten(0, 1)


def split_projection(model: ModernGPTModel, name: str) -> torch.Tensor:
    """group_projections' inverse for one of hf_layout's Qwen3.5 names (trf_blocks.0.att.
    in_proj_qkv): that projection as Qwen3.5 stores it, built when asked."""
    prefix, part = name.rsplit(".", 1)
    layer = model.get_submodule(prefix)
    group = layer.value_heads // layer.key_heads * layer.value_dim
    if part in ("in_proj_b", "in_proj_a"):
        b, a = layer.W_ba.weight.unflatten(0, (layer.key_heads, -1)).chunk(2, dim=1)
        return (b if part == "in_proj_b" else a).flatten(0, 1)
    q, k, v, z = layer.W_qkvz.weight.unflatten(0, (layer.key_heads, -1)).split(
        [layer.key_dim, layer.key_dim, group, group], dim=1)
    return z.flatten(0, 1) if part == "in_proj_z" else torch.cat([q.flatten(0, 1),
                                                                  k.flatten(0, 1),
                                                                  v.flatten(0, 1)])


def hf_layout(model: ModernGPTModel, family: str | None = None) -> dict[str, str]:
    """Each tensor name of a Hugging Face Llama/Qwen3/Gemma 3/Olmo 3/gpt-oss/Qwen3-Next/DeepSeek
    V3/Qwen3.5/Gemma 4 checkpoint -> our parameter's name, in the order transformers stores them.
    `family`, config.json's model_type, is read only where one model can be stored two ways:
    Qwen3.5's text model ("qwen3_5_text", "qwen3_5_moe_text") stores a DeltaNet layer's
    projections as Qwen3-Next does not."""
    layout = {"model.embed_tokens.weight": "tok_emb.weight"}
    if model.cfg["per_layer_dim"]:  # Gemma 4's per-layer inputs (4.8.13)
        layout.update({"model.embed_tokens_per_layer.weight": "per_layer_emb.weight",
                       "model.per_layer_model_projection.weight": "per_layer_proj.weight",
                       "model.per_layer_projection_norm.weight": "per_layer_norm.weight"})
    attention = {"q_proj": "W_query", "k_proj": "W_key", "v_proj": "W_value", "o_proj": "out_proj"}
    if model.cfg["qk_norm"]:
        attention.update(q_norm="q_norm", k_norm="k_norm")
    # the feed-forward's name prefixes: one per expert, or one empty prefix for a dense model
    # (Gemma 4's has experts beside it, named apart, 4.8.13)
    stacked = family == "qwen3_5_moe_text"  # its experts stacked, as published
    beside = model.cfg["experts_beside_mlp"]
    experts = ({} if stacked else {f"experts.{e}.": f"experts.{e}."
                                   for e in range(model.cfg["num_experts"])}
               ) if model.cfg["num_experts"] and not beside else {"": ""}
    if model.cfg["shared_expert_dim"]:  # Qwen3-Next's, gated (4.8.11); DeepSeek V3's, plural
        experts["shared_expert." if model.cfg["shared_expert_gate"] else "shared_experts."] = \
            "shared_expert."
    kinds = model.cfg["layer_types"] or ["global"] * model.cfg["n_layers"]
    q_rank = (model.cfg["mla"] or {}).get("q_rank")
    mla = model.cfg["mla"] and ({"q_proj": "W_query"} if q_rank is None else {
        "q_a_proj": "W_query_down", "q_a_layernorm": "query_norm", "q_b_proj": "W_query_up"})
    if mla:  # DeepSeek V3's latent attention (4.8.12)
        attention = {**mla, "kv_a_proj_with_mqa": "W_kv_down", "kv_a_layernorm": "kv_norm",
                     "kv_b_proj": "W_kv_up", "o_proj": "out_proj"}
    for i in range(model.cfg["n_layers"]):
        hf, ours = f"model.layers.{i}.", f"trf_blocks.{i}."
        if model.cfg["pre_norms"]:  # Olmo 3 has none (4.8.9)
            layout[hf + "input_layernorm.weight"] = ours + "norm1.weight"
        if model.cfg["post_norms"]:  # Gemma 3's, Olmo 3's: post_attention_layernorm is a post-norm
            layout[hf + "post_attention_layernorm.weight"] = ours + "post_norm1.weight"
            if model.cfg["pre_norms"]:
                layout[hf + "pre_feedforward_layernorm.weight"] = ours + "norm2.weight"
            layout[hf + "post_feedforward_layernorm.weight"] = ours + "post_norm2.weight"
        else:
            layout[hf + "post_attention_layernorm.weight"] = ours + "norm2.weight"
        linear = kinds[i] == "linear"  # Qwen3-Next's Gated DeltaNet layers (4.9)
        deltanet = _QWEN3_5_DELTANET_NAMES if family in (
            "qwen3_5_text", "qwen3_5_moe_text") else _DELTANET_NAMES
        for theirs, mine in deltanet.items() if linear else ():
            layout[f"{hf}linear_attn.{theirs}"] = f"{ours}att.{mine}"
        for theirs, mine in () if linear else attention.items():
            if not hasattr(model.trf_blocks[i].att, mine):  # Gemma 4's layers that reuse keys
                continue  # and values, or make values from keys, have no such layer (4.8.13)
            layout[f"{hf}self_attn.{theirs}.weight"] = f"{ours}att.{mine}.weight"
            if mine in ("W_query", "W_key", "W_value") and model.cfg["qkv_bias"] or (
                    mine == "out_proj" and model.cfg["attention_out_bias"]):  # gpt-oss's
                layout[f"{hf}self_attn.{theirs}.bias"] = f"{ours}att.{mine}.bias"
        if model.cfg["attention_sinks"]:
            layout[hf + "self_attn.sinks"] = ours + "att.sinks"
        if model.cfg["per_layer_dim"]:  # Gemma 4's (4.8.13)
            layout.update({hf + "per_layer_input_gate.weight": ours + "per_layer_gate.weight",
                           hf + "per_layer_projection.weight": ours + "per_layer_up.weight",
                           hf + "post_per_layer_input_norm.weight": ours + "per_layer_norm.weight"})
        if beside:  # Gemma 4's experts, stacked, their router and the norms around them
            layout.update({f"{hf}{theirs}": f"{ours}{mine}" for theirs, mine in [
                ("router.proj.weight", "moe.router.weight"), ("router.scale", "moe.router_scale"),
                ("router.per_expert_scale", "moe.expert_scales"),
                ("experts.gate_up_proj", "moe.experts.stacked_gate_up"),
                ("experts.down_proj", "moe.experts.stacked_down"),
                ("post_feedforward_layernorm_1.weight", "post_norm_dense.weight"),
                ("pre_feedforward_layernorm_2.weight", "moe_norm.weight"),
                ("post_feedforward_layernorm_2.weight", "post_norm_moe.weight")]})
        if model.cfg["layer_scalar"]:
            layout[hf + "layer_scalar"] = ours + "layer_scalar"
        if model.cfg["num_experts"] and model.cfg["ffn_bias"]:  # gpt-oss's: packed experts
            layout[hf + "mlp.router.weight"] = ours + "ff.router.weight"
            layout[hf + "mlp.router.bias"] = ours + "ff.router.bias"
            for packed in PACKED_EXPERTS:
                layout[f"{hf}mlp.experts.{packed}"] = f"{ours}ff.experts.{packed}"
            continue
        dense = i < model.cfg["dense_layers"]  # DeepSeek V3's first layers (4.8.12)
        if model.cfg["num_experts"] and not dense and not beside:
            layout[hf + "mlp.gate.weight"] = ours + "ff.router.weight"
        if model.cfg["moe_router"] and not dense:
            layout[hf + "mlp.gate.e_score_correction_bias"] = ours + "ff.score_bias"
        for theirs, mine in {"": ""}.items() if dense else experts.items():
            for part in ("gate", "up", "down"):
                layout[f"{hf}mlp.{theirs}{part}_proj.weight"] = f"{ours}ff.{mine}{part}.weight"
        for theirs, mine in zip(("gate_up_proj", "down_proj"), STACKED_EXPERTS) if stacked else ():
            layout[f"{hf}mlp.experts.{theirs}"] = f"{ours}ff.experts.{mine}"
        if model.cfg["shared_expert_dim"] and model.cfg["shared_expert_gate"]:
            layout[hf + "mlp.shared_expert_gate.weight"] = ours + "ff.shared_gate.weight"
    layout["model.norm.weight"] = "final_norm.weight"
    if not model.cfg["tie_weights"]:  # a tied head is the embedding: no tensor of its own
        layout["lm_head.weight"] = "out_head.weight"
    return layout


# %% beyond_6_open_models.ipynb cell 8, 5.9 Loading today's open models: Llama 3, Qwen3, Gemma 3...

def tensor_files(folder: Path) -> dict[str, Path]:
    """Each tensor name of a model folder -> the safetensors file that holds it. Each file is
    checked whole first: an interrupted download can leave an index without all its shards,
    or a file cut short, and neither may pass for a model."""
    index, single, files = folder / "model.safetensors.index.json", folder / "model.safetensors", {}
    if index.is_file():  # shards: the index says where each tensor is
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        files = {name: folder / file for name, file in weight_map.items()}
    for path in sorted(set(files.values())) if files else [single]:  # a missing one: OSError
        try:
            check_safetensors(path)  # its header against its size: a few bytes read
        except ValueError as error:  # which file of the shards, and what to do
            raise ValueError(f"{path.name} is not a complete safetensors file ({error})") from None
    if not files:
        with safetensors.safe_open(single, framework="pt") as f:
            files = dict.fromkeys(f.keys(), single)
    return files


def _open_config(folder: Path) -> tuple[dict, dict]:
    """The settings of `folder`'s config.json and ModernGPTModel's configuration for them, with
    the defaults filled in (a bad value is named by its key in the configuration)."""
    hf = read_config_json(folder / "config.json", OPEN_MODEL_TYPES)  # none: FileNotFoundError
    return hf, validate_modern_config(config_from_hf(hf))


# DeepSeek V3's router and score bias (4.8.12's moe_router) stay in float32 whatever the other
# weights' dtype, as transformers keeps them: its experts are chosen by float32 scores
ROUTER_IN_FLOAT32 = ("ff.router.weight", "ff.score_bias")


def load_open_model(folder: str | Path, dtype: torch.dtype | None = None) -> ModernGPTModel:
    """A ModernGPTModel with the weights of a Hugging Face Llama 3, Qwen3, Gemma 3, Olmo 3, gpt-oss,
    Qwen3-Next, DeepSeek V3, Qwen3.5 or Gemma 4 folder (their text models), in eval mode; dtype None
    keeps the stored one (bfloat16 for the published models), which must be the same for every
    tensor but DeepSeek V3's router (ROUTER_IN_FLOAT32, read in float32). The stored tensors' names
    and dtypes are checked, from the files' headers, before any tensor is read; a tensor of another
    shape than the config implies, or one the folder lacks, is named by load_state_dict."""
    folder = Path(folder)
    check(dtype is None or isinstance(dtype, torch.dtype) and dtype.is_floating_point,  # not "bf16"
          lambda: f"dtype must be a floating-point torch.dtype (torch.bfloat16), got {dtype!r}")
    hf, cfg = _open_config(folder)
    with torch.device("meta"):  # shapes only: the parameters will be the tensors read
        model = ModernGPTModel(cfg)
    family = TEXT_MODEL_OF.get(hf["model_type"], hf["model_type"])
    layout, files = hf_layout(model, family), tensor_files(folder)
    if family == "qwen3_5_moe_text":  # its experts stacked as published, or one by one, as
        layout = {**hf_layout(model), **layout}  # transformers 5.24 saves them: either is read
    if hf["model_type"] in TEXT_MODEL_OF:  # the text model's tensors, by their names there
        layout = {name.replace("model.", "model.language_model.", 1): ours
                  for name, ours in layout.items()}
    if cfg["tie_weights"]:  # some tied checkpoints store a copy of the head: it is not read
        files.pop("lm_head.weight", None)
    # what transformers skips too: Qwen3-Next's, Qwen3.5's and DeepSeek V3's layers for
    # predicting further tokens, and the empty shared expert a DeepSeek V3 without one is saved
    # with; and what the text model does not read: Qwen3.5's image encoder, Gemma 4's image
    # and sound encoders
    qwen = hf["model_type"].startswith(("qwen3_next", "qwen3_5"))
    skipped = {"deepseek_v3": (f"model.layers.{cfg['n_layers']}.",),
               "gemma4": ("model.vision_tower.", "model.audio_tower.", "model.embed_vision.",
                          "model.embed_audio.")}.get(
        hf["model_type"], ("mtp.", "model.visual.") if qwen else ())
    # Gemma 4's layers that reuse keys and values may hold key and value layers of their own,
    # which transformers skips too (4.8.13)
    text = "model.language_model." if hf["model_type"] in TEXT_MODEL_OF else "model."
    skipped += tuple(f"{text}layers.{i}.self_attn.{part}." for i, block in
                     enumerate(model.trf_blocks) if getattr(block.att, "reuse_kv", False)
                     for part in ("k_proj", "v_proj", "k_norm", "v_norm"))
    files = {name: path for name, path in files.items() if not name.startswith(skipped)
             and not (hf["model_type"] == "deepseek_v3" and not cfg["shared_expert_dim"]
                      and ".mlp.shared_experts." in name)}
    by_file, stored = {}, {}  # stored: each dtype's first file
    kept = ROUTER_IN_FLOAT32 if cfg["moe_router"] else ()
    for name, path in files.items():
        by_file.setdefault(path, []).append(name)
    for path, names in by_file.items():  # every name and dtype first, from the files' headers
        with safetensors.safe_open(path, framework="pt") as f:
            for name in names:
                if not layout[name].endswith(kept):  # a name the config lacks: KeyError
                    stored.setdefault(f.get_slice(name).get_dtype(), path.name)
    check(dtype is not None or len(stored) == 1, lambda: f"the weights in {folder} are of several "
          f"dtypes ({', '.join(f'{k} in {file}' for k, file in stored.items())}): pass dtype=")
    state = {}
    for path, names in by_file.items():
        with safetensors.safe_open(path, framework="pt") as f:  # memory-mapped
            for name in names:
                tensor, ours = f.get_tensor(name), layout[name]
                state[ours] = (tensor.float() if ours.endswith(kept) else
                               tensor if dtype is None else tensor.to(dtype))
    if cfg["tie_weights"]:
        state["out_head.weight"] = state["tok_emb.weight"]
    # the tensors become the parameters, no copy (but for gpt-oss's gate and up layers and
    # Qwen3.5's joined projections, copied above)
    model.load_state_dict(group_projections(unpack_experts(state), model), assign=True)
    if cfg["tie_weights"]:
        model.out_head.weight = model.tok_emb.weight  # one Parameter again, as in training
    return model.eval()


# %% beyond_6_open_models.ipynb cell 10, 5.9 Loading today's open models: Llama 3, Qwen3, Gemma ...

def download_open_model(repo_id: str, local_dir: str | Path | None = None,
                        token: str | None = None) -> Path:
    """The folder of a Hub model ("Qwen/Qwen3-0.6B", "google/gemma-3-1b-it"): from the
    course's data mirror if it holds one, else downloaded (config, weights, tokenizer files)."""
    mirror = mirror_dir()
    if mirror is not None and (mirror / repo_id / "config.json").is_file():
        return mirror / repo_id
    from huggingface_hub import snapshot_download  # only needed here, and it is slow to import
    return Path(snapshot_download(repo_id, local_dir=local_dir, token=token, allow_patterns=[
        "*.json", "*.safetensors", "merges.txt", "chat_template.jinja",  # SOURCE_FILES, 5.9.4
        "original/tokenizer.model"]))


# %% beyond_6_open_models.ipynb cell 39, 5.9.1 Their tokenizers and chat templates

LLAMA3_SPLIT_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                        r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
LLAMA3_SPECIAL_TOKENS = (  # ids 128000 onwards; the rest of the 256 are reserved
    "<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
    "<|reserved_special_token_1|>", "<|finetune_right_pad_id|>", "<|step_id|>",
    "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>", "<|python_tag|>")


_TIKTOKEN_LINE = re.compile(rb"([A-Za-z0-9+/]+={0,2}) (\d+)")  # a token's bytes in base64, its rank


def load_llama3_tokenizer(path: str | Path) -> tiktoken.Encoding:
    """Llama 3's tokenizer from its tiktoken-format file (original/tokenizer.model): the ranks,
    Meta's split pattern, and 256 special tokens numbered after the ranks."""
    path = Path(path)
    # read here: tiktoken.load.load_tiktoken_bpe keeps a copy of each file it reads in
    # TIKTOKEN_CACHE_DIR under the file's path, and reads that copy after the file is replaced
    lines = path.read_bytes().splitlines() or [b""]
    matches = [_TIKTOKEN_LINE.fullmatch(line) for line in lines]
    bad = next((rank for rank, match in enumerate(matches)
                if not match or int(match[2]) != rank), None)
    check(bad is None, lambda: f"{path} is not in tiktoken's format (line {bad + 1}: "
          f"{lines[bad][:40]!r}); Llama 3's is original/tokenizer.model")  # else wrong ranks
    ranks = {base64.b64decode(match[1]): rank for rank, match in enumerate(matches)}
    reserved = range(2, 2 + 256 - len(LLAMA3_SPECIAL_TOKENS))  # 256 special tokens in all
    names = [*LLAMA3_SPECIAL_TOKENS, *(f"<|reserved_special_token_{i}|>" for i in reserved)]
    return tiktoken.Encoding(path.stem, pat_str=LLAMA3_SPLIT_PATTERN, mergeable_ranks=ranks,
                             special_tokens={name: len(ranks) + i for i, name in enumerate(names)})


class HFTokenizer:
    """A Hugging Face tokenizer.json (Qwen3's, Gemma 3's, gpt-oss's), read by the `tokenizers`
    library, behind an encode(text) and a decode(ids) like chapter 2's. Special tokens written in
    the text become those tokens (tiktoken's allowed_special="all"), as in transformers."""

    def __init__(self, path: str | Path):
        path = Path(path)
        path = path / "tokenizer.json" if path.is_dir() else path
        self.tokenizer = tokenizers.Tokenizer.from_file(str(path))

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=False)


# %% beyond_6_open_models.ipynb cell 41, 5.9.1 Their tokenizers and chat templates

def chat_prompt(messages: list[dict], style: str, thinking: bool | None = None, *,
                reasoning_effort: str = "medium", date: str | None = None) -> str:
    """The text a chat model continues: each {"role", "content"} message in the markers of
    `style` ("llama3", "qwen3", "gemma3", "gpt_oss" or "gemma4"), then the opening of the
    assistant's turn. thinking=False gives Qwen3 the empty reasoning block, and Gemma 4 the empty
    thought channel, that ask it to answer directly (thinking=True gives Gemma 4 the <|think|>
    marker in a system turn; None: each template's default, thinking for Qwen3, not for Gemma 4;
    the others have neither); gpt-oss reasons at reasoning_effort
    ("low", "medium", "high") and is told the date (YYYY-MM-DD; None: today's). Each role is
    "system", "user" or "assistant" (Gemma 3, Gemma 4 and gpt-oss have a system message only
    first)."""
    # another style would be written as Qwen3's, another role into the prompt as it is: refused
    styles = ("llama3", "qwen3", "gemma3", "gpt_oss", "gemma4")
    check(style in styles, f"style {style!r} is not in {styles}")
    roles = ("system", "user", "assistant")  # Gemma 3's system message can only be the first
    for i, m in enumerate(messages):
        allowed = roles[style in ("gemma3", "gpt_oss", "gemma4") and i > 0:]
        check(m["role"] in allowed, f"messages[{i}]['role'] {m['role']!r} is not in {allowed}")
    if style == "gpt_oss":
        return _harmony_prompt(messages, reasoning_effort, date)
    if style == "gemma3":  # no system turn: a system message opens the first user turn
        prefix, turns = "", messages
        if messages[0]["role"] == "system":
            prefix, turns = messages[0]["content"] + "\n\n", messages[1:]
        body = "".join(f"<start_of_turn>{'model' if m['role'] == 'assistant' else m['role']}\n"
                       f"{prefix if i == 0 else ''}{m['content'].strip()}<end_of_turn>\n"
                       for i, m in enumerate(turns))
        return f"<bos>{body}<start_of_turn>model\n"
    thinking = style != "gemma4" if thinking is None else thinking  # the templates' defaults
    if style == "gemma4":  # a system turn holds the system message and the thinking marker
        system = messages[0]["content"].strip() if messages[:1] and messages[0]["role"] == \
            "system" else None
        marker = "<|think|>\n" if thinking else ""
        head = (f"<|turn>system\n{marker}{system or ''}<turn|>\n"
                if thinking or system is not None else "")
        body = "".join(f"<|turn>{'model' if m['role'] == 'assistant' else m['role']}\n"
                       f"{m['content'].strip()}<turn|>\n"
                       for m in messages[system is not None:])
        return f"<bos>{head}{body}<|turn>model\n" + ("" if thinking else
                                                      "<|channel>thought\n<channel|>")
    if style == "llama3":
        turns = "".join(f"<|start_header_id|>{m['role']}<|end_header_id|>\n\n"  # stripped,
                        f"{m['content'].strip()}<|eot_id|>" for m in messages)  # as Meta's is
        return f"<|begin_of_text|>{turns}<|start_header_id|>assistant<|end_header_id|>\n\n"
    turns = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return f"{turns}<|im_start|>assistant\n" + ("" if thinking else "<think>\n\n</think>\n\n")


def _harmony_prompt(messages: list[dict], reasoning_effort: str, date: str | None) -> str:
    """gpt-oss's harmony format, as its chat template writes a conversation without tools: a
    system message of the model's identity, knowledge cutoff, date, reasoning effort and
    channels; the caller's system message as the developer's instructions; earlier answers in
    the final channel (their reasoning is not written back)."""
    efforts = ("low", "medium", "high")  # another would be written into the prompt as it is
    check(reasoning_effort in efforts, f"reasoning_effort {reasoning_effort!r} is not in {efforts}")
    check(date is None or re.fullmatch(r"\d{4}-\d{2}-\d{2}", date),
          f"date {date!r} is not YYYY-MM-DD")
    text = ("<|start|>system<|message|>You are ChatGPT, a large language model trained by "
            f"OpenAI.\nKnowledge cutoff: 2024-06\nCurrent date: "
            f"{date or datetime.date.today().isoformat()}\n\nReasoning: {reasoning_effort}\n\n"
            "# Valid channels: analysis, commentary, final. Channel must be included for every "
            "message.<|end|>")
    if messages and messages[0]["role"] == "system":
        if messages[0]["content"]:  # an empty one is not written, as in the template
            text += (f"<|start|>developer<|message|># Instructions\n\n{messages[0]['content']}"
                     "\n\n<|end|>")
        messages = messages[1:]
    for m in messages:
        text += (f"<|start|>user<|message|>{m['content']}<|end|>" if m["role"] == "user" else
                 f"<|start|>assistant<|channel|>final<|message|>{m['content']}<|end|>")
    return text + "<|start|>assistant"


_HARMONY_MESSAGE = re.compile(r"<\|channel\|>(\w+)<\|message\|>(.*?)(?=<\|end\|>|<\|return\|>|"
                              r"<\|call\|>|<\|start\|>|\Z)", re.S)


def harmony_channels(reply: str) -> dict[str, str]:
    """A gpt-oss reply (the text it generated after the prompt) by channel: its reasoning
    ("analysis") and its answer ("final"), each as written between its markers."""
    return {channel: text for channel, text in _HARMONY_MESSAGE.findall(reply)}


# %% beyond_6_open_models.ipynb cell 64, 5.9.4 Saving a model in the published format

_GEMMA3_KEYS = {"norm_unit_offset": True, "post_norms": True, "ffn_activation": "gelu_tanh",
               "scale_embeddings": True}  # 4.8.8's switches, as Gemma 3 sets them
_OLMO3_KEYS = {"pre_norms": False, "qk_norm_across_heads": True, "post_norms": True}  # 4.8.9
_GPT_OSS_KEYS = {"attention_sinks": True, "ffn_bias": True, "ffn_activation": "clamped_silu",
                 "norm_topk_prob": True}  # 4.8.10
# The keys whose values decide the family: Llama's and Qwen3's have all of them at their defaults
_QWEN3_NEXT_KEYS = ("attention_gate", "rope_dim", "shared_expert_dim", "deltanet")  # 4.8.11
_DEEPSEEK_V3_KEYS = ("mla", "moe_router", "dense_layers", "shared_expert_gate")  # 4.8.12
_GEMMA4_KEYS = ("per_layer_dim", "kv_shared_layers", "double_wide_mlp", "global_head_dim",
                "global_kv_groups", "values_from_keys", "global_rope_fraction", "value_norm",
                "layer_scalar", "final_logit_softcap", "experts_beside_mlp")  # 4.8.13
# at their defaults in the older families
_NEWER_KEYS = (*_QWEN3_NEXT_KEYS, *_DEEPSEEK_V3_KEYS, *_GEMMA4_KEYS)
_FAMILY_KEYS = tuple(dict.fromkeys((*_GEMMA3_KEYS, *_OLMO3_KEYS, "query_pre_attn_scalar",
                                    "rope_local_base", "sliding_window", "attention_sinks",
                                    "attention_out_bias", "ffn_bias", *_NEWER_KEYS)))


def _at_defaults(cfg: dict, keys) -> bool:
    return all(cfg[key] == MODERN_OPTIONAL_KEYS[key] for key in keys)


def _hf_layer_types(cfg: dict) -> list[str]:
    """config.json's layer_types for a configuration: _layer_kinds' inverse."""
    hf_kinds = {ours: hf_kind for hf_kind, ours in _GEMMA3_LAYER_TYPES.items()}
    return [hf_kinds[kind] for kind in cfg["layer_types"] or ["global"] * cfg["n_layers"]]


def _yarn(cfg: dict) -> bool:
    return cfg["rope_freq"] is not None and cfg["rope_freq"].get("type") == "yarn"


def _llama_or_qwen3(cfg: dict) -> bool:
    return _at_defaults(cfg, _FAMILY_KEYS) and not _yarn(cfg)


def _gemma3(cfg: dict) -> bool:
    return (all(cfg[key] == value for key, value in _GEMMA3_KEYS.items()) and cfg["qk_norm"]
            and cfg["pre_norms"] and not cfg["qk_norm_across_heads"]
            and not cfg["num_experts"] and cfg["rope_freq"] is None
            and _at_defaults(cfg, _NEWER_KEYS))


def _gemma4(cfg: dict) -> bool:
    """Gemma 3's switches but its norms' 1 + weight; Gemma 4's norm of the values, scalar per
    layer and scores' scale of 1; no other family's switches, and plain RoPE; the global layers'
    key-value heads set only with their values from keys (transformers reads them only so);
    the last layer global (transformers makes it so)."""
    kinds = cfg["layer_types"] or ["global"]
    return (all(cfg[key] == value for key, value in _GEMMA3_KEYS.items()
                if key != "norm_unit_offset") and not cfg["norm_unit_offset"]
            and cfg["qk_norm"] and cfg["pre_norms"] and cfg["value_norm"] and cfg["layer_scalar"]
            and cfg["query_pre_attn_scalar"] == 1 and cfg["norm_topk_prob"]
            and bool(cfg["num_experts"]) == cfg["experts_beside_mlp"]
            and cfg["rope_freq"] is None and kinds[-1] == "global"
            and (cfg["global_kv_groups"] is None or cfg["values_from_keys"])
            and _at_defaults(cfg, (*_QWEN3_NEXT_KEYS, *_DEEPSEEK_V3_KEYS, "qk_norm_across_heads",
                                   "attention_sinks", "attention_out_bias", "ffn_bias")))


def _gemma4_keys(cfg: dict) -> dict:
    """config.json's Gemma 4 settings, in the published spelling (global_head_dim,
    num_global_key_value_heads), each kind of layer's RoPE in rope_parameters, which
    transformers reads for Gemma 4 (not rope_theta)."""
    fraction, base = cfg["global_rope_fraction"], cfg["rope_base"]
    full = ({"rope_type": "default", "rope_theta": base} if fraction is None else
            {"rope_type": "proportional", "partial_rotary_factor": fraction, "rope_theta": base})
    return {"intermediate_size": cfg["hidden_dim"], "hidden_activation": "gelu_pytorch_tanh",
            "sliding_window": cfg["sliding_window"] or cfg["context_length"],
            "layer_types": _hf_layer_types(cfg),
            "rope_parameters": {"full_attention": full, "sliding_attention": {
                "rope_type": "default", "rope_theta": cfg["rope_local_base"] or base}},
            "global_head_dim": cfg["global_head_dim"] or cfg["head_dim"],
            "num_global_key_value_heads": cfg["global_kv_groups"],
            "attention_k_eq_v": cfg["values_from_keys"],
            "num_kv_shared_layers": cfg["kv_shared_layers"],
            "use_double_wide_mlp": cfg["double_wide_mlp"],
            "hidden_size_per_layer_input": cfg["per_layer_dim"] or 0,
            "vocab_size_per_layer_input": cfg["vocab_size"],
            "final_logit_softcapping": cfg["final_logit_softcap"],
            "enable_moe_block": cfg["experts_beside_mlp"],
            "num_experts": cfg["num_experts"] or None,
            "top_k_experts": cfg["num_experts_per_tok"] or None,
            "moe_intermediate_size": cfg["moe_hidden_dim"], "use_bidirectional_attention": None}


def _olmo3(cfg: dict) -> bool:
    """Olmo 3's switches, Gemma 3's off, YaRN or none, and local layers (if any) at plain RoPE
    with transformers' base, 500,000: it reads no other from the published spelling."""
    return (all(cfg[key] == value for key, value in _OLMO3_KEYS.items()) and cfg["qk_norm"]
            and _at_defaults(cfg, ("norm_unit_offset", "ffn_activation", "scale_embeddings",
                                   "query_pre_attn_scalar", *_NEWER_KEYS))
            and not cfg["num_experts"] and (cfg["rope_freq"] is None or _yarn(cfg)
                                            and cfg["rope_freq"].get("truncate", True))
            and ("local" not in (cfg["layer_types"] or []) or cfg["rope_local_base"] == 500_000.0))


def _gpt_oss(cfg: dict) -> bool:
    """gpt-oss's switches, with experts; no other family's; biases on all four attention
    layers or none; one RoPE, YaRN or plain, for every layer."""
    return (all(cfg[key] == value for key, value in _GPT_OSS_KEYS.items()) and cfg["num_experts"]
            and cfg["qkv_bias"] == cfg["attention_out_bias"] and not cfg["qk_norm"]
            and _at_defaults(cfg, ("norm_unit_offset", "post_norms", "scale_embeddings",
                                   "pre_norms", "qk_norm_across_heads", "query_pre_attn_scalar",
                                   "rope_local_base", *_NEWER_KEYS))
            and (cfg["rope_freq"] is None or _yarn(cfg)))


def _qwen3_next(cfg: dict) -> bool:
    """Qwen3-Next's switches (gated attention, QK-norm, norms of 1 + weight), no other
    family's, and plain RoPE; experts with a shared expert, or neither."""
    return (cfg["attention_gate"] and cfg["qk_norm"] and cfg["norm_unit_offset"]
            and _at_defaults(cfg, [key for key in _FAMILY_KEYS if key not in (
                "norm_unit_offset", *_QWEN3_NEXT_KEYS)])
            and cfg["rope_freq"] is None and bool(cfg["num_experts"]) == bool(
                cfg["shared_expert_dim"]))


def _qwen3_next_keys(cfg: dict) -> dict:
    """config.json's Qwen3-Next settings; the sizes of what the model lacks (DeltaNet layers,
    experts, a dense feed-forward) are left to transformers' defaults, which nothing reads."""
    hf_kinds = {ours: hf_kind for hf_kind, ours in _QWEN3_NEXT_LAYER_TYPES.items()}
    deltanet, rope_dim = cfg["deltanet"] or {}, cfg["rope_dim"] or cfg["head_dim"]
    # transformers reads the fraction back as int(head_dim * fraction): it must give rope_dim
    check(int(cfg["head_dim"] * (rope_dim / cfg["head_dim"])) == rope_dim, lambda: f"rope_dim="
          f"{rope_dim} of head_dim={cfg['head_dim']} would be read back from config.json's "
          "partial_rotary_factor as another width: choose one that is (a quarter, a half)")
    keys = {"layer_types": [hf_kinds[kind] for kind in cfg["layer_types"]
                            or ["global"] * cfg["n_layers"]],
            "partial_rotary_factor": rope_dim / cfg["head_dim"],
            "hidden_act": "silu", "decoder_sparse_step": 1, "mlp_only_layers": [],
            "num_experts": cfg["num_experts"], "num_experts_per_tok": cfg["num_experts_per_tok"],
            "moe_intermediate_size": cfg["moe_hidden_dim"], "norm_topk_prob": cfg["norm_topk_prob"],
            "shared_expert_intermediate_size": cfg["shared_expert_dim"],
            "intermediate_size": cfg["hidden_dim"],
            **{f"linear_{theirs}": deltanet.get(ours) for theirs, ours in [
                ("num_key_heads", "key_heads"), ("num_value_heads", "value_heads"),
                ("key_head_dim", "key_dim"), ("value_head_dim", "value_dim"),
                ("conv_kernel_dim", "conv_kernel")]}}
    return {key: value for key, value in keys.items() if value is not None}


def _qwen3_5_keys(cfg: dict) -> dict:
    """config.json's settings for Qwen3.5's text model: Qwen3-Next's, without those its
    configuration does not have (its experts' top-k scores are always rescaled to sum to 1)."""
    absent = ("decoder_sparse_step", "mlp_only_layers", "norm_topk_prob", *(
        ("intermediate_size",) if cfg["num_experts"] else ("num_experts", "num_experts_per_tok",
                                                           "moe_intermediate_size",
                                                           "shared_expert_intermediate_size")))
    return {key: value for key, value in _qwen3_next_keys(cfg).items() if key not in absent}


def _deepseek_v3(cfg: dict) -> bool:
    """DeepSeek V3's latent attention and no other family's switches; experts routed by groups
    beside an ungated shared expert of a whole number of experts' width, or none; plain RoPE
    or YaRN, whose scores' scale (query_pre_attn_scalar) needs a YaRN factor above 1."""
    shared, width = cfg["shared_expert_dim"] or 0, cfg["moe_hidden_dim"] or 1
    yarn = _yarn(cfg) and cfg["rope_freq"]["factor"] > 1
    return (bool(cfg["mla"]) and not cfg["qk_norm"] and (cfg["rope_freq"] is None or _yarn(cfg))
            and (cfg["query_pre_attn_scalar"] is None or yarn)
            and _at_defaults(cfg, [key for key in _FAMILY_KEYS if key not in (
                *_DEEPSEEK_V3_KEYS, "rope_dim", "shared_expert_dim", "query_pre_attn_scalar")])
            and (not cfg["num_experts"] or cfg["moe_router"] is not None
                 and not (shared and cfg["shared_expert_gate"]) and shared % width == 0))


def _deepseek_v3_keys(cfg: dict) -> dict:
    """config.json's DeepSeek V3 settings; a dense model has every layer dense; the sizes of
    what the model lacks are left to transformers' defaults, which nothing reads."""
    mla, rope_dim = cfg["mla"], cfg["rope_dim"] or cfg["head_dim"]
    router, experts = cfg["moe_router"] or {}, cfg["num_experts"]
    keys = {"num_key_value_heads": cfg["n_heads"], "kv_lora_rank": mla["kv_rank"],
            "head_dim": rope_dim,  # transformers' RoPE width: the rotated part only
            "qk_nope_head_dim": cfg["head_dim"] - rope_dim, "qk_rope_head_dim": rope_dim,
            "v_head_dim": mla["v_dim"], "rope_interleave": mla.get("interleaved", False),
            "intermediate_size": cfg["hidden_dim"], "hidden_act": "silu",
            "first_k_dense_replace": cfg["dense_layers"] if experts else cfg["n_layers"],
            "n_routed_experts": experts or None, "moe_intermediate_size": cfg["moe_hidden_dim"],
            "num_experts_per_tok": cfg["num_experts_per_tok"] or None,
            "n_shared_experts": experts and (cfg["shared_expert_dim"] or 0)
            // cfg["moe_hidden_dim"],
            "norm_topk_prob": cfg["norm_topk_prob"], "n_group": router.get("groups"),
            "topk_group": router.get("topk_groups"),
            "routed_scaling_factor": router.get("scale")}
    return {"q_lora_rank": mla.get("q_rank"),  # None is a setting: queries without a latent
            **{key: value for key, value in keys.items() if value is not None},
            **({"rope_scaling": _deepseek_v3_yarn(cfg)} if _yarn(cfg) else {})}


def _deepseek_v3_yarn(cfg: dict) -> dict:
    """DeepSeek V3's YaRN as its files spell it: the scores' scale as mscale_all_dim and the
    attention factor as mscale beside it (config_from_hf's reading, solved for the two), or,
    without a scores' scale, the attention factor itself."""
    rope, scale = cfg["rope_freq"], cfg["query_pre_attn_scalar"]
    written = {"type": "yarn", "factor": rope["factor"], "beta_fast": rope["beta_fast"],
               "beta_slow": rope["beta_slow"],
               "original_max_position_embeddings": rope["original_context_length"],
               **({} if rope.get("truncate", True) else {"truncate": False})}
    step = 0.1 * math.log(rope["factor"])  # yarn_scale(m) = step * m + 1
    if scale is None:
        return {**written, **({"attention_factor": rope["attention_factor"]}
                              if rope.get("attention_factor") is not None else {})}
    all_dims = (cfg["head_dim"] / scale) ** 0.25  # the scores are times all_dims ** 2
    factor = rope.get("attention_factor") or step + 1  # YaRN's own, with none given
    return {**written, "mscale_all_dim": (all_dims - 1) / step,
            "mscale": (factor * all_dims - 1) / step}


def _gpt_oss_keys(cfg: dict) -> dict:
    """config.json's gpt-oss settings; no YaRN is written as plain RoPE (transformers would
    otherwise give the model its default YaRN)."""
    return {"num_local_experts": cfg["num_experts"], "intermediate_size": cfg["moe_hidden_dim"],
            "num_experts_per_tok": cfg["num_experts_per_tok"], "hidden_act": "silu",
            "swiglu_alpha": cfg["swiglu_alpha"], "swiglu_limit": cfg["swiglu_limit"],
            "attention_bias": cfg["qkv_bias"],
            "sliding_window": cfg["sliding_window"] or cfg["context_length"],
            "layer_types": _hf_layer_types(cfg),
            **({} if _yarn(cfg) else {"rope_scaling": {"rope_type": "default"}})}


def _olmo3_keys(cfg: dict) -> dict:
    """config.json's Olmo 3 settings (no window: no local layer reads it)."""
    return {"intermediate_size": cfg["hidden_dim"], "hidden_act": "silu",
            "sliding_window": cfg["sliding_window"] or cfg["context_length"],
            "layer_types": _hf_layer_types(cfg)}


def _gemma3_keys(cfg: dict) -> dict:
    """config.json's Gemma 3 settings; a setting the model leaves at its default is written as
    the value that computes the same (no window: no local layer reads it)."""
    return {"intermediate_size": cfg["hidden_dim"], "hidden_activation": "gelu_pytorch_tanh",
            "query_pre_attn_scalar": cfg["query_pre_attn_scalar"] or cfg["head_dim"],
            "sliding_window": cfg["sliding_window"] or cfg["context_length"],
            "layer_types": _hf_layer_types(cfg),
            "rope_local_base_freq": cfg["rope_local_base"] or cfg["rope_base"],
            "attn_logit_softcapping": None, "final_logit_softcapping": None,
            "use_bidirectional_attention": False}


# The families the course writes, by config.json's model_type: transformers' class for it,
# whether a ModernGPTModel configuration is of that family, and the keys only it has. A family
# that ModernGPTModel computes is one more entry, with its tensor names in hf_layout. A model
# of two families (a Qwen3-Next without experts is also a Qwen3.5) is written as the first,
# unless save_open_model is told otherwise. Qwen3.5 is written as its text model.
OPEN_MODEL_FAMILIES = {
    "llama": ("LlamaForCausalLM", lambda cfg: _llama_or_qwen3(cfg) and not cfg["qk_norm"]
              and not cfg["num_experts"],
              lambda cfg: {"intermediate_size": cfg["hidden_dim"], "mlp_bias": False,
                           "hidden_act": "silu"}),
    "qwen3": ("Qwen3ForCausalLM", lambda cfg: _llama_or_qwen3(cfg) and cfg["qk_norm"]
              and not cfg["num_experts"],
              lambda cfg: {"intermediate_size": cfg["hidden_dim"], "use_sliding_window": False,
                           "hidden_act": "silu"}),
    "qwen3_moe": ("Qwen3MoeForCausalLM", lambda cfg: _llama_or_qwen3(cfg) and cfg["qk_norm"]
                  and cfg["num_experts"] > 0,
                  lambda cfg: {"num_experts": cfg["num_experts"], "decoder_sparse_step": 1,
                               "num_experts_per_tok": cfg["num_experts_per_tok"],
                               "moe_intermediate_size": cfg["moe_hidden_dim"],
                               "norm_topk_prob": cfg["norm_topk_prob"], "mlp_only_layers": [],
                               "hidden_act": "silu"}),
    "gemma3_text": ("Gemma3ForCausalLM", _gemma3, _gemma3_keys),
    "olmo3": ("Olmo3ForCausalLM", _olmo3, _olmo3_keys),
    "gpt_oss": ("GptOssForCausalLM", _gpt_oss, _gpt_oss_keys),
    "qwen3_next": ("Qwen3NextForCausalLM", _qwen3_next, _qwen3_next_keys),
    "deepseek_v3": ("DeepseekV3ForCausalLM", _deepseek_v3, _deepseek_v3_keys),
    "qwen3_5_text": ("Qwen3_5ForCausalLM", lambda cfg: _qwen3_next(cfg)
                     and not cfg["num_experts"], _qwen3_5_keys),
    "qwen3_5_moe_text": ("Qwen3_5MoeForCausalLM", lambda cfg: _qwen3_next(cfg)
                         and cfg["num_experts"] > 0 and cfg["norm_topk_prob"], _qwen3_5_keys),
    "gemma4_text": ("Gemma4ForCausalLM", _gemma4, _gemma4_keys),
}


def config_to_hf(cfg: dict, dtype: torch.dtype, family: str | None = None) -> dict:
    """config.json for a ModernGPTModel configuration, the inverse of config_from_hf, spelled as the
    published Llama 3, Qwen3, Gemma 3, Olmo 3, gpt-oss, Qwen3-Next, DeepSeek V3, Qwen3.5 and Gemma 4
    (text) folders spell it
    (rope_theta and rope_scaling, torch_dtype), which transformers reads (5.24.0 is the version the
    course is tested with); `family`, one of OPEN_MODEL_FAMILIES, where the model is of two."""
    families = [name for name, (_, matches, _) in OPEN_MODEL_FAMILIES.items() if matches(cfg)]
    check(family is None or family in families, lambda: f"family={family!r}: this model is "
          f"{' or '.join(map(repr, families)) or 'of no family the course saves'}")
    families = [family] if family else families
    settings = [f"{key}={cfg[key]!r}" for key in ("qk_norm", "num_experts", "rope_freq",
                                                  *_FAMILY_KEYS)
                if key in ("qk_norm", "num_experts") or cfg[key] != MODERN_OPTIONAL_KEYS[key]]
    check(families, lambda: f"no family the course saves has {', '.join(settings)} (5.9.4)")
    check(not cfg["qkv_bias"] or families[0] == "gpt_oss",
          "qkv_bias=True: only gpt-oss, of the families the course saves, has such biases")
    architecture, _, own_keys = OPEN_MODEL_FAMILIES[families[0]]
    rope, own = cfg["rope_freq"], own_keys(cfg)
    config = {"architectures": [architecture], "model_type": families[0],
            "vocab_size": cfg["vocab_size"], "hidden_size": cfg["emb_dim"],
            "num_hidden_layers": cfg["n_layers"], "num_attention_heads": cfg["n_heads"],
            "num_key_value_heads": cfg["n_kv_groups"], "head_dim": cfg["head_dim"],
            "max_position_embeddings": cfg["context_length"], "rms_norm_eps": cfg["norm_eps"],
            "rope_theta": cfg["rope_base"], "rope_scaling": rope and ({  # YaRN: Olmo 3's
                "rope_type": "yarn", "factor": rope["factor"], "beta_fast": rope["beta_fast"],
                "beta_slow": rope["beta_slow"], "attention_factor": rope.get("attention_factor"),
                "truncate": rope.get("truncate", True),
                "original_max_position_embeddings": rope["original_context_length"]}
                if _yarn(cfg) else {
                "rope_type": "llama3", "factor": rope["factor"],
                "low_freq_factor": rope["low_freq_factor"],
                "high_freq_factor": rope["high_freq_factor"],
                "original_max_position_embeddings": rope["original_context_length"]}),
            "attention_bias": False, "tie_word_embeddings": cfg["tie_weights"],
            "torch_dtype": str(dtype).removeprefix("torch."), **own}
    if "rope_parameters" in own:  # Gemma 4's, which transformers reads in their place
        del config["rope_theta"], config["rope_scaling"]
    return config


# %% beyond_6_open_models.ipynb cell 66, 5.9.4 Saving a model in the published format

_SAVED_FILES = (r"config\.json|model\.safetensors(\.index\.json)?|model-\d{5}-of-\d{5}\.safetensors"
               r"|original")  # what save_open_model writes, and below what it copies
SOURCE_FILES = ("generation_config.json", "tokenizer.json", "tokenizer_config.json",
                "special_tokens_map.json", "vocab.json", "merges.txt", "added_tokens.json",
                "chat_template.jinja", "original/tokenizer.model")
_SAVED_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
_SIZE_UNITS = {"KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}  # as transformers reads them


def save_open_model(model: ModernGPTModel, folder: str | Path, *,
                    dtype: torch.dtype | None = None, max_shard_size: int | str = "5GB",
                    source: str | Path | None = None, replace: bool = False,
                    family: str | None = None) -> Path:
    """Write `model` as a Hugging Face folder that load_open_model and transformers' from_pretrained
    read, as the published Llama 3, Qwen3, Gemma 3, Olmo 3, gpt-oss, Qwen3-Next, DeepSeek V3,
    Qwen3.5 and Gemma 4 (their text models) are written: config.json and
    model.safetensors, or shards of at most max_shard_size (bytes, or "5GB") with an index; a tied
    head is not stored apart from the embedding. dtype None keeps the model's own; DeepSeek V3's
    router is written in float32 (ROUTER_IN_FLOAT32), as transformers keeps it. `source`, the
    folder the model was loaded from, gives the tokenizer's files, generation_config.json, and
    config.json's settings other than the architecture (its special tokens' ids); it must describe
    this model. The model, dtype and source are checked before anything is written, and the folder
    is written whole or not at all (write_model_folder), so an error while writing leaves it as it
    was: a model of the same architecture that this function saved there before is replaced, another
    model's save (of the names this writes) only with replace=True, and a folder holding any other
    file or folder never. `family` (config.json's model_type) chooses for a model of two families
    (OPEN_MODEL_FAMILIES); None: the source's, else the first that fits."""
    check_open_model(model)
    kept = ROUTER_IN_FLOAT32 if model.cfg["moe_router"] else ()  # written in float32
    stored = {p.dtype for name, p in model.named_parameters() if not name.endswith(kept)}
    check(dtype in (None, *_SAVED_DTYPES), lambda: f"dtype must be None or one of "
          f"{_SAVED_DTYPES}, got {dtype!r}")  # else an integer dtype would truncate, silently
    check(dtype is not None or len(stored) == 1, "the model has several dtypes: pass dtype=")
    dtype = dtype or stored.pop()
    shard_bytes = _size_in_bytes(max_shard_size)
    folder = Path(folder)
    parts = Path(folder.absolute()).parts  # <cache>/models--Qwen--Qwen3-0.6B/snapshots/<hash>
    check(not any(a.startswith("models--") and b == "snapshots" for a, b in zip(parts, parts[1:])),
          f"{folder} is in Hugging Face's download cache: choose a folder of your own")
    settings = {} if source is None else _settings_of(Path(source), model, folder)
    if family is None and settings.get("model_type") in OPEN_MODEL_FAMILIES:
        family = settings["model_type"]  # Qwen3.5's text model saves as one
    architecture = config_to_hf(model.cfg, dtype, family)
    config = {**settings, **architecture}

    layout, state = hf_layout(model, architecture["model_type"]), model.state_dict()

    def tensor(name: str) -> torch.Tensor:  # gpt-oss's packed experts, Qwen3.5's projections:
        ours = layout[name]  # one layer's, built when asked
        if ours in state:
            return state[ours]
        return (pack_experts(model, ours) if ours.endswith(PACKED_EXPERTS + STACKED_EXPERTS)
                else split_projection(model, ours))

    def dtype_of(name: str) -> torch.dtype:
        return torch.float32 if layout[name].endswith(kept) else dtype

    sizes = {name: tensor(name).numel() * dtype_of(name).itemsize for name in layout}
    shards, size = [[]], 0  # tensor names, in order: at most shard_bytes a file, or one tensor
    for name, nbytes in sizes.items():
        if shards[-1] and size + nbytes > shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(name)
        size += nbytes
    files = {"model.safetensors": shards[0]} if len(shards) == 1 else {
        f"model-{i:05d}-of-{len(shards):05d}.safetensors": names
        for i, names in enumerate(shards, start=1)}

    def write(tmp: Path) -> None:
        for file, names in files.items():  # one file's tensors in memory at a time
            tensors = {name: tensor(name).detach().to("cpu", dtype_of(name)).contiguous()
                       for name in names}
            safetensors.torch.save_file(tensors, tmp / file,
                                        metadata={"format": "pt", SAVED_BY: "save_open_model"})
        if len(files) > 1:  # as transformers writes it
            index = {"metadata": {"total_parameters": sum(p.numel() for p in model.parameters()),
                                  "total_size": sum(sizes.values())},
                     "weight_map": {name: file for file, names in files.items() for name in names}}
            (tmp / "model.safetensors.index.json").write_text(
                json.dumps(index, indent=2, sort_keys=True) + "\n")
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        for name in SOURCE_FILES if source is not None else ():
            if (Path(source) / name).is_file():
                (tmp / name).parent.mkdir(exist_ok=True)
                shutil.copyfile(Path(source) / name, tmp / name)

    names = "|".join([_SAVED_FILES, *map(re.escape, SOURCE_FILES)])
    same = {key: value for key, value in architecture.items()
            if key != "torch_dtype"}  # the architecture: the old folder's must be the same
    write_model_folder(folder, write, "save_open_model", names, same, replace)
    return folder


def check_open_model(model) -> None:
    """Refuse, naming what differs, a model that save_open_model would write wrongly:
    anything of another layout than ModernGPTModel(model.cfg) (check_architecture), such as a
    GPTModel, a classifier or a model with unmerged LoRA adapters."""
    check_architecture(model, ModernGPTModel, "save_open_model",
                       (*MODERN_REQUIRED_KEYS, *MODERN_OPTIONAL_KEYS))


def _size_in_bytes(size: int | str) -> int:
    """max_shard_size as a number of bytes: an int, or a string such as "5GB" or "500MB"."""
    match = (re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT]B)", size.strip(), re.IGNORECASE)
             if isinstance(size, str) else None)
    value = (float(match[1]) * _SIZE_UNITS[match[2].upper()] if match else
             size if isinstance(size, int) and not isinstance(size, bool) else 0)
    # else one file per tensor, silently
    check(value >= 1, f"max_shard_size must be bytes or a size such as '5GB', got {size!r}")
    return int(value)


def _settings_of(source: Path, model: ModernGPTModel, folder: Path) -> dict:
    """The source folder's config.json without what config_to_hf writes (the architecture, in
    its spelling, and the dtype), refused unless it describes `model`."""
    check(source.resolve() != folder.resolve(), f"source {source} is the folder to write")
    hf, theirs = _open_config(source)
    hf = hf["text_config"] if hf["model_type"] in TEXT_MODEL_OF else hf  # its text model's
    # tie_weights may differ: merge_lora unties a tied head, and config_to_hf writes the model's
    differ = [f"{key}={value!r}, the model has {model.cfg[key]!r}" for key, value in theirs.items()
              if key not in ("drop_rate", "sdpa", "tie_weights", "norm_float32_scale")
              and value != model.cfg[key]]
    check(not differ, lambda: f"source {source} describes another model: {'; '.join(differ[:3])}")
    written = {"rope_parameters", "rope_scaling", "rope_theta", "dtype", "torch_dtype",
               "num_local_experts", "transformers_version",
               "per_layer_config"}  # spelt by config_to_hf (Gemma 4's as published), or stale
    return {key: value for key, value in hf.items() if key not in written}


__all__ = [
    'OPEN_MODEL_TYPES',
    'TEXT_MODEL_OF',
    'config_from_hf',
    'PACKED_EXPERTS',
    'STACKED_EXPERTS',
    'unpack_experts',
    'pack_experts',
    'SEPARATE_PROJECTIONS',
    'group_projections',
    'split_projection',
    'hf_layout',
    'tensor_files',
    'ROUTER_IN_FLOAT32',
    'load_open_model',
    'download_open_model',
    'LLAMA3_SPLIT_PATTERN',
    'LLAMA3_SPECIAL_TOKENS',
    'load_llama3_tokenizer',
    'HFTokenizer',
    'chat_prompt',
    'harmony_channels',
    'OPEN_MODEL_FAMILIES',
    'config_to_hf',
    'SOURCE_FILES',
    'save_open_model',
    'check_open_model',
]
