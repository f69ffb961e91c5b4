"""Tests of chapter 4's GPT models: the lesson's (gpt_model.py, the book's) and the final one
that extends it (final_model.py): compatibility with the book's package, the final model's
configuration, tying and options (bad inputs: test_bad_inputs.py)."""

import hashlib
import math

import pytest
import torch
from torch import nn

from ch04_gpt_model import gpt_model as lesson
from ch04_gpt_model.final_model import GPTModel, gpt2_config
from ch04_gpt_model.gpt_model import (
    GELU,
    GPT_CONFIG_124M,
    LayerNorm,
    count_parameters,
    generate_text_simple,
)
from conftest import TINY_GPT


TINY = {**TINY_GPT, "vocab_size": 97, "context_length": 16, "emb_dim": 32, "n_heads": 4,
        "n_layers": 2, "qkv_bias": True}


def tokens(batch=2, length=10, vocab=97, seed=0):
    return torch.randint(0, vocab, (batch, length), generator=torch.Generator().manual_seed(seed))


def test_layer_norm_equals_torch_layer_norm():
    x = torch.randn(4, 7, 32)
    torch.testing.assert_close(LayerNorm(32)(x), nn.LayerNorm(32, eps=1e-5)(x))


def test_gelu_equals_torch_tanh_gelu():
    x = torch.linspace(-6, 6, 1001)
    torch.testing.assert_close(GELU()(x), nn.functional.gelu(x, approximate="tanh"))


def test_output_shape_and_causality():
    torch.manual_seed(0)
    model = GPTModel(TINY).eval()
    ids = tokens()
    logits = model(ids)
    assert logits.shape == (2, 10, 97)
    changed = ids.clone()
    changed[:, 6] = (changed[:, 6] + 1) % 97
    torch.testing.assert_close(model(changed)[:, :6], logits[:, :6])


def test_the_model_keeps_its_checked_configuration():
    model = GPTModel(TINY)
    assert model.cfg == {**TINY, "tie_weights": False, "sdpa": False}
    assert model.cfg is not TINY  # a later change to the caller's dict changes nothing


def test_a_subclass_declares_the_keys_it_adds():
    class WithExtraRate(GPTModel):
        OPTIONAL_CONFIG_KEYS = {**GPTModel.OPTIONAL_CONFIG_KEYS, "drop_rate_attn": 0.0}

    assert WithExtraRate({**TINY, "drop_rate_attn": 0.2}).cfg["drop_rate_attn"] == 0.2
    with pytest.raises(ValueError, match="drop_rate_attn"):
        GPTModel({**TINY, "drop_rate_attn": 0.2})


def test_weight_tying_shares_one_trained_matrix():
    torch.manual_seed(0)
    tied = GPTModel({**TINY, "tie_weights": True})
    untied = GPTModel(TINY)
    assert tied.out_head.weight is tied.tok_emb.weight
    assert count_parameters(untied) - count_parameters(tied) == 97 * 32
    tied(tokens()).sum().backward()
    optimizer = torch.optim.SGD(tied.parameters(), lr=0.1)
    before = tied.tok_emb.weight.detach().clone()
    optimizer.step()
    assert not torch.equal(before, tied.out_head.weight)
    assert tied.out_head.weight is tied.tok_emb.weight


def state_dict_digest(model: nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.contiguous().numpy().tobytes())
    return digest.hexdigest()


def test_untied_initial_weights_are_unchanged_by_the_tying_fix():
    # Digests of GPTModel's state_dict at seed 123, recorded before tied models got GPT-2's
    # initial scales: the untied (book) path must draw and store exactly what it did.
    torch.manual_seed(123)
    assert state_dict_digest(GPTModel(gpt2_config(n_layers=2))) == (
        "24b964420da9511cc31ff9cfefe5af2fbbc7c9afd8805815605a362f25228cd4")
    torch.manual_seed(123)
    small = gpt2_config(context_length=64, emb_dim=128, n_heads=4, n_layers=2)
    assert state_dict_digest(GPTModel(small)) == (
        "daf956e533dfa3da56bd2ebd225c5f8fcdf1094b5d986e2b120a0c8f66c76bac")


def test_tied_model_starts_at_the_loss_of_a_uniform_guess():
    """At GPT-2 small's dimensions, tied and untied models start near ln(vocab_size)."""
    ids = torch.randint(0, 50257, (2, 65), generator=torch.Generator().manual_seed(0))
    for tie in (True, False):
        torch.manual_seed(123)
        model = GPTModel(gpt2_config(tie_weights=tie, drop_rate=0.0)).eval()
        with torch.no_grad():
            loss = nn.functional.cross_entropy(model(ids[:, :-1]).flatten(0, 1),
                                               ids[:, 1:].flatten())
        assert abs(loss.item() - math.log(50257)) < 0.5, (tie, loss.item())


def test_tying_scales_the_drawn_embeddings_and_draws_nothing_more():
    torch.manual_seed(0)
    tied = GPTModel({**TINY, "tie_weights": True})
    after_tied = torch.rand(1)
    torch.manual_seed(0)
    untied = GPTModel(TINY)
    assert torch.equal(torch.rand(1), after_tied)  # the same random numbers come next
    torch.testing.assert_close(tied.tok_emb.weight, 0.02 * untied.tok_emb.weight)
    torch.testing.assert_close(tied.pos_emb.weight, 0.01 * untied.pos_emb.weight)
    for name, param in untied.state_dict().items():
        if name not in ("tok_emb.weight", "pos_emb.weight", "out_head.weight"):
            assert torch.equal(param, tied.state_dict()[name]), name


