"""Tests of dpo.py (beyond_3_dpo.ipynb): preference pairs, the DPO loss and its evaluation."""

import math

import pytest
import torch
from torch import nn

from ch07_instructions.dpo import (
    PreferenceDataset,
    dpo_loss,
    dpo_loss_batch,
    evaluate_preferences,
    preference_collate_fn,
)
from ch07_instructions.instructions import (
    RESPONSE_HEADER,
    format_input,
)


class LetterTokenizer:
    """One id per character: easy to count, and decode(encode(t)) == t."""

    def encode(self, text, allowed_special=None):
        return [ord(c) for c in text]

    def decode(self, ids):
        return "".join(chr(i) for i in ids)



def test_dpo_loss_on_a_hand_computed_pair():
    loss, chosen, rejected = dpo_loss(torch.tensor([-1.0]), torch.tensor([-3.0]),
                                      torch.tensor([-2.0]), torch.tensor([-2.0]), beta=0.5)
    # rewards 0.5 * (-1 + 2) = 0.5 and 0.5 * (-3 + 2) = -0.5; margin 1
    assert chosen.item() == pytest.approx(0.5) and rejected.item() == pytest.approx(-0.5)
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-1)))


def test_dpo_loss_matches_the_formula_elementwise():
    torch.manual_seed(1)
    pc, pr, rc, rr = (torch.randn(6) * 5 for _ in range(4))
    beta = 0.3
    loss, chosen, rejected = dpo_loss(pc, pr, rc, rr, beta=beta)
    per_pair = [math.log(1 + math.exp(-beta * ((a - c) - (b - d))))
                for a, b, c, d in zip(pc.tolist(), pr.tolist(), rc.tolist(), rr.tolist())]
    assert loss.item() == pytest.approx(sum(per_pair) / 6, rel=1e-5)
    assert torch.allclose(chosen, beta * (pc - rc)) and torch.allclose(rejected, beta * (pr - rr))
    assert not chosen.requires_grad


def test_dpo_loss_is_log_2_when_the_policy_is_the_reference_and_its_gradient_favours_chosen():
    chosen = torch.tensor([-4.0, -9.0], requires_grad=True)
    rejected = torch.tensor([-5.0, -2.0], requires_grad=True)
    loss, _, _ = dpo_loss(chosen, rejected, chosen.detach(), rejected.detach(), beta=0.1)
    assert loss.item() == pytest.approx(math.log(2))
    loss.backward()
    assert (chosen.grad < 0).all() and (rejected.grad > 0).all()  # descent raises chosen


def test_preference_batches_count_only_response_tokens():
    entry = {"instruction": "Add.", "input": "", "output": "3", "chosen": "3", "rejected": "x y"}
    dataset = PreferenceDataset([entry], LetterTokenizer())
    prompt_length = len(format_input(entry) + RESPONSE_HEADER)
    assert dataset[0]["chosen"][1] == dataset[0]["rejected"][1] == prompt_length
    batch = preference_collate_fn([dataset[0]], pad_token_id=0)
    for kind, response in [("chosen", "3"), ("rejected", "x y")]:
        inputs, targets = batch[kind]
        assert [t for t in targets[0].tolist() if t != -100] == [ord(c) for c in response] + [0]
        assert inputs.shape == targets.shape


class BigramModel(nn.Module):
    """Logits that depend only on the current token: a tiny trainable language model."""

    def __init__(self, vocab=8):
        super().__init__()
        self.table = nn.Embedding(vocab, vocab)

    def forward(self, ids):
        return self.table(ids)


def test_dpo_training_raises_the_margin_and_evaluation_reports_it():
    torch.manual_seed(2)
    policy = BigramModel()
    reference = BigramModel()
    reference.load_state_dict(policy.state_dict())
    items = [{"chosen": ([1, 2, 3], 1), "rejected": ([1, 4, 5], 1)}] * 4
    batch = preference_collate_fn(items, pad_token_id=0)
    before = evaluate_preferences([batch], policy, reference)
    assert before["margin"] == 0 and before["loss"] == pytest.approx(math.log(2))
    optimizer = torch.optim.SGD(policy.parameters(), lr=1.0)
    for _ in range(20):
        loss, _, _ = dpo_loss_batch(batch, policy, reference, beta=0.5)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = evaluate_preferences([batch], policy, reference, beta=0.5)
    assert after["margin"] > 0 and after["accuracy"] == 1 and after["loss"] < math.log(2)
    assert all(p.grad is None for p in reference.parameters())
