# Generated from ch06_classification/beyond_1_checks.ipynb
# by `python -m shared.tooling.notebooks export`. Do not edit: change the notebook's cells
# marked `#| export final_versions`, then export again.
# Each `# %%` line names the cell the code below it came from.

# %% beyond_1_checks.ipynb cell 2, Chapter 6, beyond the book: the final versions of the chapter...

"""Chapter 6, beyond the book: the course's final versions of the chapter's functions, with
their checks, and `lesson_setup`, the lesson's data and finetuned classifier."""

import pandas as pd
import torch
from torch import nn
from torch.utils.data import Dataset

from shared import check, context_length_of, fetch


# %% beyond_1_checks.ipynb cell 5, The exported `random_split`

def random_split(df: pd.DataFrame, train_frac: float, validation_frac: float, *, seed: int = 123):
    """Shuffle (seeded), then cut into train / validation / test; test gets the rest."""
    check(0 < train_frac and 0 <= validation_frac and train_frac + validation_frac < 1,
          "need 0 < train_frac, 0 <= validation_frac, and their sum below 1")
    df = df.sample(frac=1, random_state=seed).reset_index(drop=True)
    train_end = int(len(df) * train_frac)
    validation_end = train_end + int(len(df) * validation_frac)
    return df[:train_end], df[train_end:validation_end], df[validation_end:]


# %% beyond_1_checks.ipynb cell 7, The book's downloader, and its checks

import os
import shutil
import zipfile
from pathlib import Path

from shared import DATASETS, download_file, write_atomically


def download_and_unzip_spam_data(url, zip_path, extracted_path, data_file_path):
    """The book's downloader, with its parameters: puts the collection at `data_file_path`.
    The course's own zip (UCI's URL or its backup) comes through `fetch`, from data/ or the
    mirror, checksum verified; any other `url` is downloaded to `zip_path` as the book does,
    and its SMSSpamCollection alone unpacked. Nothing is overwritten, nor left half-written."""
    if _spam_data_is_there(url, zip_path, extracted_path, data_file_path):  # checks: below
        return
    Path(extracted_path).mkdir(parents=True, exist_ok=True)
    if url in DATASETS["sms-spam-collection"].urls:  # the course's copy, checksum verified
        source = fetch("sms-spam-collection")
        write_atomically(data_file_path, lambda tmp: shutil.copyfile(source, tmp))
    else:
        download_file(url, zip_path)
        _unpack_spam_collection(url, zip_path, data_file_path)


def _spam_data_is_there(url, zip_path, extracted_path, data_file_path) -> bool:
    """True, said so, when the collection is there already. Refused: a folder in its place
    (extracted_path itself, say), and a zip_path that a download would overwrite."""
    same = Path(data_file_path) == Path(extracted_path)  # a folder, made below if not there
    check(not same and not Path(data_file_path).is_dir(), f"data_file_path {data_file_path} is "
          f"{'extracted_path, ' if same else ''}a folder; give the file to write, such as "
          "extracted_path / 'SMSSpamCollection.tsv'")
    if Path(data_file_path).exists():
        print(f"{data_file_path} already exists: nothing to download")
        return True
    check(url in DATASETS["sms-spam-collection"].urls or not Path(zip_path).exists(),
          f"zip_path {zip_path} is there already: remove it, or choose another zip_path "
          "for the download")
    return False


def _unpack_spam_collection(url, zip_path, data_file_path):
    """Write the zip's SMSSpamCollection to data_file_path, whole or not at all."""
    try:  # on any failure the download goes too, so that a next call starts afresh
        with zipfile.ZipFile(zip_path) as archive:
            collection = archive.read("SMSSpamCollection")
        write_atomically(data_file_path, lambda tmp: tmp.write_bytes(collection))
    except (zipfile.BadZipFile, KeyError):
        os.remove(zip_path)
        raise ValueError(f"{zip_path}, downloaded from {url}, is not a zip archive holding "
                         "SMSSpamCollection; removed it") from None
    except BaseException:
        os.remove(zip_path)
        raise


# %% beyond_1_checks.ipynb cell 11, The dataset's checks

