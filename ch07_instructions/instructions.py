# Generated from ch07_instructions/instructions.ipynb
# by `python -m shared.tooling.notebooks export`. Do not edit: change the notebook's cells
# marked `#| export`, then export again.
# Each `# %%` line names the cell the code below it came from.

# %% instructions.ipynb cell 4, Chapter 7 — Instruction finetuning

"""Chapter 7: instruction finetuning: the data, its batches, and the model's responses.
The companion notebooks' modules are beside it: evaluation.py, judge.py and dpo.py."""

import json
import random
from pathlib import Path

import torch
from torch.utils.data import Dataset

from ch05_pretraining.decoding import generate_text
from ch05_pretraining.pretraining import token_ids_to_text
from shared.checks import (
    check,
    check_token_lists,
)
from shared.data import (
    download_file,
    fetch,
)
from shared.utils import progress_bar


# %% instructions.ipynb cell 8, 7.2 Preparing the dataset

def load_instruction_data() -> list[dict]:
    """The course's 1,100 instruction-response pairs (instruction, input, output)."""
    return json.loads(fetch("instruction-data").read_text(encoding="utf-8"))


def download_and_load_file(file_path, url):
    """The book's loader: the JSON entries at `url`, downloaded to `file_path` first unless
    that file exists. A URL the course knows comes through the course's fetch (its data
    folder, the mirror, or that URL), checksum verified."""
    if not Path(file_path).exists():
        download_file(url, file_path)
    return json.loads(Path(file_path).read_text(encoding="utf-8"))


# %% instructions.ipynb cell 11, The prompt template

def format_input(entry: dict) -> str:
    """The Alpaca-style prompt for `entry`, up to (not including) the response section."""
    # beyond the book: an instruction None would be written into the prompt as "None"
    check(isinstance(entry["instruction"], str), "entry['instruction'] must be a string", TypeError)
    text = ("Below is an instruction that describes a task. "
            "Write a response that appropriately completes the request."
            f"\n\n### Instruction:\n{entry['instruction']}")
    if entry.get("input"):
        text += f"\n\n### Input:\n{entry['input']}"
    return text


RESPONSE_HEADER = "\n\n### Response:\n"


# %% instructions.ipynb cell 14, Training, validation and test sets

def split_instruction_data(data: list, train_frac=0.85, test_frac=0.10, seed=123):
    """(train, validation, test): train_frac and test_frac of the entries, validation the rest.
    The entries are shuffled with `seed` first; seed=None keeps their order."""
    check(not any(isinstance(e, list) for e in data), "data holds lists, not entries: unnest it")
    if seed is not None:
        data = random.Random(seed).sample(data, len(data))
    train_end = int(len(data) * train_frac)
    test_end = train_end + int(len(data) * test_frac)
    # cut as the book cuts the file, train | test | validation; returned in the usual order
    return data[:train_end], data[test_end:], data[train_end:test_end]


# %% instructions.ipynb cell 18, 7.3 Organising data into batches

def _encode(tokenizer, text):
    """Token ids of `text`. A literal "<|endoftext|>" in an entry is encoded as ordinary text
    (tiktoken would refuse it), so id 50256 appears only where the collate function adds it."""
    if hasattr(tokenizer, "special_tokens_set"):  # tiktoken, which refuses it by default
        return tokenizer.encode(text, disallowed_special=())
    return tokenizer.encode(text)


class InstructionDataset(Dataset):
    """Token ids of each entry's full text: prompt, response header and response.

    With mask_instruction=True, items are (ids, prompt_length), so that custom_collate_fn can
    leave the prompt out of the loss. An empty output is refused, naming its entry.
    """

    def __init__(self, data: list, tokenizer, *, mask_instruction: bool = False):
        for i, entry in enumerate(data):  # an empty answer would teach to answer nothing
            check(entry["output"].strip(), f"entry {i}: 'output' is empty: drop the entry")
        self.data = data
        self.mask_instruction = mask_instruction
        self.encoded_texts, self.prompt_lengths = [], []
        for entry in data:
            prompt = format_input(entry) + RESPONSE_HEADER
            self.encoded_texts.append(_encode(tokenizer, prompt + entry["output"]))
            self.prompt_lengths.append(len(_encode(tokenizer, prompt)))

    def __getitem__(self, index):
        if self.mask_instruction:
            return self.encoded_texts[index], self.prompt_lengths[index]
        return self.encoded_texts[index]

    def __len__(self):
        return len(self.data)


