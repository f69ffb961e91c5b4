"""Tests of chapter 5's GPT-2 weight loading and export, with transformers as the reference.

OpenAI's weights are not downloaded here: the tests build checkpoints in the published format
from randomly initialised transformers models, which use the same tensor names and layouts.
"""

import json

import pytest
import safetensors.torch
import torch
import transformers

from ch04_gpt_model.final_model import GPTModel
from ch05_pretraining.gpt2_weights import (
    download_gpt2_weights,
    load_gpt2,
    load_gpt2_weights,
    read_gpt2_checkpoint,
    save_gpt2_safetensors,
)
from shared import data


SMALL = {"vocab_size": 300, "context_length": 32, "emb_dim": 64, "n_heads": 4, "n_layers": 2,
         "drop_rate": 0.0, "qkv_bias": True}


def random_hf_model(seed=0, **config):
    torch.manual_seed(seed)
    return transformers.GPT2LMHeadModel(transformers.GPT2Config(**config)).eval()


def save_in_published_layout(hf_model, path):
    """Write `hf_model` as OpenAI's model.safetensors is laid out on the Hugging Face Hub:
    GPT2Model names without a prefix, no lm_head (tied to wte), and each block's causal mask
    stored as a float32 tensor h.N.attn.bias of shape (1, 1, n_positions, n_positions)."""
    state = {name: t.contiguous() for name, t in hf_model.transformer.state_dict().items()}
    n = hf_model.config.n_positions
    mask = torch.tril(torch.ones(n, n)).view(1, 1, n, n)
    for i in range(hf_model.config.n_layer):
        state[f"h.{i}.attn.bias"] = mask.clone()
    safetensors.torch.save_file(state, path, metadata={"format": "pt"})


def assert_same_logits(ours, hf_model, vocab_size, length=20):
    ids = torch.randint(0, vocab_size, (2, length), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = hf_model(ids).logits
        actual = ours.eval()(ids)
    assert actual.shape == expected.shape
    assert (actual - expected).abs().max().item() < 1e-4


def test_transformers_checkpoint_loads_with_the_same_logits_small(tmp_path):
    hf_model = random_hf_model(vocab_size=300, n_positions=32, n_embd=64, n_layer=2, n_head=4)
    hf_model.save_pretrained(tmp_path)  # writes transformer.-prefixed names, no lm_head
    ours = load_gpt2(tmp_path)
    assert_same_logits(ours, hf_model, 300)
    assert torch.equal(ours.out_head.weight, ours.tok_emb.weight)  # GPT-2's tied head


def test_gpt2_124m_shape_in_both_layouts_gives_transformers_logits(tmp_path):
    hf_model = random_hf_model()  # GPT2Config() is GPT-2 small: 124M, context 1024
    hf_model.save_pretrained(tmp_path / "saved")
    published = tmp_path / "published" / "model.safetensors"
    published.parent.mkdir()
    save_in_published_layout(hf_model, published)

    header_len = int.from_bytes(published.read_bytes()[:8], "little")
    # The data section matches the size of OpenAI's file (548,105,171 bytes including
    # its 14,283-byte header), so the layout has the same tensors, shapes and dtypes.
    assert published.stat().st_size - 8 - header_len == 548_105_171 - 8 - 14_283

    for source in (tmp_path / "saved", published):  # no config.json beside `published`
        ours = load_gpt2(source)
        assert sum(p.numel() for p in ours.parameters()) == 163_037_184  # untied copy of wte
        assert_same_logits(ours, hf_model, 50257, length=64)


def test_book_style_loading_into_a_model_built_from_its_config(tmp_path):
    hf_model = random_hf_model(vocab_size=300, n_positions=32, n_embd=64, n_layer=2, n_head=4)
    path = tmp_path / "model.safetensors"
    save_in_published_layout(hf_model, path)
    ours = GPTModel(SMALL)
    load_gpt2_weights(ours, read_gpt2_checkpoint(path))
    assert_same_logits(ours, hf_model, 300)


@pytest.mark.parametrize("options", [{"qkv_bias": True}, {"qkv_bias": False},
                                     {"qkv_bias": False, "tie_weights": True}])
def test_our_checkpoint_loads_in_transformers_with_the_same_logits(tmp_path, options):
    torch.manual_seed(3)
    ours = GPTModel({**SMALL, **options}).eval()
    if options["qkv_bias"]:
        for block in ours.trf_blocks:  # non-zero biases, so that a wrong split would show
            torch.nn.init.normal_(block.att.W_key.bias)
    save_gpt2_safetensors(ours, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["tie_word_embeddings"] == options.get("tie_weights", False)

    hf_model = transformers.GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    assert_same_logits(ours, hf_model, 300)

    reloaded = load_gpt2(tmp_path, drop_rate=0.0)
    assert_same_logits(reloaded, hf_model, 300)
    if options == {"qkv_bias": True}:
        assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(),
                                                      reloaded.state_dict().values()))


