"""How beyond_3_lora.ipynb's LoRA learning rate was chosen: the default profile's LoRA run (rank 16,
alpha 16, 3 epochs, seed 123) at a few learning rates, judged on the whole validation set.

    python ch06_classification/lora_learning_rates.py [lr ...]

It trains as that notebook's `finetune` does (train_classifier_simple, 6.7's settings), on one
CPU thread with the notebook's pinned numerics, so its run at 1e-3 reproduces the notebook's
(whose test accuracy it prints too, for that comparison only: the choice uses validation).
"""

import contextlib
import io

import tiktoken
import torch
from torch.utils.data import DataLoader

from ch06_classification.classification import (
    SpamDataset,
    add_classification_head,
    calc_accuracy_loader,
    create_balanced_dataset,
    load_sms_spam,
    random_split,
    train_classifier_simple,
)
from ch06_classification.lora import replace_linear_with_lora
from shared import GPTModel, data_dir, gpt2_config, set_seed
from shared.tooling.command_line import CommandParser, number_arg, run_main
from shared.tooling.numerics import pin_numerics


def main(rates):
    pin_numerics()  # one thread, and the kernels the notebook's stored outputs use
    tokenizer = tiktoken.get_encoding("gpt2")
    balanced = create_balanced_dataset(load_sms_spam())
    balanced["Label"] = balanced["Label"].map({"ham": 0, "spam": 1})
    split_dir = data_dir() / "sms-spam-splits"
    split_dir.mkdir(parents=True, exist_ok=True)
    for name, part in zip(("train", "validation", "test"), random_split(balanced, 0.7, 0.1)):
        part.to_csv(split_dir / f"{name}.csv", index=None)
    train_set = SpamDataset(split_dir / "train.csv", tokenizer)
    val_set, test_set = (SpamDataset(split_dir / f"{name}.csv", tokenizer, train_set.max_length)
                         for name in ("validation", "test"))
    train_loader = DataLoader(train_set, batch_size=8, shuffle=True, drop_last=True)
    val_loader, test_loader = (DataLoader(s, batch_size=8) for s in (val_set, test_set))
    config = gpt2_config(context_length=128, emb_dim=128, n_heads=4, n_layers=2, drop_rate=0.1)
    for lr in rates:
        set_seed(123)  # as the notebook's build_classifier and finetune
        model = add_classification_head(GPTModel(config))
        for param in model.parameters():
            param.requires_grad = False
        replace_linear_with_lora(model, rank=16, alpha=16)
        set_seed(123)
        optimizer = torch.optim.AdamW((p for p in model.parameters() if p.requires_grad),
                                      lr=lr, weight_decay=0.1)
        with contextlib.redirect_stdout(io.StringIO()):  # its log: not needed here
            train_classifier_simple(model, train_loader, val_loader, optimizer, "cpu",
                                    num_epochs=3, eval_freq=50, eval_iter=5)
        print(f"lr {lr:g}: validation accuracy {calc_accuracy_loader(val_loader, model, 'cpu'):.1%}"
              f" (test {calc_accuracy_loader(test_loader, model, 'cpu'):.1%})", flush=True)


if __name__ == "__main__":
    parser = CommandParser(description=__doc__.splitlines()[0])
    parser.add_argument("lr", nargs="*", type=number_arg(float, 0),
                        default=[5e-4, 1e-3, 2e-3, 4e-3], help="learning rates to try")
    run_main(lambda: main(parser.parse_args().lr))
