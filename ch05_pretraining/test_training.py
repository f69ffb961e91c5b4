"""Tests of training.py: appendix D's schedule and loop (cosine_schedule, optimizer_step,
train_model). Its other tests are still in test_pretraining.py and test_bad_inputs.py."""

import re

import pytest
import torch

from ch05_pretraining.training import cosine_schedule, optimizer_step, train_model
from conftest import TINY_GPT, tiny_gpt


def batches(n=4, rows=2, width=8):
    ids = torch.arange(n * rows * width).reshape(n, rows, width) % TINY_GPT["vocab_size"]
    return [(inputs, (inputs + 1) % TINY_GPT["vocab_size"]) for inputs in ids]


def weights(model):
    return {name: tensor.clone() for name, tensor in model.state_dict().items()}


def same(model, before):
    return all(torch.equal(tensor, before[name]) for name, tensor in model.state_dict().items())


def run(model, optimizer, loader, **change):
    return train_model(model, loader, [], optimizer, "cpu", **{
        "n_epochs": 1, "eval_freq": None, "eval_iter": 1, "start_context": None,
        "tokenizer": None, "warmup_steps": 0, "progress": False, **change})


# cosine_schedule and train_model: a warmup rises to its peak --------------------------------

def test_train_model_refuses_a_warmup_that_would_start_above_the_optimizers_rate():
    model = tiny_gpt()
    before = weights(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-6)  # a finetuning rate
    with pytest.raises(ValueError, match=re.escape(
            "initial_lr (3e-05) must not exceed the optimizer's lr (5e-06): a warmup rises from "
            "initial_lr to the peak. Pass an initial_lr of at most 5e-06 (0, or a tenth of the "
            "peak), or warmup_steps=0")):
        run(model, optimizer, batches(), warmup_steps=2)  # initial_lr left at the book's 3e-05
    assert same(model, before) and not optimizer.state  # refused before the first step


@pytest.mark.parametrize("change", [{"warmup_steps": 0}, {"initial_lr": 5e-6},
                                    {"lr_schedule": lambda step: 5e-6}])
def test_train_model_takes_a_low_rate_without_a_warmup_from_above_it(change):
    model = tiny_gpt()
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-6)
    *_, lrs = run(model, optimizer, batches(), **{"warmup_steps": 2, "min_lr": 0.0, **change})
    assert max(lrs) <= 5e-6


def test_train_model_names_the_optimizers_rate_when_min_lr_is_above_it():
    optimizer = torch.optim.AdamW(tiny_gpt().parameters(), lr=5e-7)
    with pytest.raises(ValueError, match=r"the optimizer's lr \(5e-07\) must be >= 0, "
                                         r"min_lr at most the optimizer's lr"):
        run(tiny_gpt(), optimizer, batches())


def test_cosine_schedule_refuses_an_initial_lr_above_the_peak_only_for_a_warmup():
    with pytest.raises(ValueError, match=r"initial_lr \(0\.01\) must not exceed peak_lr"):
        cosine_schedule(1e-3, total_steps=10, warmup_steps=2, initial_lr=1e-2)
    schedule = cosine_schedule(1e-3, total_steps=10, initial_lr=1e-2)  # no warmup: unused
    assert schedule(0) == 1e-3


# optimizer_step and train_model: an error in a batch names the batch -------------------------

@pytest.mark.parametrize("grad_accum_steps", [1, 2, 3])
def test_train_model_names_the_batch_whose_targets_do_not_fit_its_inputs(grad_accum_steps):
    loader = batches()
    inputs, targets = loader[2]
    loader[2] = (inputs, torch.cat([targets, targets[:1]]))  # a collate bug: 3 rows for 2
    with pytest.raises(ValueError, match=re.escape(  # the rest is cross_entropy's message
            f"batch 2 of the epoch, counting from 0 (step {2 // grad_accum_steps}): ")):
        run(tiny_gpt(), torch.optim.AdamW(tiny_gpt().parameters()), loader,
            grad_accum_steps=grad_accum_steps)


class Epochs:
    """A loader that gives each epoch its own list of batches."""

    def __init__(self, *epochs):
        self.epochs = list(epochs)

    def __len__(self):
        return len(self.epochs[0])

    def __iter__(self):
        return iter(self.epochs.pop(0))


def test_train_model_numbers_the_batch_within_its_epoch_and_keeps_the_errors_type():
    good = batches(3)
    bad = (good[1][0].float(), good[1][1])  # floats, not token ids
    with pytest.raises(RuntimeError, match=r"^batch 1 of the epoch, counting from 0 \(step 4\): "
                                           r"Expected tensor for argument #1 'indices'"):
        run(tiny_gpt(), torch.optim.AdamW(tiny_gpt().parameters()),
            Epochs(good, [good[0], bad, good[2]]), n_epochs=2)


def test_optimizer_step_called_alone_leaves_a_batchs_error_as_it_was():
    inputs, targets = batches(1)[0]
    model = tiny_gpt()
    with pytest.raises(ValueError, match="^Expected input batch_size"):  # cross_entropy's
        optimizer_step(model, [(inputs, targets[:1])], torch.optim.AdamW(model.parameters()),
                       "cpu")