def test_wrong_shapes_fail_before_anything_is_copied(tmp_path):
    save_gpt2_safetensors(GPTModel(SMALL), tmp_path)
    params = read_gpt2_checkpoint(tmp_path)

    deeper = GPTModel({**SMALL, "n_layers": 3})
    before = {k: v.clone() for k, v in deeper.state_dict().items()}
    with pytest.raises(ValueError, match=r"missing tensor h\.2\.ln_1\.weight"):
        load_gpt2_weights(deeper, params)
    assert all(torch.equal(before[k], v) for k, v in deeper.state_dict().items())

    with pytest.raises(ValueError, match=r"unexpected tensor h\.1\.ln_1\.weight"):
        load_gpt2_weights(GPTModel({**SMALL, "n_layers": 1}), params)
    with pytest.raises(ValueError, match=r"h\.0\.attn\.c_attn\.weight has shape \(64, 192\), "
                                         r"the model needs \(32, 96\)"):
        load_gpt2_weights(GPTModel({**SMALL, "emb_dim": 32}), params)


def test_nonzero_qkv_biases_need_a_model_with_qkv_bias(tmp_path):
    torch.manual_seed(0)
    with_bias = GPTModel(SMALL)
    torch.nn.init.normal_(with_bias.trf_blocks[0].att.W_query.bias)
    save_gpt2_safetensors(with_bias, tmp_path)
    with pytest.raises(ValueError, match="c_attn.bias: GPT-2 has query/key/value "
                                         "biases.*qkv_bias=True"):
        load_gpt2_weights(GPTModel({**SMALL, "qkv_bias": False}), read_gpt2_checkpoint(tmp_path))


def test_truncated_and_missing_files_are_clear_errors(tmp_path):
    save_gpt2_safetensors(GPTModel(SMALL), tmp_path)
    path = tmp_path / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-1000])
    with pytest.raises(ValueError, match="model.safetensors is not a safetensors file or is cut "
                                         "short: .*truncated"):
        read_gpt2_checkpoint(path)
    with pytest.raises(FileNotFoundError, match="nothing-here"):
        read_gpt2_checkpoint(tmp_path / "nothing-here")


def test_weights_come_through_the_data_mirror(data_mirror, tmp_path):
    """download_gpt2_weights uses the course's fetch: here from a mirror folder, offline."""
    hf_model = random_hf_model(vocab_size=300, n_positions=32, n_embd=1024, n_layer=1,
                               n_head=16)
    source = data_mirror / data.DATASETS["gpt2-medium-weights"].path
    source.parent.mkdir(parents=True)
    save_in_published_layout(hf_model, source)

    path = download_gpt2_weights("gpt2-medium (355M)", progress=False)
    assert path == tmp_path / "data" / "gpt2-weights" / "gpt2-medium" / "model.safetensors"
    ours = load_gpt2(path)  # a bare file: 16 heads, from GPT2_SIZES by the width 1024
    assert_same_logits(ours, hf_model, 300)
    # By its size's name, the model is GPT-2 medium's, and this small file does not fit it.
    with pytest.raises(ValueError, match="shape"):
        load_gpt2("gpt2-medium (355M)")

    with pytest.raises(KeyError, match="gpt2-huge-weights"):  # shared.DATASETS' own KeyError
        download_gpt2_weights("gpt2-huge")
    with pytest.raises(FileNotFoundError, match="gpt2-small"):
        load_gpt2("gpt2-small")  # a near miss of a size's name, not a path


def test_a_classifier_or_adapted_model_is_not_saved_as_gpt2_and_leaves_no_folder(tmp_path):
    from ch06_classification.classification import add_classification_head
    from ch06_classification.lora import replace_linear_with_lora

    classifier = GPTModel(SMALL)
    add_classification_head(classifier, 2)
    with pytest.raises(ValueError, match=r"does not support the configuration num_classes=2"):
        save_gpt2_safetensors(classifier, tmp_path / "classifier")
    adapted = GPTModel(SMALL)
    replace_linear_with_lora(adapted, rank=2, alpha=4)
    with pytest.raises(TypeError, match="a LinearWithLoRA where GPTModel has a Linear.* "
                                        "\\(adapters\\? merge them into the weights first"):
        save_gpt2_safetensors(adapted, tmp_path / "adapted")
    assert list(tmp_path.iterdir()) == []  # no folder, empty or half-written


@pytest.mark.parametrize("config, message", [
    ({"model_type": "llama", "vocab_size": 300}, r"config.json: model_type 'llama' not in "
                                                 r"\('gpt2',\)$"),
    ("{not json", r"config.json is not valid JSON \(.*\): download it again"),
])
def test_a_config_json_of_another_architecture_or_damaged_is_named(tmp_path, config, message):
    save_gpt2_safetensors(GPTModel(SMALL), tmp_path)
    text = config if isinstance(config, str) else json.dumps(config)
    (tmp_path / "config.json").write_text(text)
    with pytest.raises(ValueError, match=message):
        load_gpt2(tmp_path)


