"""Tests of chapter 5's exercise checks beyond shared/test_exercises.py (which gives each its
right and wrong answers) and shared/test_devices.py (each with the model on a stand-in GPU)."""

import pytest
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves

from ch05_pretraining import exercise_checks
from shared import GPTModel, gpt2_config, load_checkpoint
from shared.tooling.fake_gpu import FAKE_GPU


class NoFloat64OffTheCPU(TorchFunctionMode):
    """Fails on any float64 tensor made on a device other than the CPU: a Mac's GPU (MPS) has
    no float64, so code that makes one there works on CUDA and the CPU and crashes on a Mac."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        for tensor in tree_leaves(result):
            if (isinstance(tensor, torch.Tensor) and tensor.dtype == torch.float64
                    and tensor.device.type != "cpu"):
                raise AssertionError(f"{func} made a float64 tensor on {tensor.device}, "
                                     "which MPS cannot")
        return result


def test_the_mode_catches_float64_on_a_gpu():  # so that the test below can fail
    with NoFloat64OffTheCPU():
        torch.ones(2, dtype=torch.float64).sum()  # on the CPU: allowed
        with pytest.raises(AssertionError, match="made a float64 tensor on fakegpu:0"):
            torch.ones(2, device=FAKE_GPU).double()


def tiny_gpt(context_length):
    torch.manual_seed(0)
    return GPTModel(gpt2_config(vocab_size=6200, context_length=context_length, emb_dim=8,
                                n_heads=2, n_layers=1)).to(FAKE_GPU)


def check_5_3():
    answer = exercise_checks.deterministic_settings(
        tiny_gpt(16), [{}, {"temperature": 1.0}, {"temperature": 1.0, "top_k": 1}])
    assert answer == [0, 2]


def check_5_4():
    def resume_on_the_gpu(path, cfg):
        model = GPTModel(cfg).to(FAKE_GPU)
        optimizer = torch.optim.AdamW(model.parameters())
        load_checkpoint(path, model, optimizer)
        return model, optimizer
    assert exercise_checks.resume_from_checkpoint(resume_on_the_gpu) is None


def check_5_5():
    batches = [(torch.arange(8)[None], torch.arange(1, 9)[None])]
    gaps = exercise_checks.pretrained_gaps(tiny_gpt(8), batches, batches, (3.755, 3.560))
    assert all(isinstance(gap, float) for gap in gaps)


@pytest.mark.parametrize("check", [check_5_3, check_5_4, check_5_5])
def test_a_check_of_a_model_on_a_gpu_makes_no_float64_tensor_there(check):
    with NoFloat64OffTheCPU():
        check()


def test_exercise_5_9_accepts_rounded_answers_and_names_each_mistake(capsys):
    """The solution's rounded (6.08, 3.3) is right (1% tolerance); each named mistake, rounded
    the same way, is still refused with its own hint."""
    from shared import check_answer

    assert check_answer("5.9", (6.08, 3.3))
    read = exercise_checks._moe_read_per_token
    for mistake, hint in [(read(experts_read=128), "not all of them"),
                          (read(embedding_read=True), "a single row"),
                          (read(bytes_per_number=4), "That is float32")]:
        rounded = tuple(round(value, 2) for value in mistake)
        capsys.readouterr()
        assert not check_answer("5.9", rounded)
        assert hint in capsys.readouterr().out


def test_exercise_5_10_is_the_first_length_the_cache_of_gemma_3_1b_measures_at_100_mib(capsys):
    """The check's answer is what cache_bytes measures on Gemma 3 1B's caches (meta device),
    and each named mistake gets its own hint."""
    from shared import OPEN_MODEL_CONFIGS, ModernGPTModel, cache_bytes, check_answer

    tokens = exercise_checks.tokens_to_fill_the_cache()
    with torch.device("meta"):
        model = ModernGPTModel(OPEN_MODEL_CONFIGS["gemma-3-1b"]).to(torch.bfloat16)
    assert cache_bytes(model, tokens - 1) < 100 * 2**20 <= cache_bytes(model, tokens)
    assert check_answer("5.10", tokens)
    fill = exercise_checks._tokens_to_fill
    for mistake, hint in [(fill(local=0), "every layer global"), (fill(kept=512), "511"),
                          (fill(bytes_per_number=4), "float32"),
                          (tokens - 1, "just below 100 MiB")]:
        capsys.readouterr()
        assert not check_answer("5.10", mistake)
        assert hint in capsys.readouterr().out


def test_a_check_that_runs_the_model_refuses_one_on_the_meta_device():
    from shared import check_answer

    with torch.device("meta"):  # as 4.6 builds GPT-2's sizes, to count without memory
        model = GPTModel(gpt2_config(vocab_size=6200, context_length=16, emb_dim=8, n_heads=2,
                                     n_layers=1))
    with pytest.raises(ValueError, match="model is on the meta device"):
        check_answer("5.5", (0.0, 0.0), model=model, train_loader=[], val_loader=[],
                     book_losses=(3.755, 3.560))
