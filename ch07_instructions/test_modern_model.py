"""Chapter 7's instruction and preference finetuning code, unchanged, on a Qwen3-style model
(section 4.8's ModernGPTModel): the dataset and collate functions, chapter 5's loop,
generate_responses, and a DPO step."""

import copy
import math
from functools import partial

import torch
from torch.utils.data import DataLoader

from conftest import tiny_qwen3
from shared import (
    InstructionDataset,
    PreferenceDataset,
    custom_collate_fn,
    dpo_loss_batch,
    generate_responses,
    preference_collate_fn,
)
from shared import (
    train_model_simple_hooked as train_model_simple,
)


DATA = [{"instruction": "Name a colour.", "input": "", "output": "Blue."},
        {"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"},
        {"instruction": "Say hello.", "input": "", "output": "Hello!"}]


def test_a_qwen3_style_model_follows_instructions_with_chapter_7s_code(tiktoken_gpt2):
    model = tiny_qwen3(vocab_size=50257, context_length=64).train()
    dataset = InstructionDataset(DATA, tiktoken_gpt2, mask_instruction=True)
    loader = DataLoader(dataset, batch_size=3, collate_fn=custom_collate_fn)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    torch.manual_seed(0)
    train_losses, val_losses, _ = train_model_simple(
        model, loader, loader, optimizer, "cpu", num_epochs=80, eval_freq=20, eval_iter=1)
    assert train_losses[-1] < train_losses[0] / 4
    answered = generate_responses(model, copy.deepcopy(DATA), tiktoken_gpt2, "cpu",
                                  max_new_tokens=5, progress=False)
    assert answered[0]["model_response"].startswith("Blue")


def test_a_dpo_step_runs_on_a_qwen3_style_policy(tiktoken_gpt2):
    pairs = [{**entry, "chosen": entry["output"], "rejected": "I do not know."}
             for entry in DATA]
    loader = DataLoader(PreferenceDataset(pairs, tiktoken_gpt2), batch_size=3,
                        collate_fn=partial(preference_collate_fn, allowed_max_length=64))
    policy, reference = tiny_qwen3(vocab_size=50257, context_length=64), tiny_qwen3(
        vocab_size=50257, context_length=64)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-2)
    batch = next(iter(loader))
    losses = []
    for _ in range(5):
        loss = dpo_loss_batch(batch, policy, reference)[0]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert abs(losses[0] - math.log(2)) < 1e-5  # the policy starts as the reference
    assert losses[-1] < losses[0]
