"""Tests of evaluation.py (beyond_1_measuring.ipynb): sequence log-probabilities, ROUGE-L and
the lesson's run as the companions start from it."""

import math
from pathlib import Path

import pytest
import torch

from ch07_instructions.evaluation import (
    finetuned_instruction_run,
    rouge_l_scores,
    sequence_logprobs,
)


def test_rouge_l_scores():
    data = [{"output": "the cat sat on the mat", "model_response": "the cat sat on the mat"},
            {"output": "the cat sat on the mat", "model_response": "dogs bark"},
            {"output": "the cat sat", "model_response": "the cat sat on the mat"}]
    perfect, unrelated, partial = rouge_l_scores(data)
    assert perfect == pytest.approx(100) and unrelated == 0
    assert partial == pytest.approx(100 * 2 * (3 / 6) * 1 / (3 / 6 + 1))


@pytest.mark.parametrize("reference", ["", "猫坐在垫子上", "Η γάτα κάθισε"])
def test_rouge_l_refuses_a_reference_it_cannot_read(reference):
    # rouge-score reads a-z and digits only: such a reference would score 0 even against itself
    data = [{"output": "the cat sat", "model_response": "the cat sat"},
            {"output": reference, "model_response": reference}]
    with pytest.raises(ValueError, match=r"data: the reference 'output' of entries \[1\] has no "
                                         "word rouge-score can read"):
        rouge_l_scores(data)




def test_sequence_logprobs_sums_the_counted_targets_only():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 5)
    targets = torch.tensor([[1, 3, -100, -100], [-100, 0, 4, 2]])
    expected = []
    for b in range(2):
        total = 0.0
        for t in range(4):
            if targets[b, t] != -100:  # log of the softmax probability, written out
                row = [math.exp(v) for v in logits[b, t].tolist()]
                total += math.log(row[targets[b, t]] / sum(row))
        expected.append(total)
    assert sequence_logprobs(logits, targets).tolist() == pytest.approx(expected, abs=1e-5)




def lesson_cell(cell_id):
    import nbformat

    from shared.data import PROJECT_ROOT

    nb = nbformat.read(PROJECT_ROOT / "ch07_instructions" / "instructions.ipynb", as_version=4)
    return next(cell.source for cell in nb.cells if cell.get("id") == cell_id)


@pytest.mark.parametrize("profile", ["default", "book"])
def test_the_companions_settings_are_the_lessons(profile):
    """finetuned_instruction_run restates the lesson's settings: they must stay the same."""
    import ast

    from ch07_instructions.evaluation import LESSON_SETTINGS, _run_name

    settings = LESSON_SETTINGS[profile]
    namespace = {"PROFILE": profile}
    exec(lesson_cell("ch07-025").split("print(TRAINING)")[0], namespace)  # 7.4's settings
    assert namespace["TRAINING"] == settings["training"]
    assert namespace["context_length"] == settings["context_length"]
    exec(lesson_cell("ch07-012").splitlines()[0], namespace)  # 7.2's split
    assert namespace["SPLIT_SEED"] == settings["split_seed"]
    calls = [node for node in ast.walk(ast.parse(lesson_cell("ch07-107")))  # 7.5's model
             if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "gpt2_config"]
    config = {k.arg: ast.literal_eval(k.value) for k in calls[0].keywords
              if k.arg not in ("context_length", "drop_rate")}
    assert config == LESSON_SETTINGS["default"]["model"]
    naming = "\n".join(line for line in lesson_cell("ch07-037").splitlines()
                       if line.startswith("run_name"))  # 7.7's file names
    for quick in (False, True):
        source = "gpt2-medium (355M)" if profile == "book" else None
        namespace = {"PROFILE": profile, "GPT2_SOURCE": source, "QUICK": quick, "Path": Path}
        exec(naming, namespace)
        assert namespace["run_name"] == _run_name(profile, source, quick)


def test_response_logprobs_scores_the_response_only_and_keeps_the_mode():
    import tiktoken

    from ch07_instructions.evaluation import response_logprobs
    from conftest import tiny_gpt

    tokenizer = tiktoken.get_encoding("gpt2")
    model = tiny_gpt(vocab_size=50257, context_length=64).train()
    entries = [{"instruction": "Say hi.", "input": "", "output": "Hi."},
               {"instruction": "Say no.", "input": "", "output": "No, thanks."}]
    scores = response_logprobs(model, entries, tokenizer)
    assert scores.shape == (2,) and (scores < 0).all() and model.training
    alone = response_logprobs(model, entries[1:], tokenizer, batch_size=1)
    assert torch.allclose(scores[1:], alone, atol=1e-5)  # padding changes nothing


def test_a_gpt2_source_outside_the_book_profile_is_refused_before_anything_runs():
    # the default profile builds its own small model: the GPT-2 asked for would be ignored
    with pytest.raises(ValueError, match="gpt2_source is the book profile's"):
        finetuned_instruction_run("default", gpt2_source="gpt2-small (124M)")
