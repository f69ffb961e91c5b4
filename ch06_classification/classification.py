# Generated from ch06_classification/classification.ipynb by `python -m shared.notebooks export`.
# Do not edit: change the notebook's cells marked `#| export`, then export again.
# Each `# %%` line names the cell the code below it came from.

# %% classification.ipynb cell 3, Chapter 6 — Finetuning for classification: a spam filter

"""Chapter 6: finetuning a GPT for text classification (spam detection), and LoRA."""

import pandas as pd
import torch
from torch import nn
from torch.utils.data import Dataset

from shared import fetch


# %% classification.ipynb cell 6, 6.2 Preparing the dataset

def load_sms_spam() -> pd.DataFrame:
    """The SMS Spam Collection as a DataFrame with columns Label ('ham'/'spam') and Text."""
    return pd.read_csv(fetch("sms-spam-collection"), sep="\t", header=None,
                       names=["Label", "Text"])


# %% classification.ipynb cell 10, Balancing the classes

def create_balanced_dataset(df: pd.DataFrame, *, seed: int = 123) -> pd.DataFrame:
    """Undersample every label to the size of the rarest one (a seeded random choice)."""
    smallest = df["Label"].value_counts().min()
    parts = [group.sample(smallest, random_state=seed) if len(group) > smallest else group
             for _, group in df.groupby("Label", sort=False)]
    return pd.concat(parts)


# %% classification.ipynb cell 17, The exported `random_split`

from shared import check


def random_split(df: pd.DataFrame, train_frac: float, validation_frac: float, *, seed: int = 123):
    """Shuffle (seeded), then cut into train / validation / test; test gets the rest."""
    check(0 < train_frac and 0 <= validation_frac and train_frac + validation_frac < 1,
          "need 0 < train_frac, 0 <= validation_frac, and their sum below 1")
    df = df.sample(frac=1, random_state=seed).reset_index(drop=True)
    train_end = int(len(df) * train_frac)
    validation_end = train_end + int(len(df) * validation_frac)
    return df[:train_end], df[train_end:validation_end], df[validation_end:]


# %% classification.ipynb cell 19, The book's downloader, and its checks

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
    if _spam_data_is_there(url, zip_path, data_file_path):  # the checks: below
        return
    Path(extracted_path).mkdir(parents=True, exist_ok=True)
    if url in DATASETS["sms-spam-collection"].urls:  # the course's copy, checksum verified
        source = fetch("sms-spam-collection")
        write_atomically(data_file_path, lambda tmp: shutil.copyfile(source, tmp))
    else:
        download_file(url, zip_path)
        _unpack_spam_collection(url, zip_path, data_file_path)


def _spam_data_is_there(url, zip_path, data_file_path) -> bool:
    """True, said so, when the collection is there already. Refused: a folder in its place,
    and a zip_path that a download would overwrite."""
    check(not Path(data_file_path).is_dir(), f"data_file_path {data_file_path} is a folder; "
          "give the file to write, such as extracted_path / 'SMSSpamCollection.tsv'")
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


# %% classification.ipynb cell 34, The dataset's checks (beyond the book)

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


# %% classification.ipynb cell 35, The dataset's checks (beyond the book)

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
        f"{ {name: index for index, name in enumerate(names)} }), with num_classes="
        f"{len(names)}, and name the classes in that order: classify_review(..., "
        f"labels={names})")
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


# %% classification.ipynb cell 86, Freezing layers, and the classification head

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


# %% classification.ipynb cell 88, Freezing layers, and the classification head

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


# %% classification.ipynb cell 90, Loss and accuracy

import contextlib
import itertools

from shared import context_length_of


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
    """An accuracy or a loss over no examples means nothing: refuse it instead of a nan."""
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


# %% classification.ipynb cell 92, The training loop

from shared import train_model_simple


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


# %% classification.ipynb cell 96, The final classify_review, and more than two classes

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


# %% classification.ipynb cell 98, 6.9 Parameter-efficient finetuning with LoRA (beyond the book)

import math

from shared import check_number


