"""Section 5.9's loader: published-format checkpoints that transformers writes (random weights,
one file or shards) load into ModernGPTModel with transformers' logits and greedy tokens;
anything the model does not compute, or a folder that does not match its config, is refused."""

import base64
import json
import os

import pytest
import safetensors.torch
import tokenizers
import torch
import transformers

from conftest import TINY_GPT, qwen3_style_tokenizer
from shared import (
    OPEN_MODEL_CONFIGS,
    PACKED_EXPERTS,
    FastDecoder,
    GPTModel,
    HFTokenizer,
    ModernGPTModel,
    chat_prompt,
    config_from_hf,
    download_open_model,
    generate_text,
    harmony_channels,
    hf_layout,
    load_llama3_tokenizer,
    load_open_model,
    pack_experts,
    read_text,
    save_open_model,
)


transformers.utils.logging.disable_progress_bar()
SMALL = dict(vocab_size=300, hidden_size=64, num_hidden_layers=2, num_attention_heads=8,
             num_key_value_heads=2, max_position_embeddings=128)
QWEN3_5_TEXT = dict(  # 3 DeltaNet layers of 4 (2 key heads for 4 value heads), RoPE on a half
    **{**SMALL, "num_hidden_layers": 4, "num_attention_heads": 4}, head_dim=16,
    linear_num_key_heads=2, linear_num_value_heads=4, linear_key_head_dim=8,
    linear_value_head_dim=12, rope_parameters={
        "rope_type": "default", "rope_theta": 10_000.0, "partial_rotary_factor": 0.5,
        "mrope_section": [2, 1, 1], "mrope_interleaved": True},
    pad_token_id=0, eos_token_id=None)
