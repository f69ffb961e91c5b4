"""Chapter 6's finetuning code, unchanged, on a Qwen3-style model (section 4.8's
ModernGPTModel): a new head, training with train_classifier_simple, classify_review."""

import pandas as pd
import torch
from torch.utils.data import DataLoader

from conftest import tiny_qwen3
from shared import (
    SpamDataset,
    add_classification_head,
    calc_accuracy_loader,
    classify_review,
    train_classifier_simple,
)


SPAM = ["WIN a FREE prize now", "FREE cash, call now", "Claim your FREE prize"]
HAM = ["see you at lunch", "are we still on for tonight?", "thanks, talk later"]


def test_a_qwen3_style_model_learns_to_classify_with_chapter_6s_code(tmp_path, tiktoken_gpt2):
    csv = tmp_path / "train.csv"
    pd.DataFrame({"Label": [1] * 3 + [0] * 3, "Text": SPAM + HAM}).to_csv(csv, index=False)
    dataset = SpamDataset(csv, tiktoken_gpt2)
    loader = DataLoader(dataset, batch_size=3, shuffle=True,
                        generator=torch.Generator().manual_seed(0))
    model = add_classification_head(tiny_qwen3(vocab_size=50257, context_length=16))
    assert model.cfg["num_classes"] == 2 and model.out_head.out_features == 2
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    torch.manual_seed(0)
    train_losses, _, train_accs, _, seen = train_classifier_simple(
        model, loader, loader, optimizer, "cpu", num_epochs=15, eval_freq=2, eval_iter=2)
    assert seen == 15 * len(dataset)
    assert train_losses[-1] < train_losses[0] / 4
    assert calc_accuracy_loader(loader, model, "cpu") == 1.0
    assert classify_review(SPAM[0], model, tiktoken_gpt2, "cpu", max_length=20) == "spam"
    assert classify_review(HAM[0], model, tiktoken_gpt2, "cpu") == "not spam"
