# Generated from ch02_text_data/text_data.ipynb
# by `python -m shared.tooling.notebooks export`. Do not edit: change the notebook's cells
# marked `#| export`, then export again.
# Each `# %%` line names the cell the code below it came from.

# %% text_data.ipynb cell 2, Chapter 2 — Working with text data

"""Chapter 2: from text to token ids and training examples: the tokenizers and the
sliding-window data loader of text_data.ipynb."""

import re

import tiktoken
import torch
from torch.utils.data import DataLoader, Dataset

from shared.checks import check


# %% text_data.ipynb cell 14, 2.2 Cutting text into tokens

def simple_tokenize(text):
    """Split text into words and punctuation marks; whitespace is dropped."""
    pieces = re.split(r'([,.:;?_!"()\']|--|\s)', text)
    return [piece.strip() for piece in pieces if piece.strip()]


# %% text_data.ipynb cell 20, 2.3 From tokens to ids: a vocabulary

class SimpleTokenizerV1:
    """Regex tokenizer with a fixed vocabulary; an unknown word is a KeyError."""

    def __init__(self, vocab):
        self.str_to_int = vocab
        self.int_to_str = {i: s for s, i in vocab.items()}

    def encode(self, text):
        return [self.str_to_int[s] for s in simple_tokenize(text)]

    def decode(self, ids):
        text = " ".join(self.int_to_str[i] for i in ids)
        return re.sub(r'\s+([,.?!"()\'])', r"\1", text)  # no space before punctuation


# %% text_data.ipynb cell 25, 2.4 Special tokens: `<|unk|>` and `<|endoftext|>`

class SimpleTokenizerV2(SimpleTokenizerV1):
    """SimpleTokenizerV1 that maps unknown words to <|unk|> instead of failing."""

    def encode(self, text):
        unknown_id = self.str_to_int["<|unk|>"]
        return [self.str_to_int.get(s, unknown_id) for s in simple_tokenize(text)]

    def decode(self, ids):
        text = " ".join(self.int_to_str[i] for i in ids)
        return re.sub(r'\s+([,.:;?!"()\'])', r"\1", text)  # V1's, and no space before : or ;


# %% text_data.ipynb cell 29, 2.4.1 A vocabulary function (beyond the book)

def build_vocabulary(tokens, special_tokens=()) -> dict[str, int]:
    """Map each distinct token (sorted) to an id, then append the special tokens."""
    check(type(special_tokens) in (list, tuple), "special_tokens must be a list or a tuple")
    special_tokens = list(dict.fromkeys(special_tokens))  # each once, in their order
    words = sorted(set(tokens).difference(special_tokens))  # each token gets one id
    return {token: i for i, token in enumerate([*words, *special_tokens])}


# %% text_data.ipynb cell 41, 2.6 Sampling training examples with a sliding window

class GPTDatasetV1(Dataset):
    """All windows of `max_length` token ids, `stride` apart; targets are inputs shifted by one."""

    def __init__(self, txt, tokenizer, max_length, stride):
        self.input_ids, self.target_ids = [], []
        token_ids = tokenizer.encode(txt, allowed_special={"<|endoftext|>"})
        for start in range(0, len(token_ids) - max_length, stride):
            window = token_ids[start:start + max_length + 1]
            self.input_ids.append(torch.tensor(window[:-1]))
            self.target_ids.append(torch.tensor(window[1:]))

    def __len__(self):
        return len(self.input_ids)

    def __getitem__(self, index):
        return self.input_ids[index], self.target_ids[index]


def create_dataloader_v1_book(txt, batch_size=4, max_length=256, stride=128, shuffle=True,
                              drop_last=True, num_workers=0):
    """Batches of (inputs, targets) from `txt`, tokenized with GPT-2's tokenizer; the book's
    create_dataloader_v1, which 2.6.1's create_dataloader_v1 calls after its checks."""
    tokenizer = tiktoken.get_encoding("gpt2")
    dataset = GPTDatasetV1(txt, tokenizer, max_length, stride)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last,
                      num_workers=num_workers)


# %% text_data.ipynb cell 48, 2.6.1 The loader the later chapters use (beyond the book)

def create_dataloader_v1(txt, batch_size=4, max_length=256, stride=128, shuffle=True,
                         drop_last=True, num_workers=0):
    """The batches of create_dataloader_v1_book (2.6), after checks that each window holds
    tokens and that the loader yields at least one batch."""
    # max_length 0: windows without a token; stride below 0: none (or broken ones), no error
    check(min(max_length, stride) >= 1, "max_length and stride must be at least 1")
    loader = create_dataloader_v1_book(txt, batch_size, max_length, stride, False, drop_last,
                                       num_workers)  # unshuffled: over no window, a sampler fails
    n_windows = len(loader.dataset)  # a batch needs batch_size of them with drop_last, else 1
    check(n_windows >= (batch_size if drop_last else 1), f"no batch: {n_windows} windows of "
          f"{max_length + 1} tokens, batch_size={batch_size}, drop_last={drop_last}")
    if shuffle:  # the same windows, in the order the book's shuffled loader draws them
        loader = DataLoader(loader.dataset, batch_size, shuffle=True, drop_last=drop_last,
                            num_workers=num_workers)
    return loader


__all__ = [
    'simple_tokenize',
    'SimpleTokenizerV1',
    'SimpleTokenizerV2',
    'build_vocabulary',
    'GPTDatasetV1',
    'create_dataloader_v1_book',
    'create_dataloader_v1',
]