def test_a_modern_model_is_pointed_to_save_open_model(tmp_path):
    from conftest import tiny_qwen3

    with pytest.raises(TypeError, match=r"4.8's modern family .*save_open_model saves it"):
        save_gpt2_safetensors(tiny_qwen3(), tmp_path / "modern")
    assert list(tmp_path.iterdir()) == []


def folder_files(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_a_folder_holding_anything_else_is_replaced_only_when_asked_and_then_whole(tmp_path):
    folder = tmp_path / "export"
    random_hf_model(vocab_size=300, n_positions=32, n_embd=64, n_layer=2,
                    n_head=4).save_pretrained(folder)  # another model's files
    before = folder_files(folder)
    for replace in (False, True):  # a file it does not write: never replaced
        with pytest.raises(FileExistsError, match=r"export holds generation_config\.json, which "
                                                  r"save_gpt2_safetensors does not write: "
                                                  r"save_gpt2_safetensors replaces only what it "
                                                  r"writes, even with replace=True"):
            save_gpt2_safetensors(GPTModel(SMALL), folder, replace=replace)
        assert folder_files(folder) == before
    (folder / "generation_config.json").unlink()  # left: another program's weights and config
    with pytest.raises(FileExistsError, match=r"its metadata does not name"):
        save_gpt2_safetensors(GPTModel(SMALL), folder)
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(FileExistsError, match="a-file is a file"):
        save_gpt2_safetensors(GPTModel(SMALL), tmp_path / "a-file")

    save_gpt2_safetensors(GPTModel(SMALL), folder, replace=True)
    assert sorted(folder_files(folder)) == ["config.json", "model.safetensors"]
    torch.manual_seed(1)
    second = GPTModel(SMALL)
    save_gpt2_safetensors(second, folder)  # its own earlier save: replaced without asking
    assert torch.equal(load_gpt2(folder).tok_emb.weight, second.tok_emb.weight)
    with pytest.raises(FileExistsError, match=r"export holds another model, which "
                                              r"save_gpt2_safetensors saved: n_layer=2 \(this "
                                              r"model's: 1\): pass replace=True"):
        save_gpt2_safetensors(GPTModel({**SMALL, "n_layers": 1}), folder)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "export"]


def test_a_save_that_fails_midway_leaves_the_folder_as_it_was(tmp_path, monkeypatch):
    folder = tmp_path / "export"
    save_gpt2_safetensors(GPTModel(SMALL), folder)
    before = folder_files(folder)

    def config_fails(self, *args, **kwargs):  # the weights are written, then config.json fails
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(type(folder), "write_text", config_fails)
    torch.manual_seed(1)
    with pytest.raises(OSError, match="No space left"):
        save_gpt2_safetensors(GPTModel(SMALL), folder)
    monkeypatch.undo()
    assert folder_files(folder) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]


def test_a_folder_of_shards_is_read_whole(tmp_path):
    hf = random_hf_model(vocab_size=300, n_positions=32, n_embd=64, n_layer=2, n_head=4)
    hf.save_pretrained(tmp_path / "sharded", max_shard_size="100KB")  # transformers' shards
    assert not (tmp_path / "sharded" / "model.safetensors").exists()
    assert len(list((tmp_path / "sharded").glob("model-*.safetensors"))) > 1
    hf.save_pretrained(tmp_path / "whole")
    sharded, whole = (read_gpt2_checkpoint(tmp_path / name) for name in ("sharded", "whole"))
    assert sorted(sharded) == sorted(whole)
    assert all(torch.equal(sharded[name], whole[name]) for name in whole)
    load_gpt2(tmp_path / "sharded")  # configured by the config.json beside the shards


def test_pytorchs_pickled_weights_are_named_not_taken_for_a_damaged_file(tmp_path):
    path = tmp_path / "pytorch_model.bin"
    torch.save({"wte.weight": torch.zeros(4, 2)}, path)
    with pytest.raises(ValueError, match=r"pytorch_model\.bin is not a safetensors file"):
        read_gpt2_checkpoint(path)


def test_a_bare_file_of_a_width_no_gpt2_size_has_asks_for_n_heads(tmp_path):
    """Without config.json the heads come from the GPT-2 size of that width; another width
    is refused here, not later as attention's num_heads=None."""
    hf_model = random_hf_model(vocab_size=100, n_positions=16, n_embd=64, n_layer=1, n_head=4)
    save_in_published_layout(hf_model, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match=r"width, 64, .*pass n_heads="):
        load_gpt2(tmp_path / "model.safetensors")
    assert load_gpt2(tmp_path / "model.safetensors", n_heads=4).cfg["n_heads"] == 4