# %% instructions.ipynb cell 21, 7.3 Organising data into batches

def custom_collate_draft_1(batch, pad_token_id=50256, device="cpu"):
    """7.3's first draft (padding only), kept under the book's name; use custom_collate_fn."""
    max_length = max(len(item) for item in batch)
    padded = [item + [pad_token_id] * (max_length - len(item)) for item in batch]
    return torch.tensor(padded).to(device)


# %% instructions.ipynb cell 24, 7.3 Organising data into batches

def custom_collate_draft_2(batch, pad_token_id=50256, device="cpu"):
    """7.3's second draft (padding and shifted targets); use custom_collate_fn."""
    max_length = max(len(item) + 1 for item in batch)  # + 1: every sequence's end-of-text
    inputs, targets = [], []
    for item in batch:
        padded = item + [pad_token_id] * (max_length - len(item))
        inputs.append(padded[:-1])
        targets.append(padded[1:])
    return torch.tensor(inputs).to(device), torch.tensor(targets).to(device)


# %% instructions.ipynb cell 27, 7.3 Organising data into batches

def custom_collate_fn_book(batch, pad_token_id=50256, ignore_index=-100, allowed_max_length=None,
                           device="cpu"):
    """7.3's final version, the book's in our words; the book names it custom_collate_fn."""
    max_length = max(len(item) + 1 for item in batch)  # + 1: every sequence's end-of-text
    inputs, targets = [], []
    for item in batch:
        padded = torch.tensor(item + [pad_token_id] * (max_length - len(item)))  # pad
        input_ids, target_ids = padded[:-1].clone(), padded[1:].clone()  # shift by one
        target_ids[len(item):] = ignore_index  # position len(item) - 1 keeps the end-of-text
        if allowed_max_length is not None:  # truncate
            input_ids = input_ids[:allowed_max_length]
            target_ids = target_ids[:allowed_max_length]
        inputs.append(input_ids)
        targets.append(target_ids)
    return torch.stack(inputs).to(device), torch.stack(targets).to(device)


# %% instructions.ipynb cell 33, 7.3 Organising data into batches

def custom_collate_fn(batch, pad_token_id=50256, ignore_index=-100, allowed_max_length=None,
                      device="cpu"):
    """Pad a batch of token-id lists into (inputs, targets) tensors.

    Targets are the inputs shifted by one. Each sequence ends with one pad token
    (<|endoftext|>) it is trained to predict; the padding after it is `ignore_index` in the
    targets. Items given as (ids, prompt_length) also have their prompt ignored in the targets.
    Sequences are truncated to `allowed_max_length` tokens.
    """
    # beyond the book, all but the book's collate call: the checks, and items that carry a
    # prompt length, whose prompt targets are ignored too
    check(allowed_max_length is None or allowed_max_length > 0, "allowed_max_length must be > 0")
    items = [item if isinstance(item, tuple) else (item, 0) for item in batch]  # (ids, prompt)
    _check_prompt_lengths(items, allowed_max_length)
    inputs, targets = custom_collate_fn_book([ids for ids, _ in items], pad_token_id,
                                             ignore_index, allowed_max_length, device)
    for row, (_, prompt_length) in zip(targets, items):
        if prompt_length:  # the targets that are prompt tokens: a prompt's first is no target
            row[:prompt_length - 1] = ignore_index
    return inputs, targets


# beyond the book: the checks custom_collate_fn (above) makes before it builds anything
def _check_prompt_lengths(items, limit):
    """Refuse an item whose prompt_length is not in 0..len(ids), or leaves it no target."""
    check_token_lists("batch", [ids for ids, _ in items])  # each error names the item at fault
    for i, (ids, prompt_length) in enumerate(items):
        check(0 <= prompt_length <= len(ids), f"item {i} of the batch: prompt_length must be in "
              f"0..{len(ids)} (its length), got {prompt_length!r}")
        # its targets are positions prompt_length - 1 .. len(ids) - 1: with none left, a batch
        # of such items has a loss of 0 / 0 = nan
        check(limit is None or prompt_length - 1 < limit, f"item {i} of the batch has no target "
              f"left: its prompt has {prompt_length} tokens, more than allowed_max_length={limit}")