GEMMA4_TEXT = dict(
    **{**SMALL, "num_hidden_layers": 6, "num_attention_heads": 4}, intermediate_size=48,
    head_dim=16, global_head_dim=32, sliding_window=6, final_logit_softcapping=1.0,
    layer_types=["sliding_attention", "sliding_attention", "full_attention"] * 2,
    rope_parameters={"full_attention": {"rope_type": "proportional", "rope_theta": 1_000_000.0,
                                        "partial_rotary_factor": 0.25},
                     "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0}},
    pad_token_id=0, eos_token_id=None, bos_token_id=None)
REFERENCES = {
    "llama3": lambda: transformers.LlamaForCausalLM(transformers.LlamaConfig(
        **SMALL, intermediate_size=96, rope_theta=500_000.0, tie_word_embeddings=True,
        rope_scaling={"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                      "high_freq_factor": 4.0, "original_max_position_embeddings": 16})),
    "qwen3": lambda: transformers.Qwen3ForCausalLM(transformers.Qwen3Config(
        **SMALL, intermediate_size=96, head_dim=16, tie_word_embeddings=True)),
    "qwen3_moe": lambda: transformers.Qwen3MoeForCausalLM(transformers.Qwen3MoeConfig(
        **SMALL, moe_intermediate_size=32, num_experts=8, num_experts_per_tok=2, head_dim=16,
        norm_topk_prob=True)),
    # 6 layers, 5 local with a window shorter than the 20-token texts below, two RoPE bases, a
    # query scale apart from head_dim; eos_token_id None: Gemma's 1 would stop generate() early
    "gemma3": lambda: transformers.Gemma3ForCausalLM(transformers.Gemma3TextConfig(
        **{**SMALL, "num_hidden_layers": 6, "num_attention_heads": 4, "num_key_value_heads": 1},
        intermediate_size=96, head_dim=24, sliding_window=6, query_pre_attn_scalar=20,
        rope_theta=1_000_000.0, rope_local_base_freq=10_000.0, eos_token_id=None)),
    # Olmo 3: norms after the sublayers only, QK-norm across heads, 3 local layers of 4 with a
    # window shorter than the texts, YaRN in the global one (from a context of 16)
    "olmo3": lambda: transformers.Olmo3ForCausalLM(transformers.Olmo3Config(
        **{**SMALL, "num_hidden_layers": 4}, intermediate_size=96, sliding_window=6,
        rope_theta=500_000.0, rope_scaling={"rope_type": "yarn", "factor": 8.0, "beta_fast": 32,
                                            "beta_slow": 1, "original_max_position_embeddings": 16},
        pad_token_id=0, eos_token_id=None)),
    # gpt-oss: sinks, biases, 4 experts with biases and the clamped SwiGLU, packed; windows in
    # every other layer, shorter than the texts; YaRN untruncated, from a context of 16
    "gpt_oss": lambda: transformers.GptOssForCausalLM(transformers.GptOssConfig(
        **{**SMALL, "num_hidden_layers": 4}, intermediate_size=48, head_dim=16, sliding_window=6,
        num_local_experts=4, num_experts_per_tok=2, rope_parameters={
            "rope_type": "yarn", "factor": 8.0, "beta_fast": 32.0, "beta_slow": 1.0,
            "truncate": False, "original_max_position_embeddings": 16, "rope_theta": 150_000.0},
        pad_token_id=0, eos_token_id=None)),
    # Qwen3-Next: Gated DeltaNet in 3 layers of 4 (2 key heads for 4 value heads), gated
    # attention with half of each head turned by RoPE, experts with a gated shared expert
    "qwen3_next": lambda: transformers.Qwen3NextForCausalLM(transformers.Qwen3NextConfig(
        **{**SMALL, "num_hidden_layers": 4, "num_attention_heads": 4}, head_dim=16,
        linear_num_key_heads=2, linear_num_value_heads=4, linear_key_head_dim=8,
        linear_value_head_dim=12, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
        shared_expert_intermediate_size=48, rope_parameters={
            "rope_type": "default", "rope_theta": 10_000.0, "partial_rotary_factor": 0.5},
        pad_token_id=0, eos_token_id=None)),
    # DeepSeek V3: latent attention (queries through a latent too), the first layer dense, then
    # 8 experts in 4 groups routed within the best 2, an ungated shared expert
    "deepseek_v3": lambda: transformers.DeepseekV3ForCausalLM(transformers.DeepseekV3Config(
        **{**SMALL, "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 4},
        intermediate_size=96, moe_intermediate_size=32, q_lora_rank=24, kv_lora_rank=16,
        qk_nope_head_dim=12, qk_rope_head_dim=8, v_head_dim=10, n_routed_experts=8,
        num_experts_per_tok=2, n_group=4, topk_group=2, n_shared_experts=1,
        first_k_dense_replace=1, pad_token_id=0, eos_token_id=None)),
    # Qwen3.5's text models: Qwen3-Next's layers with a DeltaNet layer's projections stored
    # apart; dense (tied, as the small ones are), and with experts (always rescaled top-k)
    "qwen3_5": lambda: transformers.Qwen3_5ForCausalLM(transformers.Qwen3_5TextConfig(
        **QWEN3_5_TEXT, intermediate_size=96, tie_word_embeddings=True)),
    "qwen3_5_moe": lambda: transformers.Qwen3_5MoeForCausalLM(transformers.Qwen3_5MoeTextConfig(
        **QWEN3_5_TEXT, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
        shared_expert_intermediate_size=48)),
    # Gemma 4: per-layer inputs, the last 3 of 6 layers reusing keys and values (their
    # feed-forward twice as wide), global layers twice as wide with RoPE on a quarter of their
    # pairs, windows shorter than the texts, logits capped where the cap bends them (E2B's kind)
    "gemma4": lambda: transformers.Gemma4ForCausalLM(transformers.Gemma4TextConfig(
        **GEMMA4_TEXT, hidden_size_per_layer_input=8, vocab_size_per_layer_input=300,
        num_kv_shared_layers=3, use_double_wide_mlp=True)),
    # and the global layers' values made from their keys, by one key-value head (31B's kind)
    "gemma4_k_eq_v": lambda: transformers.Gemma4ForCausalLM(transformers.Gemma4TextConfig(
        **GEMMA4_TEXT, hidden_size_per_layer_input=0, attention_k_eq_v=True,
        num_global_key_value_heads=1)),
    # and 4 experts (2 a token) beside every layer's dense feed-forward (26B-A4B's kind)
    "gemma4_moe": lambda: transformers.Gemma4ForCausalLM(transformers.Gemma4TextConfig(
        **GEMMA4_TEXT, hidden_size_per_layer_input=0, attention_k_eq_v=True,
        num_global_key_value_heads=1, enable_moe_block=True, num_experts=4, top_k_experts=2,
        moe_intermediate_size=24)),
}
RANDOMISED = {"gemma3": ("norm",), "gemma4": ("norm", "layer_scalar"),
              "gemma4_k_eq_v": ("norm", "layer_scalar"), "olmo3": ("norm",),
              "gemma4_moe": ("norm", "layer_scalar", "router."),
              "gpt_oss": ("norm", "sinks", "bias"),
              "qwen3_next": ("norm", "bias"), "deepseek_v3": ("norm", "bias"),
              "qwen3_5": ("norm", "bias"), "qwen3_5_moe": ("norm", "bias")}


def saved(name, folder, dtype=torch.float32, shard="50KB"):
    torch.manual_seed(0)
    reference = REFERENCES[name]().to(dtype).eval()
    with torch.no_grad():  # Gemma's norms start at 0 (a scale of 1): make a wrong offset show;
        for parameter_name, parameter in [*reference.named_parameters(),  # Olmo's, a swap;
                                          *reference.named_buffers()]:  # DeepSeek's bias
            if any(part in parameter_name for part in RANDOMISED.get(name, ())):  # gpt-oss's 0s
                parameter.normal_(0.0, 0.3)
    reference.save_pretrained(folder, max_shard_size=shard)
    return reference


@pytest.mark.parametrize("name", list(REFERENCES))
def test_sharded_checkpoints_load_with_transformers_logits_and_tokens(name, tmp_path):
    reference = saved(name, tmp_path)
    assert (tmp_path / "model.safetensors.index.json").is_file()  # really sharded
    model = load_open_model(tmp_path)
    ids = torch.randint(0, 300, (2, 20), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert (model(ids) - reference(ids).logits).abs().max() <= 1e-4
    prompt = ids[:1, :4]  # 30 greedy tokens through the caches, by the model and FastDecoder
    expected = reference.generate(prompt, max_new_tokens=30, do_sample=False, pad_token_id=0)
    assert torch.equal(generate_text(model, prompt, 30), expected)
    assert torch.equal(generate_text(FastDecoder(model), prompt, 30), expected)


def test_bfloat16_weights_stay_bfloat16_and_tied(tmp_path):
    reference = saved("qwen3", tmp_path, torch.bfloat16, shard="1GB")
    model = load_open_model(tmp_path)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert model.out_head.weight is model.tok_emb.weight
    stored = safetensors.torch.load_file(tmp_path / "model.safetensors")
    assert torch.equal(model.trf_blocks[1].ff.down.weight,
                       stored["model.layers.1.mlp.down_proj.weight"])
    ids = torch.randint(0, 300, (1, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours, theirs = model(ids).float(), reference(ids).logits.float()
    assert (ours - theirs).abs().max() <= 0.05 * theirs.abs().max()  # bfloat16 rounding
    as_float = load_open_model(tmp_path, dtype=torch.float32)
    assert as_float.tok_emb.weight.dtype == torch.float32


def test_a_tied_checkpoint_with_a_stored_head_loads_and_a_bad_dtype_is_refused(tmp_path):
    saved("qwen3", tmp_path, shard="1GB")
    tensors = safetensors.torch.load_file(tmp_path / "model.safetensors")
    tensors["lm_head.weight"] = tensors["model.embed_tokens.weight"].clone()
    safetensors.torch.save_file(tensors, tmp_path / "model.safetensors")
    model = load_open_model(tmp_path)
    assert model.out_head.weight is model.tok_emb.weight
    with pytest.raises(ValueError, match="dtype"):  # an integer dtype would truncate every weight
        load_open_model(tmp_path, dtype=torch.int8)
    with pytest.raises(ValueError, match="dtype must be a floating-point torch.dtype"):
        load_open_model(tmp_path, dtype="bfloat16")  # a str: an AttributeError naming neither


def test_weights_of_several_dtypes_are_refused_naming_the_file_unless_a_dtype_is_given(tmp_path):
    """A float32 folder with one shard re-saved in float16 (a conversion stopped halfway)."""
    reference = saved("qwen3", tmp_path)
    last = sorted(tmp_path.glob("model-*.safetensors"))[-1]
    halved = {name: t.half() for name, t in safetensors.torch.load_file(last).items()}
    safetensors.torch.save_file(halved, last, metadata={"format": "pt"})
    with pytest.raises(ValueError, match=rf"of several dtypes \(.*F16 in {last.name}\).*dtype="):
        load_open_model(tmp_path)
    model = load_open_model(tmp_path, dtype=torch.float32)  # cast on purpose: it computes
    ids = torch.tensor([[1, 2, 3]])
    with torch.no_grad():
        assert (model(ids) - reference(ids).logits).abs().max() < 0.01


def rewrite_config(folder, **changes):
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config))


QWEN3_REFUSED = [  # the message names the setting
    ({"model_type": "gpt2"}, "'gpt2'"),
    ({"attention_bias": True}, "attention_bias=True"),
    ({"hidden_act": "gelu"}, "hidden_act='gelu'"),
    ({"quantization_config": {"quant_method": "fp8"}},  # as Qwen3-0.6B-FP8's config.json
     "quantization_config"),
    ({"use_sliding_window": True, "mlp_bias": True}, "mlp_bias=True, use_sliding_window=True"),
    ({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}, "rope_parameters": None}, "'yarn'"),
    ({"rms_norm_eps": 0}, "norm_eps"),
]


def test_a_tensor_of_another_shape_than_config_json_implies_is_named_by_load_state_dict(tmp_path):
    saved("qwen3", tmp_path, shard="1GB")
    rewrite_config(tmp_path, intermediate_size=97)
    with pytest.raises(RuntimeError, match=r"size mismatch for trf_blocks\.0\.ff\.down\.weight"):
        load_open_model(tmp_path)


@pytest.mark.parametrize("text, message", [
    ('{"model_type": "qwen3", "hidden_size": 6', r"config.json is not valid JSON \(Expecting"),
    ("", r"config.json is not valid JSON .*download it again"),
])
def test_a_damaged_config_json_is_named(tmp_path, text, message):
    saved("qwen3", tmp_path, shard="1GB")
    (tmp_path / "config.json").write_text(text)
    with pytest.raises(ValueError, match=message):
        load_open_model(tmp_path)


@pytest.mark.parametrize("name, changes, error, message", [  # the configuration's key
    ("gemma3", {"num_hidden_layers": 5}, ValueError, "n_layers"),
    ("qwen3", {"num_key_value_heads": 3}, ValueError, "num_kv_groups"),  # the layer's argument
    ("llama3", {"rope_parameters": None, "rope_theta": 500_000.0, "rope_scaling": {
        "rope_type": "llama3", "factor": "32.0", "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 16}}, TypeError,
     r"'>' not supported between instances of 'str' and 'int'"),  # Python's, in the check
])
def test_config_json_mistakes_are_named_by_the_configurations_key(tmp_path, name, changes,
                                                                  error, message):
    saved(name, tmp_path, shard="1GB")
    rewrite_config(tmp_path, **changes)
    with pytest.raises(error, match=message):
        load_open_model(tmp_path)


# The folder a save copies its settings from is read as a load reads it (above).
CONFIG_KEY_MISTAKES = [
    ("num_hidden_layers", 0, ValueError, "n_layers"),
    ("num_key_value_heads", 0, ValueError, "n_kv_groups"),
]


@pytest.mark.parametrize("key, value, error, names", CONFIG_KEY_MISTAKES)
def test_save_open_models_source_is_checked_as_a_load(tmp_path, key, value, error, names):
    saved("llama3", tmp_path / "published", shard="1GB")
    model = load_open_model(tmp_path / "published")
    rewrite_config(tmp_path / "published", **{key: value})
    with pytest.raises(error, match=rf"{names}.*{value!r}"):
        save_open_model(model, tmp_path / "ours", source=tmp_path / "published")
    assert not (tmp_path / "ours").exists()


GEMMA3_REFUSED = [  # the message names the setting
    ({"attn_logit_softcapping": 50.0}, "attn_logit_softcapping=50.0"),
    ({"final_logit_softcapping": 30.0}, "final_logit_softcapping=30.0"),
    ({"use_bidirectional_attention": True}, "use_bidirectional_attention=True"),
    ({"hidden_activation": "gelu"}, "hidden_activation='gelu'"),
    ({"attention_bias": True}, "attention_bias=True"),
    # Gemma 3 4B's setting, in the published (transformers 4) spelling
    ({"rope_parameters": None, "rope_theta": 1e6, "rope_local_base_freq": 1e4,
      "rope_scaling": {"rope_type": "linear", "factor": 8.0}}, "'linear' in the global layers"),
    ({"layer_types": ["chunked_attention"] * 6}, "'chunked_attention'"),
    ({"query_pre_attn_scalar": None}, "query_pre_attn_scalar"),  # null: no default to take
]


YARN = {"rope_type": "yarn", "factor": 8.0, "original_max_position_embeddings": 16}


OLMO3_REFUSED = [  # the message names the setting
    ({"rope_parameters": {"full_attention": {**YARN, "rope_theta": 5e5, "mscale": 1.0},
                          "sliding_attention": {"rope_type": "default", "rope_theta": 5e5}}},
     "YaRN's mscale=1.0"),
    ({"rope_parameters": {"full_attention": {**YARN, "rope_theta": 5e5},
                          "sliding_attention": {**YARN, "rope_theta": 5e5}}},
     "'yarn' in the sliding_attention layers"),
    ({"rope_parameters": None, "rope_theta": 5e5, "rope_scaling": {"rope_type": "dynamic",
                                                                    "factor": 2.0}},
     "'dynamic' in the full_attention layers"),  # the published spelling
    ({"attention_bias": True}, "attention_bias=True"),
    ({"layer_types": ["chunked_attention"] * 4}, "'chunked_attention'"),
]


QWEN3_NEXT_REFUSED = [  # the message names the setting
    ({"attention_bias": True}, "attention_bias=True"),
    ({"hidden_act": "gelu"}, "hidden_act='gelu'"),
    ({"mlp_only_layers": [0]}, r"mlp_only_layers=\[0\]"),
    ({"decoder_sparse_step": 2}, "decoder_sparse_step=2"),
    ({"rope_parameters": {"rope_type": "yarn", "factor": 4.0, "rope_theta": 1e4,
                          "original_max_position_embeddings": 16}}, "RoPE scaling 'yarn'"),
    ({"layer_types": ["linear_attention", "sliding_attention"] * 2}, "'sliding_attention'"),
]
GEMMA4_REFUSED = [  # the message names the setting
    ({"use_bidirectional_attention": "all"}, "use_bidirectional_attention='all'"),
    ({"hidden_activation": "gelu"}, "hidden_activation='gelu'"),
    ({"rope_parameters": {"full_attention": {"rope_type": "proportional", "rope_theta": 1e6},
                          "sliding_attention": {"rope_type": "proportional",
                                                "rope_theta": 1e4}}}, "in the local layers"),
    # the global layers' sizes, one setting for all of them (transformers' spelling)
    ({"per_layer_config": {"2": {"head_dim": 32}, "5": {"head_dim": 64}}}, "per_layer_config"),
    ({"vocab_size_per_layer_input": 100}, "vocab_size_per_layer_input=100"),
]


DEEPSEEK_V3_REFUSED = [  # the message names the setting
    ({"quantization_config": {"quant_method": "fp8", "weight_block_size": [128, 128]}},
     "quantization_config="),  # as DeepSeek V3's published config.json
    ({"attention_bias": True}, "attention_bias=True"),
    ({"scoring_func": "softmax"}, "scoring_func='softmax'"),
    ({"topk_method": "greedy"}, "topk_method='greedy'"),
    ({"rope_parameters": {"rope_type": "linear", "factor": 2.0, "rope_theta": 1e4}},
     "RoPE scaling 'linear'"),
]


@pytest.mark.parametrize("name, changes, message", [
    (name, changes, message) for name, cases in [("qwen3", QWEN3_REFUSED),
                                                 ("deepseek_v3", DEEPSEEK_V3_REFUSED),
                                                 ("gemma3", GEMMA3_REFUSED),
                                                 ("olmo3", OLMO3_REFUSED),
                                                 ("qwen3_next", QWEN3_NEXT_REFUSED),
                                                 ("gemma4", GEMMA4_REFUSED)]
    for changes, message in cases])
def test_a_folder_asking_for_what_the_model_does_not_compute_is_refused(tmp_path, name,
                                                                         changes, message):
    saved(name, tmp_path, shard="1GB")
    rewrite_config(tmp_path, **changes)
    with pytest.raises(ValueError, match=message):
        load_open_model(tmp_path)


def test_qwen3_next_as_published_reads_as_transformers_reads_it(tmp_path):
    """The published config.json spells the layers by full_attention_interval and the partial
    RoPE at the top level, and the folder holds layers for predicting further tokens (mtp.*),
    which transformers skips: the same logits, read either way."""
    saved("qwen3_next", tmp_path, shard="1GB")
    config = json.loads((tmp_path / "config.json").read_text())
    rope = config.pop("rope_parameters")
    rewrite_config(tmp_path, layer_types=None, full_attention_interval=4, rope_parameters=None,
                   rope_theta=rope["rope_theta"],
                   partial_rotary_factor=rope["partial_rotary_factor"])
    tensors = safetensors.torch.load_file(tmp_path / "model.safetensors")
    tensors["mtp.fc.weight"] = torch.zeros(64, 128)  # one of its mtp layers' tensors
    safetensors.torch.save_file(tensors, tmp_path / "model.safetensors", metadata={"format": "pt"})
    reference = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    model = load_open_model(tmp_path)
    assert model.cfg["layer_types"] == ["linear"] * 3 + ["global"]
    assert model.cfg["rope_dim"] == 8  # half of each 16-number head
    ids = torch.randint(0, 300, (2, 20), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert (model(ids) - reference(ids).logits).abs().max() <= 1e-4


@pytest.mark.parametrize("experts", [False, True])
def test_qwen3_5_as_published_with_its_image_encoder_reads_its_text_model(tmp_path, experts):
    """The published folders hold the image-and-text model: the text model's settings in
    text_config, its tensors under model.language_model., an image encoder (model.visual.)
    and layers for predicting further tokens (mtp.), which a text model does not read. The
    logits and greedy tokens (also FastDecoder's) are the published model's own; saved with that
    folder as its source, it is written as the text model (its experts stacked, as published),
    which transformers reads alike."""
    torch.manual_seed(0)
    text = {**QWEN3_5_TEXT, **(dict(num_experts=4, num_experts_per_tok=2,
                                     moe_intermediate_size=32, shared_expert_intermediate_size=48)
                                if experts else dict(intermediate_size=96))}
    config_class, model_class = ((transformers.Qwen3_5MoeConfig,
                                  transformers.Qwen3_5MoeForConditionalGeneration) if experts else
                                 (transformers.Qwen3_5Config,
                                  transformers.Qwen3_5ForConditionalGeneration))
    reference = model_class(config_class(text_config=text, vision_config=dict(
        depth=1, hidden_size=32, intermediate_size=32, num_heads=2, out_hidden_size=64),
        tie_word_embeddings=not experts)).eval()  # the whole model's setting, not text_config's
    with torch.no_grad():
        for name, parameter in reference.named_parameters():
            if "norm" in name or "bias" in name:
                parameter.normal_(0.0, 0.3)
    reference.save_pretrained(tmp_path / "published")
    tensors = safetensors.torch.load_file(tmp_path / "published" / "model.safetensors")
    assert any(name.startswith("model.visual.") for name in tensors)
    if experts:  # published stacked (transformers 5.24 saves them one by one): its own layout
        tensors = {name: tensor.contiguous() for name, tensor in reference.state_dict().items()}
        assert "model.language_model.layers.0.mlp.experts.gate_up_proj" in tensors
    tensors["mtp.fc.weight"] = torch.zeros(64, 128)
    safetensors.torch.save_file(tensors, tmp_path / "published" / "model.safetensors",
                                metadata={"format": "pt"})
    model = load_open_model(tmp_path / "published")
    assert model.cfg["layer_types"] == ["linear"] * 3 + ["global"] and model.cfg["rope_dim"] == 8
    assert model.cfg["tie_weights"] == (not experts)
    ids = torch.randint(0, 300, (2, 20), generator=torch.Generator().manual_seed(1))
    greedy = dict(max_new_tokens=20, do_sample=False, pad_token_id=0)
    with torch.no_grad():
        assert (model(ids) - reference(ids).logits).abs().max() <= 1e-4
        expected = reference.generate(ids[:1, :4], **greedy)
        assert torch.equal(generate_text(model, ids[:1, :4], 20), expected)
        assert torch.equal(generate_text(FastDecoder(model), ids[:1, :4], 20), expected)
        folder = save_open_model(model, tmp_path / "ours", source=tmp_path / "published")
        config = json.loads((folder / "config.json").read_text())
        assert config["model_type"] == "qwen3_5_moe_text" if experts else "qwen3_5_text"
        names = stored_tensors(folder).keys()
        assert "model.layers.0.linear_attn.in_proj_qkv.weight" in names
        assert ("model.layers.0.mlp.experts.gate_up_proj" in names) == experts
        reread = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
        assert (reread(ids).logits - reference(ids).logits).abs().max() <= 1e-4


@pytest.mark.parametrize("k_eq_v", [False, True])
def test_gemma4_as_published_with_its_image_and_sound_encoders_reads_its_text_model(tmp_path,
                                                                                     k_eq_v):
    """The published folders hold the model of images, sound and text: the text model's
    settings in text_config, spelled as published (global_head_dim, num_global_key_value_heads,
    where transformers 5.24 writes per_layer_config), its tensors under model.language_model.
    beside the encoders', which a text model does not read, nor the key and value layers that
    a layer reusing another's keys and values may hold (transformers skips them too). The logits
    and greedy tokens (also FastDecoder's) are the published model's own; saved with that folder
    as its source, it is written as the text model, which transformers reads alike."""
    torch.manual_seed(0)
    text = {**GEMMA4_TEXT, **(dict(hidden_size_per_layer_input=0, attention_k_eq_v=True,
                                   num_global_key_value_heads=1) if k_eq_v else
                              dict(hidden_size_per_layer_input=8, vocab_size_per_layer_input=300,
                                   num_kv_shared_layers=3, use_double_wide_mlp=True))}
    reference = transformers.Gemma4ForConditionalGeneration(transformers.Gemma4Config(
        text_config=text, vision_config=dict(hidden_size=32, intermediate_size=64,
                                             num_hidden_layers=1, num_attention_heads=2,
                                             num_key_value_heads=2, head_dim=16),
        audio_config=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                          output_proj_dims=32, subsampling_conv_channels=[8, 4]))).eval()
    with torch.no_grad():
        for name, parameter in [*reference.named_parameters(), *reference.named_buffers()]:
            if "language_model" in name and ("norm" in name or "layer_scalar" in name):
                parameter.normal_(0.0, 0.3)
    reference.save_pretrained(tmp_path / "published")
    config = json.loads((tmp_path / "published" / "config.json").read_text())
    assert config["text_config"].pop("per_layer_config")  # as published instead:
    config["text_config"].update(global_head_dim=32, num_global_key_value_heads=1 if k_eq_v
                                 else None)
    (tmp_path / "published" / "config.json").write_text(json.dumps(config))
    tensors = safetensors.torch.load_file(tmp_path / "published" / "model.safetensors")
    assert {name.split(".")[1] for name in tensors} >= {"vision_tower", "audio_tower"}
    if not k_eq_v:  # key and value layers in the reusing layers, which transformers skips too
        layer = "model.language_model.layers.4.self_attn."
        tensors.update({layer + "k_proj.weight": torch.zeros(32, 64),
                        layer + "v_proj.weight": torch.zeros(32, 64),
                        layer + "k_norm.weight": torch.zeros(16)})
        safetensors.torch.save_file(tensors, tmp_path / "published" / "model.safetensors",
                                    metadata={"format": "pt"})
    model = load_open_model(tmp_path / "published")
    assert model.cfg["global_head_dim"] == 32 and model.cfg["values_from_keys"] == k_eq_v
    ids = torch.randint(0, 300, (2, 20), generator=torch.Generator().manual_seed(1))
    greedy = dict(max_new_tokens=20, do_sample=False, pad_token_id=0)
    with torch.no_grad():
        assert (model(ids) - reference(input_ids=ids).logits).abs().max() <= 1e-4
        expected = reference.generate(ids[:1, :4], **greedy)
        assert torch.equal(generate_text(model, ids[:1, :4], 20), expected)
        assert torch.equal(generate_text(FastDecoder(model), ids[:1, :4], 20), expected)
        folder = save_open_model(model, tmp_path / "ours", source=tmp_path / "published")
        saved_config = json.loads((folder / "config.json").read_text())
        assert saved_config["model_type"] == "gemma4_text"
        assert saved_config["global_head_dim"] == 32
        reread = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
        assert (reread(ids).logits - reference(input_ids=ids).logits).abs().max() <= 1e-4


def test_a_model_of_two_families_is_saved_as_the_one_asked_for(tmp_path):
    """A Qwen3-Next without experts is a Qwen3.5 too: saved as Qwen3-Next unless family= says
    otherwise; a family it is not is refused, naming those it is."""
    saved("qwen3_5", tmp_path / "published", shard="1GB")
    model = load_open_model(tmp_path / "published")
    assert json.loads((save_open_model(model, tmp_path / "next") / "config.json").read_text())[
        "model_type"] == "qwen3_next"
    as_qwen3_5 = save_open_model(model, tmp_path / "ours", family="qwen3_5_text")
    assert stored_tensors(as_qwen3_5).keys() == stored_tensors(tmp_path / "published").keys()
    with pytest.raises(ValueError, match="family='llama': this model is 'qwen3_next' or "
                                         "'qwen3_5_text'"):
        save_open_model(model, tmp_path / "llama", family="llama")


DEEPSEEK_V3_YARN = [  # DeepSeek V2-Lite's kind (attention factor and scores scaled), DeepSeek
    # V3's (the two mscales equal: the scores alone), no mscale (plain YaRN)
    {"max_position_embeddings": 128, "rope_parameters": {
        "rope_type": "yarn", "rope_theta": 10_000.0, "factor": 4.0,
        "original_max_position_embeddings": 32, "beta_fast": 32, "beta_slow": 1, **mscales}}
    for mscales in ({"mscale": 0.707, "mscale_all_dim": 0.707 * 1.5},
                    {"mscale": 1.0, "mscale_all_dim": 1.0}, {})]


@pytest.mark.parametrize("changes", [
    # queries without a latent, RoPE pairs as halves, no shared expert (transformers saves it
    # empty), every layer of experts
    {"q_lora_rank": None, "rope_interleave": False, "n_shared_experts": 0,
     "first_k_dense_replace": 0},
    {"n_shared_experts": 2, "first_k_dense_replace": 3},  # two experts' width; every layer dense
])
def test_deepseek_v3_variants_load_with_transformers_logits_and_save_back(tmp_path, changes):
    torch.manual_seed(0)
    reference = REFERENCES["deepseek_v3"]()
    config = reference.config.to_dict() | changes
    reference = transformers.DeepseekV3ForCausalLM(
        transformers.DeepseekV3Config.from_dict(config)).eval()
    reference.save_pretrained(tmp_path / "published")
    # the layer for predicting further tokens, which transformers does not load
    tensors = safetensors.torch.load_file(tmp_path / "published" / "model.safetensors")
    tensors["model.layers.3.eh_proj.weight"] = torch.zeros(64, 128)
    safetensors.torch.save_file(tensors, tmp_path / "published" / "model.safetensors",
                                metadata={"format": "pt"})
    model = load_open_model(tmp_path / "published")
    ids = torch.randint(0, 300, (2, 20), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert (model(ids) - reference(ids).logits).abs().max() <= 1e-4
        reread = transformers.AutoModelForCausalLM.from_pretrained(
            save_open_model(model, tmp_path / "ours")).eval()
        assert (reread(ids).logits - reference(ids).logits).abs().max() <= 1e-5


def test_deepseek_v3_in_bfloat16_keeps_its_router_in_float32_as_transformers_does(tmp_path):
    """transformers keeps DeepSeek V3's router and score bias in float32 in a bfloat16 model, and
    saves them so: the folder loads without dtype=, with those two in float32 (the scores are
    transformers'), and is saved back the same way, which transformers reads bit for bit."""
    saved("deepseek_v3", tmp_path / "float32", shard="1GB")
    reference = transformers.AutoModelForCausalLM.from_pretrained(
        tmp_path / "float32", dtype=torch.bfloat16).eval()
    reference.save_pretrained(tmp_path / "published")
    stored = stored_tensors(tmp_path / "published")
    assert stored["model.layers.1.mlp.gate.weight"].dtype == torch.float32
    assert stored["model.layers.1.mlp.experts.0.down_proj.weight"].dtype == torch.bfloat16
    model = load_open_model(tmp_path / "published")
    ff = model.trf_blocks[1].ff
    assert ff.router.weight.dtype == ff.score_bias.dtype == torch.float32
    assert model.trf_blocks[1].ff.experts[0].down.weight.dtype == torch.bfloat16
    ids = torch.randint(0, 300, (2, 20), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours, theirs = model(ids).float(), reference(ids).logits.float()
    assert (ours - theirs).abs().max() <= 0.05 * theirs.abs().max()  # bfloat16 rounding
    ours_stored = stored_tensors(save_open_model(model, tmp_path / "ours"))
    assert ours_stored.keys() == stored.keys()
    assert all(torch.equal(ours_stored[name], tensor) for name, tensor in stored.items())
    reread = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "ours").eval()
    with torch.no_grad():
        assert torch.equal(reread(ids).logits, reference(ids).logits)


def test_gpt_oss_in_mxfp4_as_published_is_refused_with_what_to_do(tmp_path):
    saved("gpt_oss", tmp_path, shard="1GB")
    rewrite_config(tmp_path, quantization_config={"quant_method": "mxfp4"})
    with pytest.raises(ValueError, match=r"does not compute quantization_config=.*mxfp4"):
        load_open_model(tmp_path)


def test_gpt_oss_experts_unpack_and_pack_back_bit_for_bit(tmp_path):
    """The down layers are views of the file's packed tensor, the gate and up layers contiguous
    copies (as views, every forward pass would copy them), and packing them again gives the
    stored tensors bit for bit."""
    saved("gpt_oss", tmp_path, shard="1GB")
    model = load_open_model(tmp_path)
    stored = stored_tensors(tmp_path)
    experts = model.trf_blocks[1].ff.experts
    assert experts[0].down.weight.untyped_storage().data_ptr() == \
        experts[3].down.weight.untyped_storage().data_ptr()  # one storage, the packed tensor's
    assert experts[0].gate.weight.t().is_contiguous()
    layout = hf_layout(model)
    packed = [name for name in layout if name.endswith(PACKED_EXPERTS)]
    assert len(packed) == 4 * model.cfg["n_layers"]
    for name in packed:
        assert torch.equal(pack_experts(model, layout[name]), stored[name]), name


GPT_OSS_ROPE_SPELLINGS = [  # each read as transformers 5.24 reads it
    {"rope_parameters": {}},  # plain RoPE at 150,000, not the default YaRN
    {"rope_parameters": {"rope_type": "default", "rope_theta": 10_000.0},  # rope_scaling wins
     "rope_scaling": {"rope_type": "yarn", "factor": 2.0, "original_max_position_embeddings": 64}},
]


def test_olmo3s_two_spellings_of_yarn_read_alike(tmp_path):
    """transformers 5's per-kind rope_parameters and the published rope_theta and rope_scaling,
    which apply YaRN to the global layers only, give one configuration."""
    saved("olmo3", tmp_path, shard="1GB")
    written = config_from_hf(json.loads((tmp_path / "config.json").read_text()))
    rewrite_config(tmp_path, rope_parameters=None, rope_theta=500_000.0,
                   rope_scaling={**YARN, "beta_fast": 32, "beta_slow": 1})
    published = config_from_hf(json.loads((tmp_path / "config.json").read_text()))
    assert published == written
    assert written["rope_freq"]["type"] == "yarn" and written["rope_local_base"] == 500_000.0


OLMO3_ROPE_SPELLINGS = [  # each read as transformers 5.24 reads it
    # the published spelling with another base: the local layers keep transformers' 500,000
    {"rope_parameters": None, "rope_theta": 10_000.0, "rope_scaling": YARN},
    # both spellings: rope_scaling goes on top of the global layers' rope_parameters
    {"rope_parameters": {"full_attention": {"rope_type": "default", "rope_theta": 5e5},
                         "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}},
     "rope_scaling": YARN},
    # no original context (the model's own) and no factor (the ratio of the two)
    {"rope_parameters": None, "rope_theta": 5e5, "max_position_embeddings": 64,
     "rope_scaling": {"rope_type": "yarn", "factor": None, "original_max_position_embeddings": 16}},
]


@pytest.mark.parametrize("name, changes", [
    (name, changes) for name, cases in [("gpt_oss", GPT_OSS_ROPE_SPELLINGS),
                                        ("olmo3", OLMO3_ROPE_SPELLINGS),
                                        ("deepseek_v3", DEEPSEEK_V3_YARN)]
    for changes in cases])
def test_rope_spellings_give_transformers_logits(tmp_path, name, changes):
    saved(name, tmp_path, shard="1GB")
    rewrite_config(tmp_path, **changes)
    reference = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    model = load_open_model(tmp_path)
    ids = torch.randint(0, 300, (2, 40), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert (model(ids) - reference(ids).logits).abs().max() <= 1e-4


@pytest.mark.parametrize("changes", DEEPSEEK_V3_YARN)
def test_deepseek_v3s_yarn_is_saved_back_in_its_own_spelling(tmp_path, changes):
    """Its YaRN written back as DeepSeek's files spell it (mscale and mscale_all_dim, solved
    from the attention factor and the scores' scale): transformers reads the same logits, and
    the course reads back the configuration it saved, to float64 rounding."""
    saved("deepseek_v3", tmp_path / "published", shard="1GB")
    rewrite_config(tmp_path / "published", **changes)
    reference = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "published").eval()
    model = load_open_model(tmp_path / "published")
    folder = save_open_model(model, tmp_path / "ours")
    written = json.loads((folder / "config.json").read_text())["rope_scaling"]
    assert written["type"] == "yarn" and ("mscale" in written) == ("mscale" in changes[
        "rope_parameters"])
    reread = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
    ids = torch.randint(0, 300, (2, 40), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert (reread(ids).logits - reference(ids).logits).abs().max() <= 1e-5
    reloaded = load_open_model(folder).cfg
    close = {key: pytest.approx(value, rel=1e-12) if isinstance(value, float) else value
             for key, value in {**model.cfg, **model.cfg["rope_freq"]}.items()}
    assert {**reloaded, **reloaded["rope_freq"]} == close


# Gemma 3 270M's and 1B's config.json as published on the Hub (google/gemma-3-270m,
# google/gemma-3-1b-pt), in transformers 4's spelling, the architecture's keys transcribed (no
# download here); the 1B's gives its layer pattern as sliding_window_pattern, the 270M's as
# layer_types
GEMMA3_PUBLISHED = {
    name: {"architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text",
           "vocab_size": 262_144, "num_attention_heads": 4, "num_key_value_heads": 1,
           "head_dim": 256, "max_position_embeddings": 32_768, "query_pre_attn_scalar": 256,
           "rms_norm_eps": 1e-6, "rope_theta": 1_000_000.0, "rope_local_base_freq": 10_000.0,
           "rope_scaling": None, "sliding_window": 512, "hidden_activation": "gelu_pytorch_tanh",
           "attention_bias": False, "attn_logit_softcapping": None,
           "final_logit_softcapping": None, "bos_token_id": 2, "eos_token_id": 1,
           "pad_token_id": 0, **sizes}
    for name, sizes in {
        "gemma-3-270m": {"hidden_size": 640, "intermediate_size": 2048, "num_hidden_layers": 18,
                         "_sliding_window_pattern": 6, "use_bidirectional_attention": False,
                         "layer_types": (["sliding_attention"] * 5 + ["full_attention"]) * 3},
        "gemma-3-1b": {"hidden_size": 1152, "intermediate_size": 6912, "num_hidden_layers": 26,
                       "sliding_window_pattern": 6}}.items()}


@pytest.mark.parametrize("name", list(GEMMA3_PUBLISHED))
def test_gemma3s_published_configs_translate_to_4_8_8s_and_count_as_transformers_does(name,
                                                                                        tmp_path):
    published = GEMMA3_PUBLISHED[name]
    assert config_from_hf(published) == OPEN_MODEL_CONFIGS[name]
    (tmp_path / "config.json").write_text(json.dumps(published))
    hf_config = transformers.AutoConfig.from_pretrained(tmp_path)  # as transformers reads it
    assert hf_config.layer_types == [{"local": "sliding_attention", "global": "full_attention"}[
        kind] for kind in OPEN_MODEL_CONFIGS[name]["layer_types"]]
    assert config_from_hf(hf_config.to_dict()) == OPEN_MODEL_CONFIGS[name]  # transformers 5's
    with torch.device("meta"):
        theirs = transformers.Gemma3ForCausalLM(hf_config)
        ours = ModernGPTModel(OPEN_MODEL_CONFIGS[name])
    assert sum(p.numel() for p in ours.parameters()) == sum(
        p.numel() for p in theirs.parameters())


GEMMA4_E2B_PUBLISHED = {  # text_config as copied in ollama's Gemma 4 tests (4.8.13)
    "model_type": "gemma4_text", "vocab_size": 262_144, "hidden_size": 1536,
    "num_hidden_layers": 35, "intermediate_size": 6144, "num_attention_heads": 8,
    "num_key_value_heads": 1, "head_dim": 256, "global_head_dim": 512,
    "hidden_size_per_layer_input": 256, "vocab_size_per_layer_input": 262_144,
    "num_kv_shared_layers": 20, "use_double_wide_mlp": True, "attention_k_eq_v": False,
    "enable_moe_block": False, "num_global_key_value_heads": None,
    "layer_types": (["sliding_attention"] * 4 + ["full_attention"]) * 7, "sliding_window": 512,
    "rope_parameters": {"full_attention": {"partial_rotary_factor": 0.25,
                                           "rope_theta": 1_000_000.0,
                                           "rope_type": "proportional"},
                        "sliding_attention": {"rope_theta": 10_000.0, "rope_type": "default"}},
    "final_logit_softcapping": 30.0, "max_position_embeddings": 131_072,
    "tie_word_embeddings": True, "rms_norm_eps": 1e-6, "hidden_activation": "gelu_pytorch_tanh"}


def test_gemma4_e2bs_published_config_translates_to_4_8_13s_and_counts_as_transformers_does(
        tmp_path):
    """Inside the published image-and-sound-and-text config.json, as transformers reads it too
    (a config.json without the whole model's tie_word_embeddings ties the head, as transformers'
    Gemma4Config does by default)."""
    published = {"model_type": "gemma4", "architectures": ["Gemma4ForConditionalGeneration"],
                 "text_config": GEMMA4_E2B_PUBLISHED}  # no tie_word_embeddings: tied, by default
    assert config_from_hf(published) == OPEN_MODEL_CONFIGS["gemma-4-e2b"]
    (tmp_path / "config.json").write_text(json.dumps(published))
    hf_config = transformers.AutoConfig.from_pretrained(tmp_path).text_config
    assert config_from_hf(hf_config.to_dict()) == OPEN_MODEL_CONFIGS["gemma-4-e2b"]
    with torch.device("meta"):
        theirs = transformers.Gemma4ForCausalLM(hf_config)
        ours = ModernGPTModel(OPEN_MODEL_CONFIGS["gemma-4-e2b"])
    assert sum(p.numel() for p in ours.parameters()) == sum(
        p.numel() for p in theirs.parameters())


def test_published_configs_translate_to_4_8s_configurations():
    """config.json as transformers writes it for Qwen3-0.6B's and Llama 3.2 1B's numbers (these
    equal the book package's, from which 4.8's OPEN_MODEL_CONFIGS come)."""
    qwen = transformers.Qwen3Config(
        vocab_size=151_936, hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
        num_attention_heads=16, num_key_value_heads=8, head_dim=128,
        max_position_embeddings=40_960, rope_theta=1_000_000.0, rms_norm_eps=1e-6,
        tie_word_embeddings=True)
    assert config_from_hf(qwen.to_dict()) == OPEN_MODEL_CONFIGS["qwen3-0.6b"] | {
        "qk_norm": True}
    llama = {  # the transformers 4 spelling, as in Meta's published config.json
        "model_type": "llama", "vocab_size": 128_256, "hidden_size": 2048,
        "intermediate_size": 8192, "num_hidden_layers": 16, "num_attention_heads": 32,
        "num_key_value_heads": 8, "head_dim": 64, "max_position_embeddings": 131_072,
        "rope_theta": 500_000.0, "rms_norm_eps": 1e-5, "tie_word_embeddings": True,
        "hidden_act": "silu", "rope_scaling": {
            "rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}}
    assert config_from_hf(llama) == OPEN_MODEL_CONFIGS["llama-3.2-1b"] | {
        "head_dim": 64, "qk_norm": False}


def test_download_serves_a_mirrored_folder_without_the_network(tmp_path, monkeypatch):
    folder = tmp_path / "Qwen" / "Qwen3-0.6B"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    monkeypatch.setenv("LLM_COURSE_DATA_MIRROR", str(tmp_path))
    assert download_open_model("Qwen/Qwen3-0.6B") == folder


# Tokenizers: each published format, built offline, against transformers' tokenizers (the
# `tokenizers` library) and the book package's, on a varied text and on chat prompts.
TEXT = ("Hello, wörld! It's 12345 apples\n\n\tcafé — naïve 😀 don't  WE'LL\r\n  x=3.14; "
        "<b>tags</b> & ümlauts; 1,000,000 tokens…")
MESSAGES = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": TEXT}]


@pytest.fixture(scope="module")
def llama3_tokenizer_file(tmp_path_factory, tiktoken_gpt2):
    """A tokenizer.model in Llama 3's tiktoken format: GPT-2's ranks, then filler ranks (bytes
    no UTF-8 text contains) up to Llama 3's 128,000, so that the special tokens get their ids."""
    ranks = dict(tiktoken_gpt2._mergeable_ranks)
    for rank in range(len(ranks), 128_000):
        ranks[b"\xff" + rank.to_bytes(3, "big")] = rank
    path = tmp_path_factory.mktemp("llama3") / "tokenizer.model"
    path.write_text("".join(f"{base64.b64encode(token).decode()} {rank}\n"
                            for token, rank in ranks.items()))
    return path


def test_llama3_tokenizer_matches_transformers_and_the_book(llama3_tokenizer_file):
    from llms_from_scratch.llama3 import ChatFormat, Llama3Tokenizer
    from transformers.convert_slow_tokenizer import TikTokenConverter

    ours = load_llama3_tokenizer(llama3_tokenizer_file)
    specials = sorted(ours.special_tokens_set, key=ours.encode_single_token)
    reference = TikTokenConverter(vocab_file=str(llama3_tokenizer_file),
                                  extra_special_tokens=specials).converted()
    prompt = chat_prompt(MESSAGES, "llama3")
    for text in (TEXT, prompt):
        ids = ours.encode(text, allowed_special="all")
        assert ids == reference.encode(text, add_special_tokens=False).ids
        assert ours.decode(ids) == text
    assert [ours.encode_single_token(t) for t in ("<|begin_of_text|>", "<|eot_id|>")] == [
        128_000, 128_009]
    book = ChatFormat(Llama3Tokenizer(str(llama3_tokenizer_file)))
    assert ours.encode(prompt, allowed_special="all") == book.encode(
        TEXT, system_message="Answer briefly.")


@pytest.fixture(scope="module")
def qwen3_tokenizer_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("qwen3")
    qwen3_style_tokenizer(folder)
    return folder


@pytest.mark.parametrize("thinking", [True, False])
def test_qwen3_tokenizer_matches_transformers_and_the_book(qwen3_tokenizer_folder, thinking):
    from llms_from_scratch.qwen3 import Qwen3Tokenizer

    ours = HFTokenizer(qwen3_tokenizer_folder)
    reference = transformers.PreTrainedTokenizerFast(
        tokenizer_file=str(qwen3_tokenizer_folder / "tokenizer.json"))
    prompt = chat_prompt(MESSAGES[1:], "qwen3", thinking=thinking)
    for text in (TEXT, prompt):
        assert ours.encode(text) == reference.encode(text)
        assert ours.decode(ours.encode(text)) == text
    book = Qwen3Tokenizer(str(qwen3_tokenizer_folder / "tokenizer.json"),
                          add_generation_prompt=True, add_thinking=thinking)
    assert ours.encode(prompt) == book.encode(TEXT)


# gpt-oss's chat template (openai/gpt-oss-*, chat_template.jinja), its part for a conversation
# without tools: the system message, the developer's instructions from a first system message,
# the user's turns, earlier answers in the final channel, the opening of the assistant's turn
GPT_OSS_CHAT_TEMPLATE = """{{- "<|start|>system<|message|>" }}
{%- if model_identity is not defined %}
    {%- set model_identity = "You are ChatGPT, a large language model trained by OpenAI." %}
{%- endif %}
{{- model_identity + "\n" + "Knowledge cutoff: 2024-06\n" }}
{{- "Current date: " + strftime_now("%Y-%m-%d") + "\n\n" }}
{%- if reasoning_effort is not defined %}
    {%- set reasoning_effort = "medium" %}
{%- endif %}
{{- "Reasoning: " + reasoning_effort + "\n\n" }}
{{- "# Valid channels: analysis, commentary, final. Channel must be included for every message." }}
{{- "<|end|>" }}
{%- if messages[0].role == "developer" or messages[0].role == "system" %}
    {%- set developer_message = messages[0].content %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set developer_message = "" %}
    {%- set loop_messages = messages %}
{%- endif %}
{%- if developer_message %}
    {{- "<|start|>developer<|message|>" + "# Instructions\n\n" + developer_message + "\n\n" }}
    {{- "<|end|>" }}
{%- endif %}
{%- for message in loop_messages -%}
    {%- if message.role == "assistant" -%}
        {{- "<|start|>assistant<|channel|>final<|message|>" + message.content + "<|end|>" }}
    {%- elif message.role == "user" -%}
        {{- "<|start|>user<|message|>" + message.content + "<|end|>" }}
    {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
<|start|>assistant
{%- endif -%}"""
HARMONY_SPECIAL_TOKENS = ("<|endoftext|>", "<|start|>", "<|end|>", "<|message|>", "<|channel|>",
                          "<|return|>", "<|call|>")


@pytest.mark.parametrize("messages, effort", [
    ([*MESSAGES, {"role": "assistant", "content": "Sure."}, {"role": "user", "content": "And?"}],
     "high"),
    (MESSAGES[1:], "low"),  # no system message: no developer's instructions
    ([{"role": "system", "content": ""}, *MESSAGES[1:]], "medium"),  # an empty one: none either
])
def test_gpt_oss_chat_prompt_matches_its_chat_template(tmp_path, messages, effort):
    qwen3_style_tokenizer(tmp_path, HARMONY_SPECIAL_TOKENS)
    reference = transformers.PreTrainedTokenizerFast(
        tokenizer_file=str(tmp_path / "tokenizer.json"))
    reference.chat_template = GPT_OSS_CHAT_TEMPLATE
    expected = reference.apply_chat_template(messages, tokenize=False, add_generation_prompt=True,
                                             reasoning_effort=effort)  # today's date, as ours
    prompt = chat_prompt(messages, "gpt_oss", reasoning_effort=effort)
    assert prompt == expected
    ours = HFTokenizer(tmp_path)
    assert ours.encode(prompt) == reference.encode(prompt)
    start = ours.tokenizer.token_to_id("<|start|>")  # each marker one id
    assert ours.encode(prompt).count(start) == prompt.count("<|start|>")
    reply = ("<|channel|>analysis<|message|>Short: say 4.<|end|><|start|>assistant<|channel|>"
             "final<|message|>4, as\n2 + 2.<|return|>")
    assert harmony_channels(ours.decode(ours.encode(reply))) == {
        "analysis": "Short: say 4.", "final": "4, as\n2 + 2."}


GEMMA3_SPECIAL_TOKENS = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "<start_of_turn>",
                         "<end_of_turn>"]


@pytest.fixture(scope="module")
def gemma3_tokenizer_folder(tmp_path_factory):
    """A tokenizer.json as Gemma 3 publishes it (transformers' GemmaConverter writes the same
    pipeline): spaces replaced by '▁', no pre-tokenizer split (the Split on ' ' meets none after
    that), BPE with byte fallback (the 256 tokens <0x00>..<0xFF> after the special tokens) and
    fused unknowns, <bos> added by the post-processor; merges learned from The Verdict."""
    from tokenizers import decoders, models, normalizers, pre_tokenizers, processors, trainers

    def pipeline(tokenizer):
        tokenizer.normalizer = normalizers.Replace(" ", "▁")
        tokenizer.pre_tokenizer = pre_tokenizers.Split(" ", "merged_with_previous")
        tokenizer.decoder = decoders.Sequence([decoders.Replace("▁", " "),
                                               decoders.ByteFallback(), decoders.Fuse()])
        return tokenizer

    learner = pipeline(tokenizers.Tokenizer(models.BPE(unk_token="<unk>")))
    learner.train_from_iterator([read_text("the-verdict")], trainers.BpeTrainer(
        vocab_size=700, show_progress=False, special_tokens=GEMMA3_SPECIAL_TOKENS))
    learned = json.loads(learner.to_str())["model"]
    vocab = {token: i for i, token in enumerate(
        [*GEMMA3_SPECIAL_TOKENS, *(f"<0x{b:02X}>" for b in range(256)),
         *(t for t in sorted(learned["vocab"], key=learned["vocab"].get)
           if t not in GEMMA3_SPECIAL_TOKENS)])}
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in learned["merges"]]
    tokenizer = pipeline(tokenizers.Tokenizer(models.BPE(
        vocab, merges, unk_token="<unk>", fuse_unk=True, byte_fallback=True)))
    tokenizer.add_special_tokens(GEMMA3_SPECIAL_TOKENS)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A <bos> $B", special_tokens=[("<bos>", 2)])
    folder = tmp_path_factory.mktemp("gemma3")
    tokenizer.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "GemmaTokenizer", "bos_token": "<bos>", "eos_token": "<eos>",
        "pad_token": "<pad>", "unk_token": "<unk>", "mask_token": "<mask>",
        "add_bos_token": True, "add_eos_token": False, "chat_template": GEMMA3_CHAT_TEMPLATE}))
    return folder


# Gemma 3's chat template (google/gemma-3-*-it), its text part: a system message opens the
# first user turn, the assistant's role is "model", each content trimmed
GEMMA3_CHAT_TEMPLATE = """{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else "") }}
    {{- message['content'] | trim }}
    {{- '<end_of_turn>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model\n'}}
{%- endif -%}
"""


def test_gemma3_tokenizer_matches_transformers_gemma_tokenizer(gemma3_tokenizer_folder):
    """Ours reads the file with `tokenizers`; transformers' GemmaTokenizer rebuilds Gemma's
    pipeline around the file's vocabulary and merges: the same ids, <bos> first only where
    transformers adds special tokens, and the chat prompt equal to the template's."""
    ours = HFTokenizer(gemma3_tokenizer_folder)
    reference = transformers.AutoTokenizer.from_pretrained(gemma3_tokenizer_folder)
    assert type(reference).__name__ == "GemmaTokenizer"
    code = "def f(x):\n    return x ** 2  # squares\n\n\n    \tend   "
    conversation = [*MESSAGES, {"role": "assistant", "content": "  Fine.  "},
                    {"role": "user", "content": "And 2 × 3?"}]
    prompt = chat_prompt(conversation, "gemma3")
    assert prompt == reference.apply_chat_template(conversation, tokenize=False,
                                                   add_generation_prompt=True)
    assert prompt.startswith("<bos><start_of_turn>user\nAnswer briefly.\n\nHello")
    for text in (TEXT, code, prompt):
        ids = ours.encode(text)
        assert ids == reference.encode(text, add_special_tokens=False)
        if text != prompt:
            assert reference.encode(text) == [2, *ids]  # transformers' default adds <bos>
        assert ours.decode(ids) == text
    fallback = ours.encode("😀")  # not in the learned vocabulary: its 4 UTF-8 bytes
    assert [ours.tokenizer.id_to_token(i) for i in fallback] == ["<0xF0>", "<0x9F>", "<0x98>",
                                                                 "<0x80>"]
    assert ours.encode("<start_of_turn>model\n")[0] == 5


# Gemma 4's format without tools, as its chat template writes it: the template itself could not
# be read here; these are the renderings that several projects' copies of it agree on
# (llama.cpp-compatible fixtures among them, read on 2026-11-30)
GEMMA4_PROMPTS = [
    ([{"role": "user", "content": " describe this "}], False,
     "<bos><|turn>user\ndescribe this<turn|>\n<|turn>model\n<|channel>thought\n<channel|>"),
    ([{"role": "system", "content": " Be exact. "}, {"role": "user", "content": " Solve it. "}],
     True, "<bos><|turn>system\n<|think|>\nBe exact.<turn|>\n<|turn>user\nSolve it.<turn|>\n"
           "<|turn>model\n"),
    ([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": " Hello. "},
      {"role": "user", "content": "Bye"}], True,
     "<bos><|turn>system\n<|think|>\n<turn|>\n<|turn>user\nHi<turn|>\n<|turn>model\nHello.<turn|>\n"
     "<|turn>user\nBye<turn|>\n<|turn>model\n"),
]


@pytest.mark.parametrize("messages, thinking, expected", GEMMA4_PROMPTS)
def test_gemma4_chat_prompt_writes_its_turns_and_thinking_marker(messages, thinking, expected):
    assert chat_prompt(messages, "gemma4", thinking=thinking) == expected
    if not thinking:  # its template's default, as Qwen3's is thinking
        assert chat_prompt(messages, "gemma4") == expected


@pytest.mark.parametrize("call, error, message", [  # the message names the argument
    (lambda: chat_prompt([], "mistral"), ValueError, "style 'mistral'"),
    (lambda: chat_prompt([{"role": "human", "content": "Hi"}], "llama3"), ValueError,
     r"messages\[0\]\['role'\] 'human' is not in \('system', 'user', 'assistant'\)"),
    (lambda: chat_prompt([{"role": "user", "content": "Hi"},
                          {"role": "system", "content": "Be brief."}], "gemma3"),
     ValueError, r"messages\[1\]\['role'\] 'system'"),
    (lambda: chat_prompt([{"role": "user", "content": "Hi"},
                          {"role": "system", "content": "Be brief."}], "gpt_oss"),
     ValueError, r"messages\[1\]\['role'\] 'system'"),
    (lambda: chat_prompt([{"role": "user", "content": "Hi"},
                          {"role": "system", "content": "Be brief."}], "gemma4"), ValueError,
     r"messages\[1\]\['role'\] 'system'"),
    (lambda: chat_prompt([], "gpt_oss", reasoning_effort="max"), ValueError,
     "reasoning_effort 'max' is not in"),
    (lambda: chat_prompt([], "gpt_oss", date="30/11/2026"), ValueError,
     "date '30/11/2026' is not YYYY-MM-DD"),
])
def test_tokenizer_bad_inputs_are_named(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_a_tokenizer_json_given_to_load_llama3_tokenizer_names_the_file_it_reads(tmp_path):
    (tmp_path / "tokenizer.json").write_text('{\n  "version": "1.0",\n  "model": {}\n}\n')
    with pytest.raises(ValueError, match=r"tokenizer.json is not in tiktoken's format \(line 1: "
                                         r"b'\{'\).*Llama 3's is original/tokenizer.model"):
        load_llama3_tokenizer(tmp_path / "tokenizer.json")


def test_a_cut_tokenizer_model_downloaded_again_loads_whole(llama3_tokenizer_file, tmp_path,
                                                            monkeypatch):
    """A failed load leaves nothing behind: tiktoken's own reader kept a copy of each file in
    TIKTOKEN_CACHE_DIR under its path, and read that copy after the file was replaced."""
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "cache"))
    whole = llama3_tokenizer_file.read_bytes()
    path = tmp_path / "original" / "tokenizer.model"
    path.parent.mkdir()
    path.write_bytes(whole[:whole.index(b"\n", len(whole) // 2) + 4])  # cut in a token
    with pytest.raises(ValueError, match=r"tokenizer.model is not in tiktoken's format"):
        load_llama3_tokenizer(path)
    path.write_bytes(whole)  # downloaded again
    assert load_llama3_tokenizer(path).n_vocab == 128_256
    assert not (tmp_path / "cache").exists()


# Saving (save_open_model): what the course writes, transformers reads into the same logits.
def course_round_trip(name, tmp_path, **options):
    """transformers' model saved as published, loaded by the course, saved by the course, and
    read back by transformers: (the original, the course's model, what transformers read)."""
    reference = saved(name, tmp_path / "published", shard="1GB")
    model = load_open_model(tmp_path / "published")
    if name.startswith("qwen3_5"):  # also a Qwen3-Next, as which it would be saved by default
        options.setdefault("source", tmp_path / "published")
    folder = save_open_model(model, tmp_path / "ours", **options)
    reread = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
    return reference, model, reread


def stored_tensors(folder):
    return {name: tensor for path in sorted(folder.glob("*.safetensors"))
            for name, tensor in safetensors.torch.load_file(path).items()}


@pytest.mark.parametrize("name", list(REFERENCES))
def test_a_saved_model_reads_back_in_transformers_with_the_same_logits_and_tokens(name,
                                                                                  tmp_path):
    reference, model, reread = course_round_trip(name, tmp_path)
    assert type(reread) is type(reference)
    ids = torch.randint(0, 300, (2, 20), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert (reread(ids).logits - reference(ids).logits).abs().max() <= 1e-5
    greedy = dict(max_new_tokens=10, do_sample=False, pad_token_id=0)
    assert torch.equal(reread.generate(ids[:1, :4], **greedy),
                       reference.generate(ids[:1, :4], **greedy))
    stored = stored_tensors(tmp_path / "ours")  # a tied head is the embedding, stored once
    assert ("lm_head.weight" in stored) == (not model.cfg["tie_weights"])
    reloaded = load_open_model(tmp_path / "ours")
    assert reloaded.cfg == model.cfg
    assert all(torch.equal(a, b) for a, b in zip(reloaded.state_dict().values(),
                                                  model.state_dict().values()))
    config = json.loads((tmp_path / "ours" / "config.json").read_text())
    assert config["torch_dtype"] == "float32"  # as published: Gemma 4's RoPE by layer kind
    assert ("rope_parameters" in config) == name.startswith("gemma4")


def test_a_sharded_save_has_transformers_names_and_index_and_reads_back(tmp_path):
    reference, model, reread = course_round_trip("qwen3_moe", tmp_path, max_shard_size="100KB")
    folder = tmp_path / "ours"
    shards = sorted(folder.glob("model-*.safetensors"))
    assert len(shards) > 2
    assert [p.name for p in shards] == [f"model-{i:05d}-of-{len(shards):05d}.safetensors"
                                        for i in range(1, len(shards) + 1)]
    assert not (folder / "model.safetensors").exists()
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    stored = stored_tensors(folder)
    assert index["weight_map"].keys() == stored.keys()
    assert index["metadata"]["total_size"] == sum(t.nbytes for t in stored.values())
    for shard in shards:  # at most 100 kB, unless one tensor alone is larger
        names = safetensors.torch.load_file(shard)
        assert sum(t.nbytes for t in names.values()) <= 100_000 or len(names) == 1
    ids = torch.randint(0, 300, (2, 20), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert (reread(ids).logits - reference(ids).logits).abs().max() <= 1e-5


def test_bfloat16_halves_the_files_and_rounds_the_weights(tmp_path):
    saved("llama3", tmp_path / "published", shard="1GB")
    model = load_open_model(tmp_path / "published")  # float32, as transformers saved it
    save_open_model(model, tmp_path / "f32")
    save_open_model(model, tmp_path / "bf16", dtype=torch.bfloat16)
    sizes = [(tmp_path / kind / "model.safetensors").stat().st_size for kind in ("f32", "bf16")]
    assert 0.49 < sizes[1] / sizes[0] < 0.51
    assert json.loads((tmp_path / "bf16" / "config.json").read_text())["torch_dtype"] == \
        "bfloat16"
    rounded = load_open_model(tmp_path / "bf16")
    assert rounded.tok_emb.weight.dtype == torch.bfloat16
    assert torch.equal(rounded.tok_emb.weight, model.tok_emb.weight.bfloat16())
    assert model.tok_emb.weight.dtype == torch.float32  # the model itself is not changed


def test_source_gives_the_tokenizer_files_and_token_ids_and_must_be_this_model(tmp_path):
    published = tmp_path / "published"
    saved("qwen3", published, shard="1GB")
    rewrite_config(published, eos_token_id=7, rope_parameters=None, rope_theta=10_000.0,
                   transformers_version="5.24.0")
    (published / "tokenizer.json").write_text("{}")
    (published / "README.md").write_text("the original's model card")
    model = load_open_model(published)
    save_open_model(model, tmp_path / "ours", source=published)
    assert sorted(p.name for p in (tmp_path / "ours").iterdir()) == [
        "config.json", "generation_config.json", "model.safetensors", "tokenizer.json"]
    config = json.loads((tmp_path / "ours" / "config.json").read_text())
    assert config["eos_token_id"] == 7 and config["rope_theta"] == 10_000.0
    assert "transformers_version" not in config
    other = tmp_path / "other"
    saved("llama3", other, shard="1GB")
    with pytest.raises(ValueError, match=r"source .*other describes another model: .*"
                                         r"qk_norm=False, the model has True"):
        save_open_model(model, tmp_path / "mixed", source=other)
    with pytest.raises(ValueError, match="is the folder to write"):
        save_open_model(model, published, source=published, replace=True)
    assert not (tmp_path / "mixed").exists()


def tiny_modern(**change):
    from conftest import tiny_qwen3

    return tiny_qwen3(**{"vocab_size": 300, **change})


def with_lora(model):
    from ch06_classification.lora import replace_linear_with_lora

    return replace_linear_with_lora(model, rank=2, alpha=4)


def with_classifier(model):
    from ch06_classification.classification import add_classification_head

    return add_classification_head(model, 3)


@pytest.mark.parametrize("make, options, error, message", [
    (lambda: with_classifier(tiny_modern()), {}, ValueError, "num_classes=3"),
    (lambda: with_lora(tiny_modern()), {}, TypeError,
     r"trf_blocks\.0\.att\.W_query: a LinearWithLoRA where ModernGPTModel has a Linear.*"
     r"merge them into the weights first: merge_lora, chapter 6"),
    (lambda: GPTModel({**TINY_GPT, "vocab_size": 300}), {}, TypeError,
     "model must be a ModernGPTModel, got GPTModel"),
    (lambda: tiny_modern(qkv_bias=True), {}, ValueError, "qkv_bias=True"),
    (lambda: tiny_modern(num_experts=2, num_experts_per_tok=1, moe_hidden_dim=8,
                         qk_norm=False), {}, ValueError, "no family"),
    # a Qwen3 with a sliding window: its config.json would lose the window
    (lambda: tiny_modern(n_layers=2, sliding_window=4, layer_types=["local", "global"]), {},
     ValueError, "sliding_window=4"),
    # an Olmo 3 whose local layers' base transformers would not read back (it gives them 500,000)
    (lambda: tiny_modern(n_layers=2, qk_norm_across_heads=True, pre_norms=False, post_norms=True,
                         sliding_window=4, layer_types=["local", "global"],
                         rope_local_base=10_000.0), {}, ValueError, "rope_local_base=10000.0"),
    (lambda: tiny_modern(post_norms=True), {}, ValueError,  # exactly
     r"^no family the course saves has qk_norm=True, num_experts=0, post_norms=True \(5\.9\.4\)$"),
    # a Qwen3-Next whose rope_dim transformers would read back from the fraction as 29
    (lambda: tiny_modern(head_dim=44, rope_dim=30, attention_gate=True, norm_unit_offset=True),
     {}, ValueError, "rope_dim=30 of head_dim=44"),
    (tiny_modern, {"dtype": torch.int8}, ValueError, r"dtype must be .*got torch\.int8"),
    (tiny_modern, {"max_shard_size": "5 gigabytes"}, ValueError, "max_shard_size"),
    (tiny_modern, {"max_shard_size": 0}, ValueError, "max_shard_size"),
    (tiny_modern, {"replace": "yes"}, TypeError, "replace"),
])
def test_what_cannot_be_saved_is_refused_before_anything_is_written(tmp_path, make, options,
                                                                    error, message):
    with pytest.raises(error, match=message):
        save_open_model(make(), tmp_path / "out", **options)
    assert list(tmp_path.iterdir()) == []


def snapshot(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*")
            if p.is_file()}


def test_a_folder_holding_anything_else_is_replaced_only_when_asked_and_then_whole(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    for replace in (False, True):  # a file it does not write: never replaced
        with pytest.raises(FileExistsError, match=r"out holds notes\.txt, which save_open_model "
                                                  r"does not write: save_open_model replaces "
                                                  r"only what it writes, even with replace=True"):
            save_open_model(tiny_modern(), folder, replace=replace)
        assert snapshot(folder) == {"notes.txt": b"mine"}
    published = tmp_path / "published"  # another model's files, as transformers writes them
    saved("qwen3", published, shard="1GB")
    before = snapshot(published)
    with pytest.raises(FileExistsError, match="did not write"):
        save_open_model(tiny_modern(), published)
    assert snapshot(published) == before

    save_open_model(tiny_modern(), published, max_shard_size="10KB", replace=True)
    assert len(list(published.glob("model-*"))) > 2  # another program's save: replaced, told
    (folder / "notes.txt").unlink()
    save_open_model(tiny_modern(), folder, max_shard_size="10KB")
    save_open_model(tiny_modern(seed=1), folder)  # its own earlier save: replaced, no question
    assert sorted(snapshot(folder)) == ["config.json", "model.safetensors"]  # no old shard
    assert torch.equal(load_open_model(folder).tok_emb.weight, tiny_modern(seed=1).tok_emb.weight)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_save_that_fails_midway_leaves_the_folder_as_it_was(tmp_path, monkeypatch):
    folder = tmp_path / "out"
    save_open_model(tiny_modern(), folder, max_shard_size="10KB")
    before = snapshot(folder)
    written = []

    def disk_full_at_the_second_file(tensors, path, metadata=None):
        if written:
            raise OSError(28, "No space left on device")
        written.append(path)
        original_save(tensors, path, metadata=metadata)

    original_save = safetensors.torch.save_file
    monkeypatch.setattr(safetensors.torch, "save_file", disk_full_at_the_second_file)
    with pytest.raises(OSError, match="No space left"):
        save_open_model(tiny_modern(seed=1), folder, max_shard_size="10KB")
    assert snapshot(folder) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary folder left
    with pytest.raises(OSError, match="No space left"):
        save_open_model(tiny_modern(seed=1), tmp_path / "new", max_shard_size="10KB")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_hugging_face_cache_folder_is_never_written(tmp_path):
    snapshot_folder = tmp_path / "hub" / "models--Qwen--Qwen3-0.6B" / "snapshots" / "abc123"
    with pytest.raises(ValueError, match="Hugging Face's download cache"):
        save_open_model(tiny_modern(), snapshot_folder, replace=True)
    assert list(tmp_path.iterdir()) == []


def test_a_shard_cut_short_is_named_before_any_tensor_is_read(tmp_path):
    """What an interrupted download can leave: a shard cut short. The refusal names which."""
    saved("qwen3", tmp_path)
    shards = sorted(tmp_path.glob("model-*.safetensors"))
    shards[2].write_bytes(shards[2].read_bytes()[:-100])
    with pytest.raises(ValueError, match=rf"{shards[2].name} is not a complete safetensors file"):
        load_open_model(tmp_path)


def test_an_earlier_save_of_another_architecture_is_not_replaced_unasked(tmp_path):
    save_open_model(tiny_modern(), tmp_path / "out")
    with pytest.raises(FileExistsError, match=r"out holds another model, which save_open_model "
                                              r"saved: num_hidden_layers=1 \(this model's: 2\)"):
        save_open_model(tiny_modern(n_layers=2), tmp_path / "out")
    assert load_open_model(tmp_path / "out").cfg["n_layers"] == 1
    save_open_model(tiny_modern(n_layers=2), tmp_path / "out", replace=True)
    assert load_open_model(tmp_path / "out").cfg["n_layers"] == 2


def test_replace_never_deletes_a_tree_named_by_mistake(tmp_path, monkeypatch):
    """replace=True replaces files and the saver's own folders (original/), nothing else: a
    folder holding a sub-folder (a project's .git), the current folder, one holding it, and
    the home folder are refused before anything is written or deleted."""
    project = tmp_path / "project"
    (project / ".git").mkdir(parents=True)
    (project / "notes.txt").write_text("mine")
    before = snapshot(project)
    with pytest.raises(FileExistsError, match=r"project holds (the folder \.git|notes\.txt), "
                                              r"which save_open_model does not write: "
                                              r"save_open_model replaces only what it writes"):
        save_open_model(tiny_modern(), project, replace=True)
    assert snapshot(project) == before and (project / ".git").is_dir()
    monkeypatch.chdir(project / ".git")
    for folder in (".", project, tmp_path):
        with pytest.raises(FileExistsError, match=r"is the current folder or holds it: "
                                                  r"save_open_model replaces its folder whole"):
            save_open_model(tiny_modern(), folder, replace=True)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    with pytest.raises(FileExistsError, match=r"home is the home folder"):
        save_open_model(tiny_modern(), tmp_path / "home", replace=True)
    assert snapshot(project) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "project"]
    published = tmp_path / "published"  # files and original/: replaced when asked
    (published / "original").mkdir(parents=True)
    (published / "original" / "tokenizer.model").write_text("ranks")
    (published / "config.json").write_text("{}")
    save_open_model(tiny_modern(), published, replace=True)
    assert sorted(snapshot(published)) == ["config.json", "model.safetensors"]


def test_a_refusal_reads_no_more_of_a_folder_than_it_must(tmp_path, monkeypatch):
    """Pointed at a large folder (the home folder), the check stops at its first entry that is
    not the saver's: one folder listed, not the whole tree walked."""
    folder = tmp_path / "home"
    for i in range(3):
        (folder / f"tree{i}" / "deeper").mkdir(parents=True)
    (folder / "a-notes.txt").write_text("mine")
    listed = []
    real_scandir = os.scandir
    monkeypatch.setattr(os, "scandir", lambda path=".": listed.append(path) or real_scandir(path))
    with pytest.raises(FileExistsError, match=r"home holds a-notes\.txt"):
        save_open_model(tiny_modern(), folder)
    assert len(listed) <= 1


def test_a_save_killed_between_its_renames_is_named_not_hidden(tmp_path):
    """Killed (SIGKILL) between moving the old folder aside and the new one in, a save leaves
    the old content in .NAME.xxxxxxxx.old: the next save names it rather than leaving it
    there unseen."""
    save_open_model(tiny_modern(), tmp_path / "out")
    (tmp_path / "out").rename(tmp_path / ".out.0123abcd.old")
    for replace in (False, True):
        with pytest.raises(FileExistsError, match=r"out is missing, and .*\.out\.0123abcd\.old "
                                                  r"holds what was there before a save was "
                                                  r"killed.*rename it back"):
            save_open_model(tiny_modern(seed=1), tmp_path / "out", replace=replace)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.0123abcd.old"]


def test_a_save_killed_while_writing_leaves_a_folder_the_next_save_names(tmp_path):
    """Killed (SIGKILL) while writing, a save leaves its hidden .NAME.xxxxxxxx.tmp, which may
    hold gigabytes: the next save to that folder warns, naming it, and leaves it alone."""
    stale = tmp_path / ".out.0123abcd.tmp"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"half a save")
    with pytest.warns(UserWarning, match=r"\.out\.0123abcd\.tmp is left by a save to .*out that "
                                         r"was killed while writing.*delete it"):
        save_open_model(tiny_modern(), tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.0123abcd.tmp", "out"]


def test_a_folder_saved_without_the_savers_mark_hints_at_an_older_save(tmp_path):
    model = tiny_modern()
    save_open_model(model, tmp_path / "out")
    weights = tmp_path / "out" / "model.safetensors"
    safetensors.torch.save_file(safetensors.torch.load_file(weights), weights)  # no saved_by
    with pytest.raises(FileExistsError, match=r"holds model\.safetensors, which save_open_model "
                                              r"did not write \(its metadata does not name "
                                              r"save_open_model: another program's save\): pass "
                                              r"replace=True"):
        save_open_model(model, tmp_path / "out")
    save_open_model(model, tmp_path / "out", replace=True)


def test_a_tied_model_untied_by_merge_lora_saves_with_its_source_and_reads_back(tmp_path):
    from ch06_classification.lora import merge_lora

    published = tmp_path / "published"
    saved("qwen3", published, shard="1GB")  # tie_word_embeddings: true
    model = merge_lora(with_lora(load_open_model(published)))
    torch.manual_seed(1)
    with torch.no_grad():  # a head apart from the embedding, as a LoRA update leaves it
        model.out_head.weight.add_(0.01 * torch.randn_like(model.out_head.weight))
    assert not model.cfg["tie_weights"]
    save_open_model(model, tmp_path / "ours", source=published)
    config = json.loads((tmp_path / "ours" / "config.json").read_text())
    assert config["tie_word_embeddings"] is False
    reread = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "ours").eval()
    ids = torch.randint(0, 300, (1, 12), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert (reread(ids).logits - model.eval()(ids)).abs().max() <= 1e-5
