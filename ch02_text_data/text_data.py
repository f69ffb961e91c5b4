# Generated from ch02_text_data/text_data.ipynb
# by `python -m shared.tooling.notebooks export`. Do not edit: change the notebook's cells
# marked `#| export`, then export again.
# Each `# %%` line names the cell the code below it came from.

# %% text_data.ipynb cell 2, Chapter 2 — Working with text data

"""Chapter 2: from text to token ids and training examples: the tokenizers and the
sliding-window data loader of text_data.ipynb."""

import operator
import re

import tiktoken
import torch
from torch.utils.data import DataLoader, Dataset

from shared.checks import (
    check,
    check_count,
    check_ids_in_vocab,
    check_in_vocab,
    check_strings,
    check_type,
)


# %% text_data.ipynb cell 29, 2.4.1 The tokenizers' checks (beyond the book)

SIMPLE_SPLIT_PATTERN = re.compile(r'([,.:;?_!"()\']|--|\s)')  # the split of 2.2


def simple_tokenize(text: str) -> list[str]:
    """Split text into words and punctuation marks; whitespace is dropped."""
    check_type("text", text, str, "a str")
    return [piece.strip() for piece in SIMPLE_SPLIT_PATTERN.split(text) if piece.strip()]


def build_vocabulary(tokens, special_tokens=()) -> dict[str, int]:
    """Map each distinct token (sorted) to an id, then append the special tokens."""
    check_strings("special_tokens", special_tokens, "a list of strings (their order gives ids)")
    words = sorted(set(tokens).difference(special_tokens))  # each token gets one id
    return {token: i for i, token in enumerate([*words, *special_tokens])}


# %% text_data.ipynb cell 30, 2.4.1 The tokenizers' checks (beyond the book)

def look_up_ids(id_to_token: dict, ids) -> list:
    """The token of each id; an id that is not an integer, or not in the vocabulary, is named."""
    ids = list(ids)  # read twice: by the check, then by the lookup
    check_ids_in_vocab(ids, id_to_token)
    return [id_to_token[operator.index(i)] for i in ids]  # ints and integer tensors, not 1.5


class SimpleTokenizerV1:
    """Regex tokenizer with a fixed vocabulary; an unknown word is an error."""

    def __init__(self, vocab: dict[str, int]):
        self.str_to_int = vocab
        self.int_to_str = {i: token for token, i in vocab.items()}

    def encode(self, text: str) -> list[int]:
        tokens = simple_tokenize(text)
        check_in_vocab("text", tokens, self.str_to_int, "SimpleTokenizerV2 maps them to <|unk|>")
        return [self.str_to_int[t] for t in tokens]

    def decode(self, ids: list[int]) -> str:
        text = " ".join(look_up_ids(self.int_to_str, ids))
        return re.sub(r'\s+([,.:;?!"()\'])', r"\1", text)  # no space before punctuation


# %% text_data.ipynb cell 31, 2.4.1 The tokenizers' checks (beyond the book)

class SimpleTokenizerV2(SimpleTokenizerV1):
    """SimpleTokenizerV1 that maps unknown words to `<|unk|>` instead of failing."""

    UNKNOWN = "<|unk|>"

    def __init__(self, vocab: dict[str, int]):
        # else every unknown word would fail at encode time
        check(self.UNKNOWN in vocab, "SimpleTokenizerV2 needs '<|unk|>' in the vocabulary; build "
              "it with build_vocabulary(tokens, special_tokens=['<|unk|>'])")
        super().__init__(vocab)

    def encode(self, text: str) -> list[int]:
        unknown_id = self.str_to_int[self.UNKNOWN]
        return [self.str_to_int.get(t, unknown_id) for t in simple_tokenize(text)]


# %% text_data.ipynb cell 50, 2.6.1 The loader's checks and a tokenizer option (beyond the book)

class GPTDatasetV1(Dataset):
    """All windows of `max_length` token ids, `stride` apart; targets are inputs shifted by one."""

    def __init__(self, txt: str, tokenizer, max_length: int, stride: int):
        check_count("max_length", max_length, 1)
        check_count("stride", stride, 1)
        check_type("txt", txt, str, "the text itself (a str), not a path to read")
        token_ids = tokenizer.encode(txt, allowed_special={"<|endoftext|>"})
        check(len(token_ids) > max_length, f"the text has {len(token_ids)} tokens, but one example "
              f"needs max_length + 1 = {max_length + 1}; use a longer text or a smaller max_length")
        self.input_ids, self.target_ids = [], []
        for start in range(0, len(token_ids) - max_length, stride):
            window = token_ids[start:start + max_length + 1]
            self.input_ids.append(torch.tensor(window[:-1]))
            self.target_ids.append(torch.tensor(window[1:]))

    def __len__(self) -> int:
        return len(self.input_ids)

    def __getitem__(self, index):
        return self.input_ids[index], self.target_ids[index]


def create_dataloader_v1(txt: str, batch_size: int = 4, max_length: int = 256,
                         stride: int = 128, shuffle: bool = True, drop_last: bool = True,
                         num_workers: int = 0, tokenizer=None) -> DataLoader:
    """Batches of (inputs, targets) from `txt`; GPT-2's tokenizer unless another is given."""
    check_count("batch_size", batch_size, 1)  # before the text is tokenized
    check_count("num_workers", num_workers, 0)
    tokenizer = tokenizer or tiktoken.get_encoding("gpt2")
    dataset = GPTDatasetV1(txt, tokenizer, max_length, stride)
    # else the loader would yield nothing
    check(not drop_last or len(dataset) >= batch_size, f"drop_last=True drops all {len(dataset)} "
          f"windows: fewer than batch_size={batch_size}; lower it, or pass drop_last=False")
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last,
                      num_workers=num_workers)


__all__ = [
    'SIMPLE_SPLIT_PATTERN',
    'simple_tokenize',
    'build_vocabulary',
    'look_up_ids',
    'SimpleTokenizerV1',
    'SimpleTokenizerV2',
    'GPTDatasetV1',
    'create_dataloader_v1',
]