# %% instructions.ipynb cell 70, 7.7 Extracting and saving responses

def extract_response(generated_text: str, prompt: str) -> str:
    """The part of `generated_text` after `prompt`, without a repeated response header."""
    return generated_text[len(prompt):].replace("### Response:", "").strip()


# %% instructions.ipynb cell 71, 7.7 Extracting and saving responses

def generate_responses(model, data, tokenizer, device, max_new_tokens=256, eos_id=50256,
                       key="model_response", progress=True):
    """Add the model's greedy response to every entry of `data` under `key`; returns data."""
    # every entry, before the first is changed: a bad one further on would end the run there
    missing = [i for i, entry in enumerate(data) if not isinstance(entry.get("instruction"), str)]
    check(not missing, lambda: f"data: entry {missing[0]} has no 'instruction' string")
    was_training = model.training
    model.eval()
    try:
        for entry in progress_bar(data, desc="generating", unit="response", disable=not progress):
            prompt = format_input(entry) + RESPONSE_HEADER
            ids = torch.tensor([_encode(tokenizer, prompt)], device=device)
            token_ids = generate_text(model, ids, max_new_tokens,
                                      eos_id=eos_id)  # context: the model's own
            entry[key] = extract_response(token_ids_to_text(token_ids, tokenizer), prompt)
    finally:  # as it was: generating must not switch dropout off for good
        model.train(was_training)
    return data


# %% instructions.ipynb cell 90, An LLM as the judge, through Ollama

import urllib.request

import psutil


OLLAMA_URL = "http://localhost:11434/api/chat"


def check_if_running(process_name) -> bool:
    """True if a running process has `process_name` in its name."""
    return any(process_name in (proc.info["name"] or "")
               for proc in psutil.process_iter(["name"]))


def query_model(prompt, model="llama3", url=OLLAMA_URL):
    """Send `prompt` to a model served by Ollama and return its reply."""
    body = json.dumps({"model": model,
                       "messages": [{"role": "user", "content": prompt}],
                       "options": {"seed": 123, "temperature": 0, "num_ctx": 2048},
                       "stream": False}).encode("utf-8")
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:  # 120 s for each read
        return json.loads(response.read().decode("utf-8"))["message"]["content"]


# %% instructions.ipynb cell 92, An LLM as the judge, through Ollama

def judge_prompt(entry: dict, json_key: str = "model_response") -> str:
    """The judge's prompt: the task in the chapter's template, the reference, the response."""
    return (f"Here is a task and its reference answer.\n\nTask:\n{format_input(entry)}\n\n"
            f"Reference answer: {entry['output']}\n\n"
            f"Rate the following answer from 0 (useless) to 100 (as good as the "
            f"reference): {entry[json_key]}\n\nReply with the number only.")


def read_score(reply: str) -> int | None:
    """The judge's score: a whole number from 0 to 100 alone, else None."""
    reply = reply.strip()
    return int(reply) if reply.isascii() and reply.isdecimal() and int(reply) <= 100 else None


# %% instructions.ipynb cell 93, An LLM as the judge, through Ollama

def generate_model_scores(json_data, json_key, model="llama3"):
    """The judge's score of each entry's `json_key` response; None where its reply is no number."""
    return [read_score(query_model(judge_prompt(entry, json_key), model))
            for entry in progress_bar(json_data, desc="scoring", unit="response")]


__all__ = [
    'load_instruction_data',
    'download_and_load_file',
    'format_input',
    'RESPONSE_HEADER',
    'split_instruction_data',
    'InstructionDataset',
    'custom_collate_draft_1',
    'custom_collate_draft_2',
    'custom_collate_fn_book',
    'custom_collate_fn',
    'extract_response',
    'generate_responses',
    'OLLAMA_URL',
    'check_if_running',
    'query_model',
    'judge_prompt',
    'read_score',
    'generate_model_scores',
]
