# Generated from ch06_classification/beyond_2_mistakes.ipynb
# by `python -m shared.tooling.notebooks export`. Do not edit: change the notebook's cells
# marked `#| export mistakes`, then export again.
# Each `# %%` line names the cell the code below it came from.

# %% beyond_2_mistakes.ipynb cell 2, Chapter 6, beyond the book: how good is the spam classifier?

"""Chapter 6, beyond the book: the lesson's data and finetuned classifier for the companion
notebooks, the prompted model's yes/no answer and the finetuned classifier's predictions, to
compare and to count mistakes."""

import torch

from ch05_pretraining.pretraining import context_length_of, text_to_token_ids


def prompted_answer(model, text, tokenizer, device) -> int:
    """1 ("yes, spam") if the language model's next token after the question is more likely
    " yes" than " no", else 0."""
    yes, no = tokenizer.encode(" yes")[0], tokenizer.encode(" no")[0]
    # The question comes after the message, so a crop to the context keeps the question.
    prompt = f"Message: {text}\nIs this message spam? Answer yes or no:"
    ids = text_to_token_ids(prompt, tokenizer)[:, -context_length_of(model):].to(device)
    with torch.no_grad():
        logits = model(ids)[0, -1]
    return int(logits[yes] > logits[no])


def predictions(model, loader, device) -> torch.Tensor:
    """The predicted class of every example of `loader`, in order, on the CPU."""
    model.eval()  # below: cut to the model's context, as classify_review does
    with torch.no_grad():
        return torch.cat([model(x.to(device)[:, :context_length_of(model)])[:, -1].argmax(-1).cpu()
                          for x, _ in loader])


# %% beyond_2_mistakes.ipynb cell 4, The lesson's classifier

import contextlib
import io
import os
import tempfile
from pathlib import Path
from types import SimpleNamespace

import tiktoken
from torch.utils.data import DataLoader

from ch04_gpt_model.final_model import (
    GPTModel,
    gpt2_config,
)
from ch05_pretraining.gpt2_weights import load_gpt2
from ch06_classification.classification import (
    SpamDataset,
    add_classification_head,
    create_balanced_dataset,
    load_sms_spam,
    random_split,
    train_classifier_simple,
    train_only_last_block,
)
from shared.utils import (
    get_device,
    set_seed,
    write_atomically,
)


def lesson_setup(classifier_path="review_classifier.pth") -> SimpleNamespace:
    """The lesson's data, settings and finetuned classifier, in its profile (LLM_COURSE_PROFILE):
    the splits, datasets and loaders of 6.2 and 6.3, the training settings of 6.4,
    build_language_model (6.4's model, before its head is replaced), build_classifier (6.8's)
    and `model`, the classifier finetuned in 6.7.

    `model`'s weights are read from classifier_path, which the lesson's 6.8 writes, whichever
    run wrote it (a quick run's too: delete the file to retrain; the other profile's fails to
    load). When the file is absent the classifier is trained with 6.7's settings, seed and
    steps, quietly, and saved there, so a companion never trains what the lesson saved. In the
    default profile that is the lesson's classifier; in the book profile the lesson draws its
    new head from another random state than build_classifier does, so a classifier trained
    here starts from another head and ends with other numbers. The splits are made again (they
    take a second) rather than read from the lesson's CSV files, which the course's quick test
    run rewrites."""
    profile = os.environ.get("LLM_COURSE_PROFILE", "default")
    quick = os.environ.get("LLM_COURSE_QUICK") == "1"  # the course's tests
    device = get_device() if profile == "book" else torch.device("cpu")  # as in 6.4
    if profile == "book":
        gpt2_source = os.environ.get("LLM_COURSE_GPT2_CHECKPOINT") or "gpt2-small (124M)"
        training = {"num_epochs": 5, "lr": 5e-5, "weight_decay": 0.1, "eval_freq": 50,
                    "eval_iter": 5}
    else:
        config = gpt2_config(context_length=128, emb_dim=128, n_heads=4, n_layers=2,
                             drop_rate=0.1)
        training = {"num_epochs": 3, "lr": 5e-4, "weight_decay": 0.1, "eval_freq": 50,
                    "eval_iter": 5}

    def build_language_model():  # 6.4's model, seeded
        set_seed(123)
        model = load_gpt2(gpt2_source, drop_rate=0.0) if profile == "book" else GPTModel(config)
        return model.to(device)

    def build_classifier():  # 6.8's
        return add_classification_head(build_language_model())

    # 6.2 and 6.3: the same balanced data, split, tokenised and padded
    tokenizer = tiktoken.get_encoding("gpt2")
    balanced = create_balanced_dataset(load_sms_spam())
    balanced["Label"] = balanced["Label"].map({"ham": 0, "spam": 1})
    splits = dict(zip(("train", "validation", "test"), random_split(balanced, 0.7, 0.1)))
    if quick:  # as the lesson's quick run
        splits = {name: part[:size] for (name, part), size in zip(splits.items(), (48, 16, 16))}
    with tempfile.TemporaryDirectory() as folder:
        for name, part in splits.items():
            part.to_csv(Path(folder) / f"{name}.csv", index=None)
        train_dataset = SpamDataset(Path(folder) / "train.csv", tokenizer)
        val_dataset, test_dataset = (
            SpamDataset(Path(folder) / f"{name}.csv", tokenizer, train_dataset.max_length)
            for name in ("validation", "test"))
    batch_size = 8
    train_loader = DataLoader(train_dataset, batch_size=batch_size, shuffle=True, drop_last=True)
    val_loader = DataLoader(val_dataset, batch_size=batch_size)
    test_loader = DataLoader(test_dataset, batch_size=batch_size)

    # 6.5 to 6.8: the finetuned classifier, read back, or trained as 6.7 trains it
    model = build_classifier()
    if profile == "book":
        train_only_last_block(model)
    if Path(classifier_path).exists():
        model.load_state_dict(torch.load(classifier_path, map_location=device,
                                         weights_only=True))
    else:
        set_seed(123)
        optimizer = torch.optim.AdamW((p for p in model.parameters() if p.requires_grad),
                                      lr=training["lr"], weight_decay=training["weight_decay"])
        with contextlib.redirect_stdout(io.StringIO()):
            train_classifier_simple(model, train_loader, val_loader, optimizer, device,
                                    training["num_epochs"], training["eval_freq"],
                                    training["eval_iter"])
        write_atomically(classifier_path, lambda tmp: torch.save(model.state_dict(), tmp))
    return SimpleNamespace(
        profile=profile, device=device, tokenizer=tokenizer, training=training,
        train_df=splits["train"], validation_df=splits["validation"], test_df=splits["test"],
        train_dataset=train_dataset, val_dataset=val_dataset, test_dataset=test_dataset,
        batch_size=batch_size, train_loader=train_loader, val_loader=val_loader,
        test_loader=test_loader, build_language_model=build_language_model,
        build_classifier=build_classifier, model=model.eval())


__all__ = [
    'prompted_answer',
    'predictions',
    'lesson_setup',
]