class LoRALayer(nn.Module):
    """The low-rank update x -> (alpha / rank) * x A B, with B initialised to zero."""

    def __init__(self, in_dim: int, out_dim: int, rank: int, alpha: float):
        check_count("rank", rank, 1)
        check_number("alpha", alpha, "a positive number", low_open=True)  # it scales every update
        super().__init__()
        self.A = nn.Parameter(torch.empty(in_dim, rank))
        # nn.Linear's initialisation: uniform in (-1/sqrt(fan_in), 1/sqrt(fan_in)), where
        # fan_in is A's second dimension, the rank
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))
        self.B = nn.Parameter(torch.zeros(rank, out_dim))
        self.scaling = alpha / rank

    def forward(self, x):
        return self.scaling * (x @ self.A @ self.B)


class LinearWithLoRA(nn.Module):
    """A (frozen) linear layer plus a trainable LoRA update, on the linear layer's device."""

    def __init__(self, linear: nn.Linear, rank: int, alpha: float):
        super().__init__()
        self.linear = linear
        # A is drawn on the CPU, as in the book, then moved: the same A on every device
        self.lora = LoRALayer(linear.in_features, linear.out_features, rank, alpha).to(
            linear.weight.device)

    def forward(self, x):
        return self.linear(x) + self.lora(x)


def replace_linear_with_lora(model, rank: int, alpha: float):
    """Wrap every nn.Linear inside `model` in LinearWithLoRA, in the book's order, so A's
    random values are drawn in the same sequence.
    All or nothing: every wrapper is built before the first is put in (a bad rank or alpha, or
    memory running out, leaves the model as it was). A model with LoRA layers is refused."""
    check(not any(isinstance(m, LinearWithLoRA) for m in model.modules()), "model already has "
          "LoRA layers: replace_linear_with_lora wraps each linear layer once")
    linears = [(name, module) for name, module in model.named_modules(remove_duplicate=False)
               if name and isinstance(module, nn.Linear)]  # depth first, as the book recurses
    wrappers = [LinearWithLoRA(linear, rank, alpha) for _, linear in linears]
    for (name, _), wrapper in zip(linears, wrappers):
        model.set_submodule(name, wrapper)
    return model


def merge_lora(model):
    """Fold each LinearWithLoRA's update into its linear layer, W + (alpha / rank) (A B)^T
    (nn.Linear stores W as out x in and computes x W^T), and put that nn.Linear (same device
    and dtype) in the wrapper's place: the same outputs up to float rounding, no adapters left,
    as tools that know nothing of LoRA need. In place, one layer at a time (no second copy of
    the model); returns `model`. A head tied to the embedding gets a weight of its own (the
    update is the head's), and the model's cfg then says tie_weights False. The merged layers
    stay as frozen as they were (requires_grad False after LoRA's freezing): call
    model.requires_grad_(True) to train them further."""
    wrapped = [(name, module) for name, module in model.named_modules(remove_duplicate=False)
               if name and isinstance(module, LinearWithLoRA)]
    weights = [id(p) for _, p in model.named_parameters(remove_duplicate=False)]
    merged = set()  # a wrapper that sits at two places is merged once
    with torch.no_grad():
        for name, wrapper in wrapped:
            if id(wrapper) not in merged:
                linear, lora = wrapper.linear, wrapper.lora
                weight = linear.weight + lora.scaling * (lora.A @ lora.B).T  # x A B = x (A B)
                if weights.count(id(linear.weight)) > 1:  # a head tied to the embedding: untie it,
                    linear.weight = nn.Parameter(  # or the update would change the embedding
                        weight, requires_grad=linear.weight.requires_grad)
                    if getattr(model, "cfg", {}).get("tie_weights"):  # savers then write
                        model.cfg = {**model.cfg, "tie_weights": False}  # the head apart
                else:
                    linear.weight.copy_(weight)
                merged.add(id(wrapper))
            model.set_submodule(name, wrapper.linear)
    return model


__all__ = [
    'load_sms_spam',
    'create_balanced_dataset',
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
    'classify_review',
    'LoRALayer',
    'LinearWithLoRA',
    'replace_linear_with_lora',
    'merge_lora',
]