class SpamDataset(Dataset):
    """Token ids of each text, truncated and padded to `max_length`, with integer labels.

    max_length=None uses the longest text in this file; pass the training set's value to the
    validation and test sets. Longer texts keep their first max_length tokens. The file is
    checked first: UTF-8, columns Label and Text, no empty text, labels 0 to num_classes - 1.
    """

    def __init__(self, csv_file, tokenizer, max_length=None, pad_token_id=50256, *, num_classes=2):
        data = _read_spam_csv(csv_file, max_length, num_classes)  # checks: list above, code below
        encoded = [_encode_as_text(tokenizer, text, f"{csv_file}: the Text of row {row} "
                                   f"(line {row + 2})") for row, text in enumerate(data["Text"])]
        self.max_length = max_length or max(len(ids) for ids in encoded)
        self.encoded_texts = [ids[:self.max_length] + [pad_token_id] * (self.max_length - len(ids))
                              for ids in encoded]
        self.labels = data["Label"].astype(int).tolist()

    def __getitem__(self, index):
        return torch.tensor(self.encoded_texts[index]), torch.tensor(self.labels[index])

    def __len__(self):
        return len(self.labels)


# %% beyond_1_checks.ipynb cell 12, The dataset's checks

# SpamDataset's checks: the arguments and the file, before anything is tokenised, and a
# special token's spelling kept as text.
from shared import check_count


def _read_spam_csv(csv_file, max_length, num_classes) -> pd.DataFrame:
    """The file's rows, once the arguments and the rows are checked."""
    if max_length is not None:
        check_count("max_length", max_length, 1)
    check_count("num_classes", num_classes, 2, "an integer of at least 2")
    check(not isinstance(csv_file, pd.DataFrame), "csv_file must be a CSV file, got a "
          "DataFrame: save it first, df.to_csv(path, index=False)", TypeError)
    try:  # every Text stays a string (a message may be "NA" or "null"); only an empty
        # Label is missing, so that the check below can name its row
        data = pd.read_csv(csv_file, dtype={"Text": str}, keep_default_na=False,
                           na_values={"Label": [""]})
    except (ValueError, IsADirectoryError) as error:  # pandas' parser errors, a
        # UnicodeDecodeError, and a folder given for the file
        raise ValueError(f"{csv_file} is not a UTF-8 CSV file ({str(error).strip()})") from None
    _check_spam_frame(data, csv_file, num_classes)
    return data


def _check_spam_frame(data, csv_file, num_classes):
    """Name the first bad row: an empty text (padding alone) or a label that is no class.
    One label that is not a number makes pandas read the column as text: hence to_numeric."""
    check({"Label", "Text"} <= set(data.columns),  # :.80 cuts a binary file's long "header"
          f"{csv_file} needs the columns Label and Text, but has {list(data.columns)!r:.80}")
    check(not data.empty, f"{csv_file} has no messages")
    values = pd.to_numeric(data["Label"], errors="coerce")  # nan where not a number
    # class names, when no label is a number, sorted: a file's first row decides nothing
    names = sorted(set(data["Label"].dropna()), key=str)
    hint = "" if values.notna().any() or len(names) > 20 else (
        f'; map each label to a class index first: df["Label"] = df["Label"].map('
        f"{dict(zip(names, range(len(names))))}), with num_classes={len(names)}, and name the "
        f"classes in that order: classify_review(..., labels={names})")
    for row, (text, label, value) in enumerate(zip(data["Text"], data["Label"], values)):
        where = f"of row {row} (line {row + 2})"
        check(isinstance(text, str) and text, f"{csv_file}: the Text {where} is empty or "
              f"missing, got {text!r}; every message needs text to classify")
        check(float(value).is_integer() and 0 <= value < num_classes, f"{csv_file}: the Label "
              f"{where} must be a class index in 0..{num_classes - 1} (num_classes={num_classes}), "
              f"got {label!r}{hint}")


def _encode_as_text(tokenizer, text, where="text"):
    """Token ids of `text`, in which a special token's spelling ("<|endoftext|>") must not
    read as that token (the padding id, say). tiktoken encodes it as text, as in chapter 7.
    Chapter 2's BPETokenizer and chapter 5's HFTokenizer cannot keep it as text: a text
    holding one of their special tokens is refused, naming `where` (a row of the file, say).
    Another tokenizer's encode is used as it is."""
    if hasattr(tokenizer, "special_tokens_set"):  # tiktoken, which refuses it by default
        return tokenizer.encode(text, disallowed_special=())
    held = [token for token in _special_tokens_of(tokenizer) if token in text]
    check(not held, lambda: f"{where} holds {held[0]!r}, which this tokenizer reads as a "
          "special token, not as text; remove it, or use a tiktoken encoding, which keeps it "
          "as text")
    return tokenizer.encode(text)


