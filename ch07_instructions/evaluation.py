# Generated from ch07_instructions/beyond_1_measuring.ipynb
# by `python -m shared.tooling.notebooks export`. Do not edit: change the notebook's cells
# marked `#| export evaluation`, then export again.
# Each `# %%` line names the cell the code below it came from.

# %% beyond_1_measuring.ipynb cell 3, The lesson's run

"""Chapter 7, beyond the book: measuring an instruction-finetuned model (beyond_1_measuring).
The lesson's run as the companions start from it, the log-probability of a response, and
ROUGE-L."""

import copy
import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import tiktoken
import torch
from torch import nn
from torch.utils.data import DataLoader

from ch04_gpt_model.final_model import (
    GPTModel,
    gpt2_config,
)
from ch05_pretraining.checkpoints import save_weights
from ch05_pretraining.gpt2_weights import load_gpt2
from ch05_pretraining.training import train_model
from ch07_instructions.instructions import (
    InstructionDataset,
    custom_collate_fn,
    load_instruction_data,
    split_instruction_data,
)
from shared.checks import check
from shared.data import data_dir
from shared.utils import (
    get_device,
    set_seed,
)


# The lesson's settings (its sections 7.2, 7.4 and 7.5), per profile; test_evaluation.py checks
# that they are the lesson's
LESSON_SETTINGS = {
    "default": {"context_length": 128, "split_seed": 123,
                "model": {"emb_dim": 128, "n_heads": 4, "n_layers": 2},
                "training": {"num_epochs": 2, "lr": 1e-3, "weight_decay": 0.1, "batch_size": 8,
                             "eval_freq": 40, "eval_iter": 5, "max_new_tokens": 50}},
    "book": {"context_length": 1024, "split_seed": None,
             "training": {"num_epochs": 2, "lr": 5e-5, "weight_decay": 0.1, "batch_size": 8,
                          "eval_freq": 5, "eval_iter": 5, "max_new_tokens": 256}},
}


@dataclass
class InstructionRun:
    """What the lesson's sections 7.2-7.7 build, for the companion notebooks."""
    profile: str
    quick: bool
    gpt2_source: str | None  # the book profile's GPT-2; None in the default profile
    device: torch.device
    tokenizer: tiktoken.Encoding
    context_length: int
    split_seed: int | None
    training: dict
    data: list  # all 1,100 entries
    train_data: list
    val_data: list
    test_data: list
    base_model: nn.Module  # before finetuning (evaluation mode)
    model: nn.Module  # finetuned (evaluation mode)
    model_path: Path  # where section 7.7 saves it


def finetuned_instruction_run(profile: str | None = None, *, quick: bool | None = None,
                              gpt2_source: str | None = None) -> InstructionRun:
    """The lesson's run: its split, settings and models. The finetuned weights are read from the
    file the lesson's section 7.7 saves; when it is absent, section 7.6's training runs once
    with the lesson's settings (no log) and saves them there. The arguments default to the
    lesson's environment variables (LLM_COURSE_PROFILE, LLM_COURSE_QUICK, and for the book
    profile LLM_COURSE_GPT2_CHECKPOINT or LLM_COURSE_GPT2_SMALL)."""
    profile = profile or os.environ.get("LLM_COURSE_PROFILE", "default")
    settings = LESSON_SETTINGS[profile]
    # the default profile loads no GPT-2: a gpt2_source would be ignored without a word
    check(profile == "book" or gpt2_source is None, lambda: f"gpt2_source is the book profile's "
          f"(LLM_COURSE_PROFILE=book), got {gpt2_source!r} in profile {profile!r}")
    quick = os.environ.get("LLM_COURSE_QUICK") == "1" if quick is None else quick
    if profile == "book":
        small = os.environ.get("LLM_COURSE_GPT2_SMALL") == "1"
        gpt2_source = gpt2_source or os.environ.get("LLM_COURSE_GPT2_CHECKPOINT") or (
            "gpt2-small (124M)" if small else "gpt2-medium (355M)")
    device = get_device() if profile == "book" else torch.device("cpu")
    tokenizer = tiktoken.get_encoding("gpt2")
    data = load_instruction_data()
    train_data, val_data, test_data = split_instruction_data(data, seed=settings["split_seed"])
    if quick:  # the course's tests: a few batches only, as in the lesson
        train_data, val_data, test_data = train_data[:32], val_data[:8], test_data[:8]

    context_length, training = settings["context_length"], settings["training"]
    if profile == "book":
        base_model = load_gpt2(gpt2_source, drop_rate=0.0)
    else:
        set_seed(123)  # the lesson's initial weights
        base_model = GPTModel(gpt2_config(context_length=context_length, drop_rate=0.0,
                                          **settings["model"]))
    base_model.to(device).eval()
    run_name = _run_name(profile, gpt2_source, quick)
    model_path = data_dir() / f"gpt-instruction-finetuned-{run_name}.pth"
    model = _finetuned(base_model, model_path, train_data, val_data, tokenizer, context_length,
                       training, device)
    return InstructionRun(profile, quick, gpt2_source, device, tokenizer, context_length,
                          settings["split_seed"], training, data, train_data, val_data,
                          test_data, base_model, model, model_path)


