"""Section 5.11's pieces: the variants differ in their attention only, cache_bytes measures what
each keeps (on the meta device as on the CPU), and the training recipe repeats itself."""

import math

import pytest
import torch

from shared import (
    CharTokenizer,
    ModernGPTModel,
    attention_variants,
    cache_bytes,
    char_loaders,
    read_text,
    train_and_evaluate,
)


BASE = {"vocab_size": 50, "context_length": 64, "emb_dim": 32, "n_heads": 4, "n_layers": 4,
        "n_kv_groups": 4, "head_dim": 8, "hidden_dim": 64, "rope_base": 10_000.0,
        "qk_norm": True}
VARIANTS = attention_variants(BASE, kv_groups=2, window=6, latent=12, rope_dim=4)


def test_the_variants_differ_in_their_attention_only():
    attention = {"n_kv_groups", "qk_norm", "rope_dim", "mla", "sliding_window", "layer_types",
                 "attention_sinks"}
    first = VARIANTS["multi-head"]
    for cfg in VARIANTS.values():
        assert {key for key in cfg if cfg[key] != first[key]} <= attention
    assert VARIANTS["sliding window"]["layer_types"] == ["local"] * 3 + ["global"]
    assert VARIANTS["sliding window + sinks"] == {**VARIANTS["sliding window"],
                                                  "attention_sinks": True}


@pytest.mark.parametrize("tokens", [5, 40])  # within the window of 6, and past it
def test_cache_bytes_are_what_each_variant_keeps_per_token(tokens):
    layers, heads, head_dim, number = 4, 4, 8, 4  # float32
    kept = min(tokens, 6 - 1)  # a local layer keeps the window's last 5 positions
    expected = {
        "multi-head": layers * tokens * 2 * heads * head_dim * number,
        "grouped-query": layers * tokens * 2 * 2 * head_dim * number,
        "multi-head latent": layers * tokens * (12 + 4) * number,
        "sliding window": (3 * kept + tokens) * 2 * 2 * head_dim * number,
        "sliding window + sinks": (3 * kept + tokens) * 2 * 2 * head_dim * number,
    }
    torch.manual_seed(0)
    for name, cfg in VARIANTS.items():
        assert cache_bytes(ModernGPTModel(cfg), tokens) == expected[name], name
        with torch.device("meta"):
            assert cache_bytes(ModernGPTModel(cfg), tokens) == expected[name], name
        with torch.device("meta"):  # half the bytes in bfloat16
            half = ModernGPTModel(cfg).to(torch.bfloat16)
        assert cache_bytes(half, tokens) == expected[name] // 2, name


def test_cache_bytes_counts_a_deltanet_layers_state_and_convolution_inputs():
    """A hybrid model (4.9.5): the attention layer's keys and values grow with the text; the
    DeltaNet layer holds its state (value heads x key_dim x value_dim) and its convolution's last
    conv_kernel - 1 inputs (queries, keys and values), in float32, at any length."""
    deltanet = {"key_heads": 2, "value_heads": 4, "key_dim": 4, "value_dim": 6, "conv_kernel": 4}
    cfg = {**BASE, "n_layers": 2, "layer_types": ["linear", "global"], "deltanet": deltanet,
           "attention_gate": True, "norm_unit_offset": True}
    torch.manual_seed(0)
    model = ModernGPTModel(cfg)
    fixed = (4 * 4 * 6 + (2 * 2 * 4 + 4 * 6) * 3) * 4
    for tokens in (5, 40):
        assert cache_bytes(model, tokens) == fixed + tokens * 2 * 4 * 8 * 4


def test_the_character_tokenizer_round_trips_and_names_what_it_lacks():
    tokenizer = CharTokenizer("to be or not")
    assert tokenizer.n_vocab == 7 and tokenizer.decode(tokenizer.encode("not to be")) == "not to be"
    with pytest.raises(KeyError, match="'!'"):
        tokenizer.encode("to be!")


def test_the_recipe_repeats_itself_and_learns():
    text = read_text("the-verdict")
    tokenizer = CharTokenizer(text)
    cfg = {**VARIANTS["grouped-query"], "vocab_size": tokenizer.n_vocab, "context_length": 32}
    runs, orders = [], []
    for _ in range(2):  # two pairs of loaders of one seed: the same first pass
        train, val = char_loaders(text[:32 * 8 * 6 + 1], text[-2_000:], tokenizer, 32, 8)
        orders.append([inputs.tolist() for inputs, _ in train])
        train, val = char_loaders(text[:32 * 8 * 6 + 1], text[-2_000:], tokenizer, 32, 8)
        runs.append(train_and_evaluate(cfg, train, val, peak_lr=1e-2, warmup_steps=1)[1])
    assert orders[0] == orders[1] and len(orders[0]) == 6
    assert runs[0] == runs[1]  # same seed, same batches: the same loss, bit for bit
    assert runs[0] < math.log(tokenizer.n_vocab)  # below a uniform guess after 6 steps
