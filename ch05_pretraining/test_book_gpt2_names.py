"""The book's names for GPT-2's weights (ch05 gpt2_weights): its nested `params` layout,
download_and_load_gpt2, assign, load_gpt2_params_from_tf_ckpt (the book's download_file is
shared.data's, tested in shared/test_data.py). No real weights
are needed: a small random model goes through the book's layout and the book's own loader."""

import importlib.util
import json

import numpy as np
import pytest
import torch

from ch04_gpt_model.gpt_model import GPTModel
from ch05_pretraining import gpt2_weights
from ch05_pretraining.gpt2_weights import (
    assign,
    book_gpt2_params,
    download_and_load_gpt2,
    gpt2_tensors,
    load_gpt2_params_from_tf_ckpt,
    load_weights_into_gpt,
    save_gpt2_safetensors,
)


SMALL = {"vocab_size": 71, "context_length": 16, "emb_dim": 24, "n_heads": 3, "n_layers": 2,
         "drop_rate": 0.0, "qkv_bias": True}


def random_model(**overrides):
    torch.manual_seed(5)
    return GPTModel({**SMALL, "tie_weights": True, **overrides}).eval()


def test_our_model_through_the_books_layout_loads_into_the_books_model_and_ours():
    from llms_from_scratch.ch04 import GPTModel as BookGPTModel
    from llms_from_scratch.ch05 import load_weights_into_gpt as book_load_weights_into_gpt

    source = random_model()
    params = book_gpt2_params(gpt2_tensors(source))
    assert sorted(params) == ["b", "blocks", "g", "wpe", "wte"]
    block = params["blocks"][1]
    assert sorted(block) == ["attn", "ln_1", "ln_2", "mlp"]
    assert block["attn"]["c_attn"]["w"].shape == (24, 72)  # Conv1D: (in, out), q|k|v fused
    assert sorted(block["mlp"]) == ["c_fc", "c_proj"] and sorted(block["ln_1"]) == ["b", "g"]
    assert isinstance(params["wte"], np.ndarray)

    torch.manual_seed(9)  # other random weights, so that loading must overwrite them all
    book, ours = BookGPTModel(SMALL).eval(), GPTModel(SMALL).eval()
    book_load_weights_into_gpt(book, params)
    load_weights_into_gpt(ours, params)
    ids = torch.randint(0, SMALL["vocab_size"], (2, 16))
    with torch.no_grad():
        expected = source(ids)
        # The book's model is another implementation: on an AVX-512 processor (Xeon with AMX,
        # 2026-11-25) its logits came out up to 8.9e-08 from ours, a rounding apart; on AVX2
        # they are equal. A weight in the wrong place would be off by far more.
        torch.testing.assert_close(book(ids), expected, rtol=0, atol=1e-6)
        assert torch.equal(ours(ids), expected)


def test_the_books_layout_refuses_an_untied_head():
    params = gpt2_tensors(random_model(tie_weights=False))
    with pytest.raises(ValueError, match="no output head of its own"):
        book_gpt2_params(params)


def test_download_and_load_gpt2_gives_the_books_settings_and_params(tmp_path, monkeypatch):
    source = random_model()
    save_gpt2_safetensors(source, tmp_path / "weights")
    monkeypatch.setattr(gpt2_weights, "download_gpt2_weights",
                        lambda size: tmp_path / "weights" / "model.safetensors")
    monkeypatch.setattr(gpt2_weights, "gpt2_config",  # this small model's shape, not 124M's
                        lambda size: {**SMALL, "vocab_size": 71})
    settings, params = download_and_load_gpt2("124M", tmp_path / "models")
    assert settings == {"n_vocab": 71, "n_ctx": 16, "n_embd": 24, "n_head": 3, "n_layer": 2}
    assert json.loads((tmp_path / "models" / "124M" / "hparams.json").read_text()) == settings
    ours = GPTModel(SMALL).eval()
    load_weights_into_gpt(ours, params)
    ids = torch.randint(0, 71, (1, 10))
    with torch.no_grad():
        assert torch.equal(ours(ids), source(ids))
    with pytest.raises(ValueError, match="unknown model_size '124m'"):
        download_and_load_gpt2("124m", tmp_path)


def test_assign_checks_the_shape_and_makes_a_parameter():
    left = torch.nn.Parameter(torch.zeros(2, 3))
    right = np.arange(6, dtype=np.float32).reshape(2, 3)
    param = assign(left, right)
    assert isinstance(param, torch.nn.Parameter) and torch.equal(param, torch.tensor(right))
    with pytest.raises(ValueError, match=r"right must have left's shape .*right has shape "
                                         r"\(3, 2\), left \(2, 3\)"):
        assign(left, right.T)


@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is not None,
                    reason="TensorFlow is installed")
def test_the_tensorflow_reader_says_what_it_needs():
    with pytest.raises(ImportError, match="needs the tensorflow package.*download_and_load_gpt2"):
        load_gpt2_params_from_tf_ckpt("model.ckpt", {"n_layer": 12})