def _run_name(profile, gpt2_source, quick):
    """The lesson's name for a run's files (section 7.7)."""
    name = profile if profile != "book" else "book-" + Path(gpt2_source).name.split(" ")[0]
    return name + ("-quick" if quick else "")


def _finetuned(base_model, path, train_data, val_data, tokenizer, context_length, training,
               device):
    """The lesson's finetuned model: the weights saved at `path`, or section 7.6's training
    redone and saved there."""
    model = copy.deepcopy(base_model)
    if path.exists():
        model.load_state_dict(torch.load(path, map_location=device, weights_only=True))
    else:  # section 7.6: train_model with no warmup, a constant rate and no clipping makes
        # exactly train_model_simple's updates; with start_context=None and progress=False it
        # prints nothing
        collate = partial(custom_collate_fn, allowed_max_length=context_length, device=device)
        train_loader = DataLoader(InstructionDataset(train_data, tokenizer), collate_fn=collate,
                                  batch_size=training["batch_size"], shuffle=True,
                                  drop_last=True)
        val_loader = DataLoader(InstructionDataset(val_data, tokenizer), collate_fn=collate,
                                batch_size=training["batch_size"])
        set_seed(123)
        optimizer = torch.optim.AdamW(model.parameters(), lr=training["lr"],
                                      weight_decay=training["weight_decay"])
        train_model(model, train_loader, val_loader, optimizer, device,
                    n_epochs=training["num_epochs"], eval_freq=training["eval_freq"],
                    eval_iter=training["eval_iter"], start_context=None, tokenizer=tokenizer,
                    warmup_steps=0, lr_schedule=lambda step: training["lr"], max_grad_norm=None,
                    progress=False)
        save_weights(path, model)
    return model.eval()


# %% beyond_1_measuring.ipynb cell 9, The loss on responses, and two baselines

def sequence_logprobs(logits, targets, ignore_index=-100):
    """log p(sequence): the sum of each target token's log-probability, per sequence.

    logits (batch, length, vocab) and targets (batch, length); targets equal to
    `ignore_index` (prompt, padding) are left out of the sum. Returns shape (batch,).
    """
    mask = targets != ignore_index
    log_probs = torch.log_softmax(logits, dim=-1)
    # gather needs a valid index everywhere; the masked positions are zeroed afterwards
    token_log_probs = log_probs.gather(-1, targets.masked_fill(~mask, 0).unsqueeze(-1))
    return (token_log_probs.squeeze(-1) * mask).sum(dim=-1)


# %% beyond_1_measuring.ipynb cell 26, 7.6.2 What the finetuning bought, measured

def response_logprobs(model, entries: list, tokenizer, *, batch_size: int = 8,
                      allowed_max_length: int | None = None, device=None) -> torch.Tensor:
    """log p(output | prompt) of each entry under `model`: a tensor of len(entries), on
    `device` (default: the model's)."""
    device = next(model.parameters()).device if device is None else device
    dataset = InstructionDataset(entries, tokenizer, mask_instruction=True)
    collate = partial(custom_collate_fn, allowed_max_length=allowed_max_length, device=device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return torch.cat([sequence_logprobs(model(inputs), targets) for inputs, targets
                              in DataLoader(dataset, batch_size=batch_size, collate_fn=collate)])
    finally:  # as it was
        model.train(was_training)


# %% beyond_1_measuring.ipynb cell 33, An automatic score: ROUGE-L

def rouge_l_scores(data: list, key: str = "model_response") -> list[float]:
    """ROUGE-L F1 (0-100) of each entry's `key` against its reference `output`."""
    from rouge_score import rouge_scorer, tokenizers

    # rouge-score reads words of the letters a-z and digits only, so a reference without one
    # (empty, or in another script) would score 0 against any response, an identical one too
    tokenizer = tokenizers.DefaultTokenizer(use_stemmer=True)
    unreadable = [i for i, entry in enumerate(data) if not tokenizer.tokenize(entry["output"])]
    check(not unreadable, lambda: f"data: the reference 'output' of entries {unreadable[:5]} has "
          "no word rouge-score can read (it reads the letters a-z and digits only): drop those "
          "entries, or score them another way")

    scorer = rouge_scorer.RougeScorer(["rougeL"], tokenizer=tokenizer)
    return [100 * scorer.score(entry["output"], entry[key])["rougeL"].fmeasure for entry in data]


__all__ = [
    'LESSON_SETTINGS',
    'InstructionRun',
    'finetuned_instruction_run',
    'sequence_logprobs',
    'response_logprobs',
    'rouge_l_scores',
]
