"""Section 5.9's loader: published-format checkpoints that transformers writes (random weights,
one file or shards) load into ModernGPTModel with transformers' logits and greedy tokens;
anything the model does not compute, or a folder that does not match its config, is refused."""

import base64
import json

import pytest
import safetensors.torch
import tokenizers
import torch
import transformers

from shared import (
    OPEN_MODEL_CONFIGS,
    HFTokenizer,
    chat_prompt,
    config_from_hf,
    download_open_model,
    load_llama3_tokenizer,
    load_open_model,
    read_text,
)


transformers.utils.logging.disable_progress_bar()
SMALL = dict(vocab_size=300, hidden_size=64, num_hidden_layers=2, num_attention_heads=8,
             num_key_value_heads=2, max_position_embeddings=128)
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
}


def saved(name, folder, dtype=torch.float32, shard="50KB"):
    torch.manual_seed(0)
    reference = REFERENCES[name]().to(dtype).eval()
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
    prompt = ids[:1, :4]
    expected = reference.generate(prompt, max_new_tokens=30, do_sample=False, pad_token_id=0)
    tokens = prompt
    caches = model.make_kv_caches(34)
    with torch.no_grad():
        logits = model(prompt, caches, last_only=True)
        for _ in range(30):
            next_id = logits[:, -1].argmax(-1, keepdim=True)
            tokens = torch.cat([tokens, next_id], dim=1)
            logits = model(next_id, caches, last_only=True)
    assert torch.equal(tokens, expected)


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
    with pytest.raises(TypeError, match="dtype must be None or a floating-point torch.dtype, "
                                        "got 'bfloat16'"):
        load_open_model(tmp_path, dtype="bfloat16")


def rewrite_config(folder, **changes):
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize("changes, message", [
    ({"model_type": "gpt2"}, r"config.json describes a 'gpt2' model, not 'llama' or 'qwen3' or "
                             r"'qwen3_moe' \(load_gpt2 loads GPT-2 folders"),
    ({"attention_bias": True}, "does not compute attention_bias=True"),
    ({"hidden_act": "gelu"}, "does not compute hidden_act='gelu'"),
    ({"quantization_config": {"quant_method": "fp8"}},  # as Qwen3-0.6B-FP8's config.json
     r"does not compute quantization_config=\{'quant_method': 'fp8'\}"),
    ({"use_sliding_window": True, "mlp_bias": True},
     "does not compute mlp_bias=True, use_sliding_window=True"),
    ({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}, "rope_parameters": None},
     "RoPE scaling 'yarn'"),
    ({"rms_norm_eps": 0}, "norm_eps must be a number > 0, got 0"),
    ({"intermediate_size": 97}, r"mlp\.down_proj\.weight in model\.safetensors has shape "
                                r"\(64, 96\); config\.json implies \(64, 97\)"),
    ({"num_hidden_layers": 3}, r"missing \['model.layers.2"),
    ({"num_hidden_layers": 1}, r"unexpected \['model.layers.1"),
    ({"tie_word_embeddings": False}, r"missing \['lm_head.weight'\]"),
])
def test_a_folder_its_config_does_not_describe_is_refused(tmp_path, changes, message):
    saved("qwen3", tmp_path, shard="1GB")
    rewrite_config(tmp_path, **changes)
    with pytest.raises(ValueError, match=message):
        load_open_model(tmp_path)


@pytest.mark.parametrize("text, message", [
    ('{"model_type": "qwen3", "hidden_size": 6', r"config.json is not valid JSON \(Expecting"),
    ("[1, 2]", "config.json holds a JSON list, not an object of settings"),
    ("", r"config.json is not valid JSON .*download it again"),
])
def test_a_damaged_config_json_is_named(tmp_path, text, message):
    saved("qwen3", tmp_path, shard="1GB")
    (tmp_path / "config.json").write_text(text)
    with pytest.raises(ValueError, match=message):
        load_open_model(tmp_path)


def test_a_missing_config_key_or_folder_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json in"):
        load_open_model(tmp_path)
    saved("llama3", tmp_path, shard="1GB")
    published = (tmp_path / "config.json").read_text()
    config = json.loads(published)
    del config["intermediate_size"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="config.json has no 'intermediate_size'"):
        load_open_model(tmp_path)
    (tmp_path / "config.json").write_text(published)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="has neither model.safetensors"):
        load_open_model(tmp_path)


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
    """A tokenizer.json as Qwen3 publishes it (NFC, Qwen's split pattern, byte-level BPE,
    ChatML special tokens), its merges learned from The Verdict."""
    from tokenizers import Regex, decoders, models, normalizers, pre_tokenizers, trainers

    split = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
             r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
    tokenizer = tokenizers.Tokenizer(models.BPE())
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(split), "isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.train_from_iterator([read_text("the-verdict")], trainers.BpeTrainer(
        vocab_size=600, show_progress=False, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]))
    folder = tmp_path_factory.mktemp("qwen3")
    tokenizer.save(str(folder / "tokenizer.json"))
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


@pytest.mark.parametrize("call, error, message", [
    (lambda: chat_prompt([{"role": "user"}], "qwen3"), ValueError, "content"),
    (lambda: chat_prompt([], "mistral"), ValueError, "unknown style 'mistral'"),
    (lambda: load_llama3_tokenizer("nowhere/tokenizer.model"), FileNotFoundError,
     "no tokenizer file at"),
    (lambda: HFTokenizer("nowhere"), FileNotFoundError, "no tokenizer.json at"),
])
def test_tokenizer_bad_inputs_are_named(call, error, message):
    with pytest.raises(error, match=message):
        call()
