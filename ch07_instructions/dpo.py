# Generated from ch07_instructions/beyond_3_dpo.ipynb
# by `python -m shared.notebooks export`. Do not edit: change the notebook's cells
# marked `#| export dpo`, then export again.
# Each `# %%` line names the cell the code below it came from.

# %% beyond_3_dpo.ipynb cell 6, Batching pairs: only response tokens count

"""Chapter 7, beyond the book: preference tuning with DPO (beyond_3_dpo). Pairs of a chosen and
a rejected response, batched as the lesson's collate function batches a response; the DPO loss;
its evaluation on held-out pairs."""

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from shared import (
    InstructionDataset,
    check,
    check_count,
    check_entries,
    check_number,
    custom_collate_fn,
    sequence_logprobs,
)


# %% beyond_3_dpo.ipynb cell 7, Batching pairs: only response tokens count

class PreferenceDataset(Dataset):
    """Token ids of prompt + chosen and prompt + rejected response for each entry.

    Items are {"chosen": (ids, prompt_length), "rejected": (ids, prompt_length)}: the form in
    which custom_collate_fn ignores the prompt in the targets. A pair of two equal answers is
    refused, unless keep_identical=True.
    """

    def __init__(self, data: list, tokenizer, *, keep_identical: bool = False):
        check_entries(data, ("instruction", "chosen", "rejected"))
        # an identical pair's loss is log 2 for any model (without dropout): it gives no gradient
        for index, entry in enumerate(data):
            check(keep_identical or entry["chosen"] != entry["rejected"], f"entry {index}: "
                  f"'chosen' and 'rejected' are the same answer, from which DPO learns nothing; "
                  f"leave it out, or pass keep_identical=True")
        self.data = data
        sides = {}  # each side as the lesson's dataset encodes a response: (ids, prompt_length)
        for kind in ("chosen", "rejected"):
            try:
                sides[kind] = InstructionDataset([{**entry, "output": entry[kind]}
                                                  for entry in data], tokenizer,
                                                 mask_instruction=True)
            except ValueError as error:  # say which side of the pair
                raise ValueError(f"{kind}: {error}") from None
        self.items = [{kind: side[index] for kind, side in sides.items()}
                      for index in range(len(data))]

    def __getitem__(self, index):
        return self.items[index]

    def __len__(self):
        return len(self.items)


def preference_collate_fn(batch, pad_token_id=50256, allowed_max_length=None, device="cpu"):
    """{"chosen": (inputs, targets), "rejected": (inputs, targets)} for a batch of pairs.

    Only response tokens (and each response's end-of-text) are targets; prompt and padding
    are -100, exactly as custom_collate_fn does for items with a prompt length.
    """
    check(len(batch) > 0, "the batch is empty: there is nothing to collate")
    if allowed_max_length is not None:  # here, not as one side's error below
        check_count("allowed_max_length", allowed_max_length, 1, "a positive integer or None")
    for i, item in enumerate(batch):
        check(isinstance(item, dict) and {"chosen", "rejected"} <= item.keys(), f"item {i} of "
              f"the batch must be a dict with the keys 'chosen' and 'rejected', got "
              f"{type(item).__name__}")
    collated = {}
    for kind in ("chosen", "rejected"):
        try:
            collated[kind] = custom_collate_fn(
                [item[kind] for item in batch], pad_token_id=pad_token_id,
                allowed_max_length=allowed_max_length, device=device)
        except (TypeError, ValueError) as error:  # say which side of the pair
            raise type(error)(f"{kind}: {error}") from None
    return collated


# %% beyond_3_dpo.ipynb cell 10, The DPO loss, derived

def dpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps,
             beta: float = 0.1):
    """The DPO loss, averaged over pairs, and each pair's implicit rewards.

    Arguments are per-pair sequence log-probabilities (shape (batch,)) under the trained
    policy and the frozen reference. Returns (loss, chosen_rewards, rejected_rewards); the
    rewards, beta * (log pi - log pi_ref), are detached: they are for monitoring.
    """
    # beta <= 0 would ignore or invert the preferences
    check_number("beta", beta, "a positive number", low_open=True)
    chosen_rewards = beta * (policy_chosen_logps - ref_chosen_logps)
    rejected_rewards = beta * (policy_rejected_logps - ref_rejected_logps)
    loss = -F.logsigmoid(chosen_rewards - rejected_rewards).mean()
    return loss, chosen_rewards.detach(), rejected_rewards.detach()


def dpo_loss_batch(batch: dict, policy, reference, beta: float = 0.1):
    """dpo_loss for one batch from preference_collate_fn; the reference gets no gradient.
    dpo_loss checks beta."""
    for kind in ("chosen", "rejected"):
        check(isinstance(batch, dict) and kind in batch, f"batch must be a dict from "
              f"preference_collate_fn with the keys 'chosen' and 'rejected'; {kind!r} is missing")
        # a sequence without targets has log-probability 0 under both models: no signal
        no_target = ~(batch[kind][1] != -100).any(dim=1)
        check(not no_target.any(), f"{kind} sequence {no_target.int().argmax().item()} of the "
              f"batch has no target (all -100)")
    check(len(batch["chosen"][1]) == len(batch["rejected"][1]), f"batch has "
          f"{len(batch['chosen'][1])} chosen and {len(batch['rejected'][1])} rejected "
          f"sequences; they come in pairs")
    logps = {}
    for kind in ("chosen", "rejected"):
        inputs, targets = batch[kind]
        logps[kind] = sequence_logprobs(policy(inputs), targets)
        with torch.no_grad():
            logps[f"ref_{kind}"] = sequence_logprobs(reference(inputs), targets)
    return dpo_loss(logps["chosen"], logps["rejected"], logps["ref_chosen"],
                    logps["ref_rejected"], beta)


def evaluate_preferences(loader, policy, reference, beta: float = 0.1) -> dict:
    """Mean DPO loss, mean reward margin and preference accuracy (margin > 0) over `loader`."""
    was_training = policy.training
    policy.eval()
    losses, margins = [], []
    try:
        with torch.no_grad():
            for batch in loader:
                loss, chosen, rejected = dpo_loss_batch(batch, policy, reference, beta)
                losses.append(loss.item() * len(chosen))  # a batch's mean x its pairs
                margins.append(chosen - rejected)
    finally:  # even when a batch fails
        policy.train(was_training)
    check(len(margins) > 0, "loader gave no batches: there is nothing to evaluate")
    margins = torch.cat(margins)
    return {"loss": sum(losses) / len(margins), "margin": margins.mean().item(),
            "accuracy": (margins > 0).float().mean().item()}


__all__ = [
    'PreferenceDataset',
    'preference_collate_fn',
    'dpo_loss',
    'dpo_loss_batch',
    'evaluate_preferences',
]
