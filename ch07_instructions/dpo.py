# Generated from ch07_instructions/beyond_3_dpo.ipynb
# by `python -m shared.tooling.notebooks export`. Do not edit: change the notebook's cells
# marked `#| export dpo`, then export again.
# Each `# %%` line names the cell the code below it came from.

# %% beyond_3_dpo.ipynb cell 6, Batching pairs: only response tokens count

"""Chapter 7, beyond the book: preference tuning with DPO (beyond_3_dpo). Pairs of a chosen and
a rejected response, batched as the lesson's collate function batches a response; the DPO loss;
its evaluation on held-out pairs."""

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ch07_instructions.evaluation import sequence_logprobs
from ch07_instructions.instructions import (
    InstructionDataset,
    custom_collate_fn,
)
from shared.checks import check


# %% beyond_3_dpo.ipynb cell 7, Batching pairs: only response tokens count

class PreferenceDataset(Dataset):
    """Token ids of prompt + chosen and prompt + rejected response for each entry.

    Items are {"chosen": (ids, prompt_length), "rejected": (ids, prompt_length)}: the form in
    which custom_collate_fn ignores the prompt in the targets. A pair of two equal answers is
    refused, unless keep_identical=True, and so is an empty answer.
    """

    def __init__(self, data: list, tokenizer, *, keep_identical: bool = False):
        for i, entry in enumerate(data):
            # an identical pair's loss is log 2 for any model (without dropout): no gradient
            check(keep_identical or entry["chosen"] != entry["rejected"], f"entry {i}: 'chosen' "
                  f"and 'rejected' are the same answer, from which DPO learns nothing; leave it "
                  f"out, or pass keep_identical=True")
            for kind in ("chosen", "rejected"):  # InstructionDataset's message would say 'output'
                check(entry[kind].strip(), f"entry {i}: {kind!r} is empty")
        self.data = data
        # each side as the lesson's dataset encodes a response: (ids, prompt_length)
        sides = {kind: InstructionDataset([{**entry, "output": entry[kind]} for entry in data],
                                          tokenizer, mask_instruction=True)
                 for kind in ("chosen", "rejected")}
        self.items = [{kind: side[index] for kind, side in sides.items()}
                      for index in range(len(data))]

    def __getitem__(self, index):
        return self.items[index]

    def __len__(self):
        return len(self.items)


def preference_collate_fn(batch, pad_token_id=50256, allowed_max_length=None, device="cpu"):
    """{"chosen": (inputs, targets), "rejected": (inputs, targets)} for a batch of pairs.

    Only response tokens (and each response's end-of-text) are targets; prompt and padding
    are -100, exactly as custom_collate_fn does for items with a prompt length, which checks
    each side and its arguments.
    """
    return {kind: custom_collate_fn([item[kind] for item in batch], pad_token_id=pad_token_id,
                                    allowed_max_length=allowed_max_length, device=device)
            for kind in ("chosen", "rejected")}


# %% beyond_3_dpo.ipynb cell 10, The DPO loss, derived

def dpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps,
             beta: float = 0.1):
    """The DPO loss, averaged over pairs, and each pair's implicit rewards.

    Arguments are per-pair sequence log-probabilities (shape (batch,)) under the trained
    policy and the frozen reference. Returns (loss, chosen_rewards, rejected_rewards); the
    rewards, beta * (log pi - log pi_ref), are detached: they are for monitoring.
    """
    # beta <= 0 would ignore or invert the preferences
    check(0 < beta < float("inf"), lambda: f"beta must be positive and finite, got {beta!r}")
    chosen_rewards = beta * (policy_chosen_logps - ref_chosen_logps)
    rejected_rewards = beta * (policy_rejected_logps - ref_rejected_logps)
    loss = -F.logsigmoid(chosen_rewards - rejected_rewards).mean()
    return loss, chosen_rewards.detach(), rejected_rewards.detach()


def dpo_loss_batch(batch: dict, policy, reference, beta: float = 0.1):
    """dpo_loss for one batch from preference_collate_fn; the reference gets no gradient.
    dpo_loss checks beta."""
    # a sequence without targets has log-probability 0 under both models: no signal
    no_target = [f"{kind} sequence {i}" for kind in ("chosen", "rejected")  # one sync per side
                 for i in (batch[kind][1] == -100).all(dim=-1).nonzero().flatten().tolist()]
    check(not no_target, lambda: f"{no_target[0]} of the batch has no target (all -100)")
    pairs = [len(batch[kind][1]) for kind in ("chosen", "rejected")]
    check(pairs[0] == pairs[1], lambda: f"batch has {pairs[0]} chosen and {pairs[1]} rejected")
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