def _special_tokens_of(tokenizer) -> list:
    """The special tokens of a BPETokenizer, or of an HFTokenizer's tokenizers.Tokenizer."""
    if hasattr(tokenizer, "special_tokens"):
        return list(tokenizer.special_tokens)
    added = getattr(getattr(tokenizer, "tokenizer", None), "get_added_tokens_decoder", dict)()
    return [token.content for token in added.values() if token.special]


# %% beyond_1_checks.ipynb cell 16, Freezing layers, and the classification head

def train_only_last_block(model):
    """Freeze all parameters except the last Transformer block, final norm and output head."""
    check(all(hasattr(model, n) for n in ("trf_blocks", "final_norm", "out_head")), "model must "
          f"be a GPT (trf_blocks, final_norm, out_head), not {type(model).__name__}", TypeError)
    model.requires_grad_(False)  # requires_grad = False on every parameter
    for module in (model.trf_blocks[-1], model.final_norm, model.out_head):
        module.requires_grad_(True)
    return model


def count_trainable_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# %% beyond_1_checks.ipynb cell 18, Freezing layers, and the classification head

def add_classification_head(model, num_classes: int = 2):
    """Replace the language-model head by a fresh linear layer to `num_classes` outputs, and
    record them in cfg["num_classes"] (the book's GPTModel has no cfg). A classification head
    is never replaced: a classifier's head, or one wrapped by LoRA, is refused."""
    check_count("num_classes", num_classes, 2, "an integer of at least 2")
    head = getattr(model, "out_head", None)
    check(isinstance(head, nn.Linear), f"model.out_head must be the language model's "
          f"nn.Linear head, got {type(head).__name__} (add the head before LoRA)", TypeError)
    check(head.out_features == model.tok_emb.num_embeddings, f"model already has a classification "
          f"head ({head.out_features} outputs): to start again, build or load the model again")
    new_head = nn.Linear(head.in_features, num_classes).to(head.weight.device)
    if hasattr(model, "cfg"):  # a new dict: the caller's configuration stays as it was
        model.cfg = {**model.cfg, "num_classes": num_classes}
    model.out_head = new_head  # last, so that a failure above leaves the language model
    return model


# %% beyond_1_checks.ipynb cell 21, Loss and accuracy

import contextlib
import itertools


def _last_token_logits(model, input_batch):
    logits = model(input_batch[:, :context_length_of(model)])[:, -1, :]
    vocab_size = getattr(getattr(model, "tok_emb", None), "num_embeddings", None)
    check(logits.shape[-1] != vocab_size, lambda: f"model has no classification head: "
          f"{vocab_size:,} outputs, one per token; call add_classification_head(model) first")
    return logits


@contextlib.contextmanager
def _evaluating(model):
    """Evaluation mode, without gradients; afterwards each module is back in its own mode."""
    modes = [(module, module.training) for module in model.modules()]
    try:
        with torch.no_grad():
            yield model.eval()
    finally:
        for module, training in modes:
            module.training = training


def _check_loader(data_loader, num_batches=None, name="data_loader"):
    """An accuracy or a loss over no examples means nothing: refuse it, rather than divide by 0."""
    if num_batches is not None:
        check_count("num_batches", num_batches, 1)
    check(len(data_loader) > 0, f"{name} has no batches (an empty dataset, or fewer examples "
          f"than one batch with drop_last=True)")


def calc_accuracy_loader(data_loader, model, device, num_batches=None) -> float:
    """Share of correctly classified examples in the first `num_batches` batches (all)."""
    _check_loader(data_loader, num_batches)
    correct, total = 0, 0
    num_batches = len(data_loader) if num_batches is None else min(num_batches, len(data_loader))
    with _evaluating(model):
        for input_batch, target_batch in itertools.islice(data_loader, num_batches):
            predicted = _last_token_logits(model, input_batch.to(device)).argmax(dim=-1)
            correct += (predicted == target_batch.to(device)).sum().item()
            total += len(target_batch)
    return correct / total


def calc_loss_batch(input_batch, target_batch, model, device) -> torch.Tensor:
    """The classification loss: cross-entropy of the last position's class logits."""
    logits = _last_token_logits(model, input_batch.to(device))
    return nn.functional.cross_entropy(logits, target_batch.to(device))


def calc_loss_loader(data_loader, model, device, num_batches=None) -> float:
    """Mean classification loss over the first `num_batches` batches (all by default)."""
    _check_loader(data_loader, num_batches)
    num_batches = len(data_loader) if num_batches is None else min(num_batches, len(data_loader))
    batches = itertools.islice(data_loader, num_batches)
    return sum(calc_loss_batch(x, y, model, device).item() for x, y in batches) / num_batches


