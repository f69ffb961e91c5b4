"""The book's names for GPT-2's weights, as the lesson exports them (ch05 pretraining, 5.5):
download_and_load_gpt2, load_weights_into_gpt, assign, load_gpt2_params_from_tf_ckpt (the
book's download_file is shared.data's, tested in shared/test_data.py). No real weights are
needed: a small random model goes through GPT-2's file names into ours and into the book's own
model and loader."""

import importlib.util
import json
import urllib.request

import numpy as np
import pytest
import torch

from ch04_gpt_model.final_model import GPTModel
from ch05_pretraining import pretraining
from ch05_pretraining.gpt2_weights import gpt2_tensors, save_gpt2_safetensors
from ch05_pretraining.pretraining import (
    assign,
    download_and_load_gpt2,
    load_gpt2_params_from_tf_ckpt,
    load_weights_into_gpt,
)


SMALL = {"vocab_size": 71, "context_length": 16, "emb_dim": 24, "n_heads": 3, "n_layers": 2,
         "drop_rate": 0.0, "qkv_bias": True}


def random_model(**overrides):
    torch.manual_seed(5)
    return GPTModel({**SMALL, "tie_weights": True, **overrides}).eval()


def books_layout(params):
    """GPT-2's tensors under the file's names -> the book's nested dictionaries of arrays."""
    nested = {"wte": params["wte.weight"].numpy(), "wpe": params["wpe.weight"].numpy(),
              "g": params["ln_f.weight"].numpy(), "b": params["ln_f.bias"].numpy(),
              "blocks": [{} for _ in range(SMALL["n_layers"])]}
    for name, tensor in params.items():
        if name.startswith("h."):
            _, block, *scopes, leaf = name.split(".")
            place = nested["blocks"][int(block)]
            for scope in scopes:
                place = place.setdefault(scope, {})
            norm = scopes[-1].startswith("ln_")
            place[{"weight": "g" if norm else "w", "bias": "b"}[leaf]] = tensor.numpy()
    return nested


def test_the_books_loader_and_ours_give_the_model_they_came_from():
    from llms_from_scratch.ch04 import GPTModel as BookGPTModel
    from llms_from_scratch.ch05 import load_weights_into_gpt as book_load_weights_into_gpt

    source = random_model()
    params = gpt2_tensors(source)
    torch.manual_seed(9)  # other random weights, so that loading must overwrite them all
    book, ours = BookGPTModel(SMALL).eval(), GPTModel(SMALL).eval()
    book_load_weights_into_gpt(book, books_layout(params))
    load_weights_into_gpt(ours, params)
    ids = torch.randint(0, SMALL["vocab_size"], (2, 16))
    with torch.no_grad():
        expected = source(ids)
        # The book's model is another implementation: on an AVX-512 processor (Xeon with AMX,
        # 2026-11-25) its logits came out up to 8.9e-08 from ours, a rounding apart; on AVX2
        # they are equal. A weight in the wrong place would be off by far more.
        torch.testing.assert_close(book(ids), expected, rtol=0, atol=1e-6)
        assert torch.equal(ours(ids), expected)


def test_download_and_load_gpt2_gives_the_books_settings_and_our_loaders_params(tmp_path,
                                                                                monkeypatch):
    source = random_model()
    save_gpt2_safetensors(source, tmp_path / "weights")
    fetched = []

    def urlretrieve(url):  # a download to a temporary file, as urllib's without a filename
        fetched.append(url)
        copy = tmp_path / "download.tmp"
        copy.write_bytes((tmp_path / "weights" / "model.safetensors").read_bytes())
        return str(copy), None

    monkeypatch.setattr(urllib.request, "urlretrieve", urlretrieve)
    monkeypatch.setattr(pretraining, "gpt2_config",  # this small model's shape, not 124M's
                        lambda size: {**SMALL, "vocab_size": 71})
    settings, params = download_and_load_gpt2("124M", tmp_path / "models")
    assert fetched == ["https://huggingface.co/openai-community/gpt2/resolve/main/"
                       "model.safetensors"]
    assert download_and_load_gpt2("124M", tmp_path / "models")[0] == settings  # no download
    assert len(fetched) == 1 and (tmp_path / "models" / "124M" / "model.safetensors").is_file()
    assert settings == {"n_vocab": 71, "n_ctx": 16, "n_embd": 24, "n_head": 3, "n_layer": 2}
    assert json.loads((tmp_path / "models" / "124M" / "hparams.json").read_text()) == settings
    ours = GPTModel(SMALL).eval()
    load_weights_into_gpt(ours, params)
    ids = torch.randint(0, 71, (1, 10))
    with torch.no_grad():
        assert torch.equal(ours(ids), source(ids))
    with pytest.raises(KeyError, match="124m"):
        download_and_load_gpt2("124m", tmp_path)


def test_assign_checks_the_shape_and_makes_a_parameter_where_left_is():
    left = torch.nn.Parameter(torch.zeros(2, 3, dtype=torch.float64))
    right = np.arange(6, dtype=np.float32).reshape(2, 3)
    param = assign(left, right)
    assert isinstance(param, torch.nn.Parameter) and param.dtype == torch.float64
    assert torch.equal(param, torch.tensor(right, dtype=torch.float64))
    with pytest.raises(ValueError, match="Shape mismatch"):
        assign(left, right.T)


@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is not None,
                    reason="TensorFlow is installed")
def test_the_tensorflow_reader_says_what_it_needs():
    with pytest.raises(ImportError, match="needs TensorFlow"):
        load_gpt2_params_from_tf_ckpt("model.ckpt", {"n_layer": 12})