def test_gpt2_small_parameter_counts_on_the_meta_device():
    with torch.device("meta"):
        untied = GPTModel(GPT_CONFIG_124M)
        tied = GPTModel(gpt2_config(tie_weights=True))
    assert count_parameters(untied) == 163_009_536
    assert count_parameters(tied) == 124_412_160
    assert count_parameters(untied) * 4 / 1024**2 == pytest.approx(621.83, abs=0.005)


def test_gpt2_config_sizes_and_overrides():
    assert gpt2_config("gpt2-xl (1558M)")["n_heads"] == 25
    assert gpt2_config(context_length=256)["context_length"] == 256


def test_generate_text_simple_is_greedy_and_crops_long_prompts():
    torch.manual_seed(0)
    model = GPTModel(TINY).eval()
    prompt = tokens(batch=1, length=30)  # longer than the context of 16
    out = generate_text_simple(model, prompt, max_new_tokens=5, context_size=16)
    assert out.shape == (1, 35)
    assert torch.equal(out[:, :30], prompt)
    expected_first = model(prompt[:, -16:])[0, -1].argmax()
    assert out[0, 30] == expected_first


# The book's reference implementation as a test oracle (the README's set-up installs it).

def book_model(config):
    from llms_from_scratch import ch04 as oracle
    return oracle.GPTModel(config)


BOTH_MODELS = pytest.mark.parametrize("model_class", [lesson.GPTModel, GPTModel],
                                      ids=["lesson", "final"])


@BOTH_MODELS
def test_same_seed_gives_the_books_initial_weights_and_logits(model_class):
    torch.manual_seed(123)
    book = book_model(TINY)
    torch.manual_seed(123)
    ours = model_class(TINY)
    assert list(book.state_dict()) == list(ours.state_dict())
    for key, value in book.state_dict().items():
        assert torch.equal(value, ours.state_dict()[key]), key
    ids = tokens()
    # Not bit for bit: our GELU rounds sqrt(2/pi) to float32 once, the book's takes the float32
    # sqrt of float32(2/pi), one ulp apart; whether that shows in the logits depends on the
    # processor's kernels. Any real difference in the computation is orders of magnitude larger.
    torch.testing.assert_close(book.eval()(ids), ours.eval()(ids), rtol=1e-5, atol=1e-6)


@BOTH_MODELS
def test_checkpoints_move_between_the_books_model_and_ours(tmp_path, model_class):
    torch.manual_seed(1)
    book = book_model(TINY).eval()
    torch.save(book.state_dict(), tmp_path / "book.pth")
    ours = model_class(TINY).eval()
    result = ours.load_state_dict(torch.load(tmp_path / "book.pth", weights_only=True))
    assert not result.missing_keys and not result.unexpected_keys
    ids = tokens()
    torch.testing.assert_close(ours(ids), book(ids))

    torch.manual_seed(2)
    ours_trained = model_class(TINY).eval()
    torch.save(ours_trained.state_dict(), tmp_path / "ours.pth")
    book.load_state_dict(torch.load(tmp_path / "ours.pth", weights_only=True))
    torch.testing.assert_close(book(ids), ours_trained(ids))


# Options used by chapter 5: KV caches, last-position logits, the fused kernel ----------------

def test_cached_forward_in_chunks_equals_the_full_forward():
    torch.manual_seed(0)
    model = GPTModel(TINY).eval()
    ids = tokens(length=16)
    caches = model.make_kv_caches()
    assert len(caches) == TINY["n_layers"] and caches[0].max_tokens == 16
    with torch.no_grad():
        full = model(ids)
        pieces = [model(ids[:, :9], caches)] + [model(ids[:, i:i + 1], caches)
                                                  for i in range(9, 16)]
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-5, rtol=1e-5)


def test_last_only_gives_the_last_positions_logits():
    torch.manual_seed(0)
    model = GPTModel(TINY).eval()
    ids = tokens()
    with torch.no_grad():
        torch.testing.assert_close(model(ids, last_only=True), model(ids)[:, -1:])


def test_hidden_states_are_what_the_head_turns_into_logits():
    torch.manual_seed(0)
    model = GPTModel(TINY).eval()
    ids = tokens()
    with torch.no_grad():
        hidden = model.hidden_states(ids)
        assert hidden.shape == (*ids.shape, TINY["emb_dim"])
        assert torch.equal(model.out_head(hidden), model(ids))


def test_sdpa_config_computes_the_same_logits_and_gradients():
    torch.manual_seed(0)
    explicit = GPTModel(TINY)
    fused = GPTModel({**TINY, "sdpa": True})
    fused.load_state_dict(explicit.state_dict())
    ids = tokens()
    torch.testing.assert_close(fused(ids), explicit(ids), atol=1e-5, rtol=1e-5)
    explicit(ids).sum().backward()
    fused(ids).sum().backward()
    torch.testing.assert_close(fused.tok_emb.weight.grad, explicit.tok_emb.weight.grad,
                               atol=1e-4, rtol=1e-4)