def evaluate_model(model, train_loader, val_loader, device, eval_iter):
    """Training and validation classification loss on `eval_iter` batches each, no dropout."""
    with _evaluating(model):
        return (calc_loss_loader(train_loader, model, device, num_batches=eval_iter),
                calc_loss_loader(val_loader, model, device, num_batches=eval_iter))


# %% beyond_1_checks.ipynb cell 26, The training loop

from shared import train_model_simple_hooked as train_model_simple


def train_classifier_simple(model, train_loader, val_loader, optimizer, device, num_epochs,
                            eval_freq, eval_iter):
    """Finetune a classifier with chapter 5's train_model_simple; returns train/val losses
    (every eval_freq steps), train/val accuracies (every epoch, on eval_iter batches) and the
    number of examples trained on."""
    _check_loader(train_loader, name="train_loader")  # now, not after an epoch of training
    _check_loader(val_loader, eval_iter, name="val_loader")
    train_accs, val_accs, examples_seen = [], [], 0

    def count_examples(input_batch):
        nonlocal examples_seen
        examples_seen += len(input_batch)
        return len(input_batch)

    def measure_accuracy(epoch):
        train_accs.append(calc_accuracy_loader(train_loader, model, device, eval_iter))
        val_accs.append(calc_accuracy_loader(val_loader, model, device, eval_iter))
        return f"Training accuracy: {train_accs[-1]:.2%} | Validation accuracy: {val_accs[-1]:.2%}"

    train_losses, val_losses, _ = train_model_simple(
        model, train_loader, val_loader, optimizer, device, num_epochs, eval_freq, eval_iter,
        loss_batch=calc_loss_batch, count_seen=count_examples, after_epoch=measure_accuracy)
    return train_losses, val_losses, train_accs, val_accs, examples_seen


# %% beyond_1_checks.ipynb cell 28, The lesson's classifier, for the companion notebooks

import contextlib
import io
import tempfile
from types import SimpleNamespace

import tiktoken
from torch.utils.data import DataLoader

from shared import (
    GPTModel,
    create_balanced_dataset,
    get_device,
    gpt2_config,
    load_gpt2,
    load_sms_spam,
    set_seed,
)


def lesson_setup(classifier_path="review_classifier.pth") -> SimpleNamespace:
    """The lesson's data, settings and finetuned classifier (`model`), in its profile. The
    classifier is read from classifier_path, which the lesson's 6.8 writes; when the file
    is absent it is trained as the lesson's 6.7 trains it, quietly, and saved there."""
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
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
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


# %% beyond_1_checks.ipynb cell 33, The final classify_review, and more than two classes

def classify_review(text, model, tokenizer, device, max_length=None, pad_token_id=50256, *,
                    labels=("not spam", "spam")):
    """Name of the predicted class of `text` (padded or truncated to max_length and the
    context); `labels` names classes 0, 1, ..., or None for the index. Pass the training
    dataset's max_length, as the book does: a model trained on padded inputs may answer
    differently without the padding, and nothing says so."""
    check(isinstance(text, str), f"text must be a string, got {type(text).__name__}", TypeError)
    check(not isinstance(labels, str), f"labels must be a list of class names, one per class, "
          f"or None, got the string {labels!r}", TypeError)
    if max_length is not None:
        check_count("max_length", max_length, 1)
    ids = _encode_as_text(tokenizer, text)
    check(len(ids) > 0, "text is empty: there is nothing to classify")  # padding alone is not
    max_length = min(max_length or len(ids), context_length_of(model))
    ids = ids[:max_length] + [pad_token_id] * (max_length - len(ids))
    with _evaluating(model):
        logits = _last_token_logits(model, torch.tensor(ids, device=device).unsqueeze(0))
    check(labels is None or len(labels) == logits.shape[-1], lambda: f"the model's head has "
          f"{logits.shape[-1]} classes but labels has {len(labels)} ({', '.join(map(repr, labels))}"
          "): pass labels= with one name per class, or labels=None for the class index")
    index = logits.argmax(dim=-1).item()
    return index if labels is None else labels[index]


__all__ = [
    'random_split',
    'download_and_unzip_spam_data',
    'SpamDataset',
    'train_only_last_block',
    'count_trainable_parameters',
    'add_classification_head',
    'calc_accuracy_loader',
    'calc_loss_batch',
    'calc_loss_loader',
    'evaluate_model',
    'train_classifier_simple',
    'lesson_setup',
    'classify_review',
]
