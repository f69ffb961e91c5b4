# Generated from ch02_text_data/beyond_1_bpe.ipynb
# by `python -m shared.tooling.notebooks export`. Do not edit: change the notebook's cells
# marked `#| export bpe`, then export again.
# Each `# %%` line names the cell the code below it came from.

# %% beyond_1_bpe.ipynb cell 2, Chapter 2, beyond the book: byte-pair encoding from scratch

"""Chapter 2, beyond the book: byte-level byte-pair encoding from scratch, trained or read from
GPT-2's files, id for id equal to tiktoken (beyond_1_bpe.ipynb)."""

import json
import operator
import re
from collections import Counter
from pathlib import Path

from shared.checks import check


# %% beyond_1_bpe.ipynb cell 5, 2.5.1 The merge rule, learned from counts

def count_pairs(sequences: dict[tuple[int, ...], int]) -> Counter:
    """How often each pair of neighbouring ids occurs; a sequence seen `n` times counts `n`."""
    counts: Counter = Counter()
    for seq, n in sequences.items():
        for pair in zip(seq, seq[1:]):
            counts[pair] += n
    return counts


def most_frequent_pair(pair_counts: Counter) -> tuple[int, int]:
    """The commonest pair; ties go to the pair of smaller ids, whatever the counting order."""
    # The highest count wins; on equal counts, -a and then -b make the smaller ids win.
    (a, b), _ = max(pair_counts.items(), key=lambda item: (item[1], -item[0][0], -item[0][1]))
    return a, b


# %% beyond_1_bpe.ipynb cell 8, 2.5.1 The merge rule, learned from counts

def merge_pair(seq: tuple, pair: tuple, new_id: int) -> tuple:
    """Replace each occurrence of `pair` in `seq`, left to right, by `new_id`."""
    if pair[0] not in seq:
        return seq
    out, i = [], 0
    while i < len(seq):
        if i + 1 < len(seq) and (seq[i], seq[i + 1]) == pair:
            out.append(new_id)
            i += 2
        else:
            out.append(seq[i])
            i += 1
    return tuple(out)


# %% beyond_1_bpe.ipynb cell 12, 2.5.2 Training on The Verdict

import regex


GPT2_SPLIT_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


# %% beyond_1_bpe.ipynb cell 15, 2.5.2 Training on The Verdict

def learn_merges(text: str, n_merges: int, pattern: str = GPT2_SPLIT_PATTERN
                 ) -> tuple[dict[bytes, int], list[tuple[bytes, bytes]]]:
    """Learn up to `n_merges` byte-pair merges on `text`: the token ranks and the merges."""
    check(type(n_merges) is int and n_merges >= 0, "n_merges must be an integer >= 0")
    ranks = {bytes([b]): b for b in range(256)}
    id_to_bytes = {i: token for token, i in ranks.items()}
    merges: list[tuple[bytes, bytes]] = []
    chunks = Counter(regex.findall(pattern, text))  # merges never cross chunk boundaries
    sequences = {tuple(chunk.encode("utf-8")): n for chunk, n in chunks.items()}
    while len(merges) < n_merges:
        pair_counts = count_pairs(sequences)
        if not pair_counts:
            break  # every chunk is a single token: nothing left to merge
        a, b = most_frequent_pair(pair_counts)
        merged = id_to_bytes[a] + id_to_bytes[b]
        new_id = ranks.get(merged)
        if new_id is None:  # the same bytes can arise from two different pairs
            new_id = ranks[merged] = len(ranks)
            id_to_bytes[new_id] = merged
            merges.append((id_to_bytes[a], id_to_bytes[b]))
        sequences = {merge_pair(seq, (a, b), new_id): n for seq, n in sequences.items()}
    return ranks, merges


# %% beyond_1_bpe.ipynb cell 19, 2.5.2 Training on The Verdict

def apply_merges(piece: bytes, ranks: dict[bytes, int]) -> list[int]:
    """The token ids of one pre-tokenized chunk: merge the lowest-ranked neighbouring pair
    until no neighbouring pair forms a known token."""
    parts = [bytes([b]) for b in piece]
    while len(parts) > 1:
        # The neighbouring pair whose merged token was learned first (leftmost on ties).
        rank, i = min((ranks.get(parts[k] + parts[k + 1], float("inf")), k)
                      for k in range(len(parts) - 1))
        if rank == float("inf"):
            break
        parts[i:i + 2] = [parts[i] + parts[i + 1]]
    return [ranks[part] for part in parts]


# %% beyond_1_bpe.ipynb cell 25, 2.5.3 A merge loop without a cost cliff

import heapq


def apply_merges_fast(piece: bytes, ranks: dict[bytes, int]) -> list[int]:
    """The ids of `apply_merges`, in O(n log n) time: a heap of pairs over linked parts."""
    n = len(piece)
    parts = [bytes([b]) for b in piece]  # parts[i]: the part that starts at byte i, b"" if none
    # where part i's neighbours start; n: no right neighbour, -1: no left one
    after, before = list(range(1, n + 1)), list(range(-1, n - 1))

    def rank(i):  # the rank of the pair part i + its right neighbour; None: no neighbour or token
        return ranks.get(parts[i] + parts[after[i]]) if after[i] < n else None

    heap = [(r, i) for i in range(n - 1) if (r := rank(i)) is not None]
    heapq.heapify(heap)  # pops the lowest rank first, leftmost on ties: apply_merges's order
    while heap:
        r, i = heapq.heappop(heap)
        if not parts[i] or rank(i) != r:
            continue  # stale: part i, or its right neighbour, changed since this was pushed
        j = after[i]
        parts[i], parts[j] = parts[i] + parts[j], b""  # part j joins part i
        after[i] = after[j]
        if after[i] < n:
            before[after[i]] = i
        for k in (before[i], i):  # only the pairs on either side of the new part changed
            if k >= 0 and rank(k) is not None:
                heapq.heappush(heap, (rank(k), k))
    return [ranks[part] for part in parts if part]


# %% beyond_1_bpe.ipynb cell 31, 2.5.4 GPT-2's vocabulary in our tokenizer, and equality with ti...

def gpt2_byte_to_char() -> dict[int, str]:
    """GPT-2's printable stand-in character for each byte, as used in its BPE files."""
    printable = [b for b in range(256) if chr(b).isprintable() and chr(b) != " "]
    others = [b for b in range(256) if b not in printable]
    mapping = {b: chr(b) for b in printable}
    mapping.update({b: chr(256 + n) for n, b in enumerate(others)})
    return mapping


# %% beyond_1_bpe.ipynb cell 36, 2.5.4 GPT-2's vocabulary in our tokenizer, and equality with ti...

def read_gpt2_files(encoder_json, vocab_bpe):
    """GPT-2's `encoder.json` and `vocab.bpe` as (ranks, special tokens, merges); a file that
    would be read wrong without a word is a ValueError that names it."""
    char_to_byte = {c: b for b, c in gpt2_byte_to_char().items()}

    def as_bytes(token):
        return bytes(char_to_byte[c] for c in token)

    def one_id_per_token(pairs):  # json.loads would keep only the last id of a repeated token
        twice = [token for token, n in Counter(token for token, _ in pairs).items() if n > 1]
        check(not twice, lambda: f"{encoder_json} has the token {twice[0]!r} more than once")
        return dict(pairs)

    encoder = json.loads(Path(encoder_json).read_text(encoding="utf-8"),
                         object_pairs_hook=one_id_per_token)
    check(all(type(i) is int for i in encoder.values()), f"{encoder_json}: ids must be integers")
    specials = {t: i for t, i in encoder.items() if t.startswith("<|") and t.endswith("|>")}
    ranks = {as_bytes(t): i for t, i in encoder.items() if t not in specials}
    lines = Path(vocab_bpe).read_text(encoding="utf-8").splitlines()[1:]  # line 1: a version
    merges = [tuple(as_bytes(part) for part in line.split(" ")) for line in lines if line]
    # merge n makes id 255 + n, as in 2.5.1
    wrong = [n for n, (a, b) in enumerate(merges, start=1) if ranks.get(a + b) != 255 + n]
    check(not wrong, lambda: f"{vocab_bpe} and {encoder_json} disagree at merge {wrong[0]}: "
          "they are not from the same tokenizer")
    return ranks, specials, merges


# %% beyond_1_bpe.ipynb cell 37, 2.5.4 GPT-2's vocabulary in our tokenizer, and equality with ti...

from shared.utils import write_atomically


def write_gpt2_files(folder, ranks, special_tokens, merges, *, replace: bool = False) -> None:
    """Write `encoder.json` and `vocab.bpe` in GPT-2's format into `folder`, both in full
    before either replaces an earlier file. Another tokenizer's encoder.json or vocab.bpe
    there is refused unless `replace=True`; other files in the folder are left alone."""
    folder = Path(folder)
    # replace="no" would replace another tokenizer's files
    check(type(replace) is bool, lambda: f"replace must be True or False, got {replace!r}")
    to_char = gpt2_byte_to_char()
    as_text = lambda token: "".join(to_char[b] for b in token)  # noqa: E731
    encoder = {as_text(token): i for token, i in sorted(ranks.items(), key=lambda t: t[1])}
    encoder.update(special_tokens)
    lines = ["#version: 0.2"] + [f"{as_text(a)} {as_text(b)}" for a, b in merges]
    files = {"encoder.json": json.dumps(encoder, ensure_ascii=False).encode("utf-8"),
             "vocab.bpe": ("\n".join(lines) + "\n").encode("utf-8")}

    def holds_another(name):  # a file (or folder) of that name, other than the one we write
        path = folder / name
        return path.exists() and (path.is_dir() or path.read_bytes() != files[name])

    clashes = [] if replace else [name for name in files if holds_another(name)]
    names = " and ".join(clashes)
    check(not clashes, f"{folder} holds another tokenizer's {names}; pass replace=True to "
          "replace them, or choose another folder")
    folder.mkdir(parents=True, exist_ok=True)

    def write_both(encoder_tmp):  # both written in full before either is renamed
        encoder_tmp.write_bytes(files["encoder.json"])
        write_atomically(folder / "vocab.bpe", lambda tmp: tmp.write_bytes(files["vocab.bpe"]))

    write_atomically(folder / "encoder.json", write_both)


# %% beyond_1_bpe.ipynb cell 42, 2.5.4 GPT-2's vocabulary in our tokenizer, and equality with ti...

def split_special_tokens(text: str, special_tokens, allowed_special=frozenset()
                         ) -> list[tuple[str, bool]]:
    """Cut `text` around the allowed special tokens: (piece, is_special) pairs, in order. A
    special token in the text that is not allowed is an error, as in tiktoken; "all" allows
    every special token."""
    # "all", or a set of special tokens (a list or a tuple works too); one that the tokenizer
    # lacks allows nothing, as in tiktoken
    allowed = set(special_tokens)
    if allowed_special != "all":
        allowed &= set(allowed_special)
    found = [special for special in special_tokens if special not in allowed and special in text]
    check(not found, lambda: f"text contains the special token {found[0]!r}; pass "
          f"allowed_special={{{found[0]!r}}} to encode it as one token")
    if not allowed:
        return [(text, False)]
    # A capturing group keeps the separators; they land at the odd positions of the split.
    parts = re.split("(" + "|".join(map(re.escape, sorted(allowed))) + ")", text)
    return [(part, k % 2 == 1) for k, part in enumerate(parts)]


# %% beyond_1_bpe.ipynb cell 45, 2.5.4 GPT-2's vocabulary in our tokenizer, and equality with ti...

class BPETokenizer:
    """Byte-level byte-pair encoding, trainable, and id-for-id compatible with GPT-2's files.

    `ranks` maps each token's bytes to its id; a lower id means an earlier merge, and
    encoding applies merges in that order (as tiktoken does).
    """

    def __init__(self, ranks: dict[bytes, int], special_tokens: dict[str, int],
                 merges: list[tuple[bytes, bytes]], pattern: str = GPT2_SPLIT_PATTERN):
        self.ranks, self.special_tokens, self.merges = ranks, special_tokens, merges
        self.pattern = pattern
        self._split = regex.compile(pattern)
        self._id_to_bytes = {i: token for token, i in ranks.items()}
        self._id_to_bytes.update({i: s.encode("utf-8") for s, i in special_tokens.items()})
        ids = [*ranks.values(), *special_tokens.values()]
        check(len(self._id_to_bytes) == len(ids), lambda: "token ids must be distinct, but two "
              f"tokens have the id {Counter(ids).most_common(1)[0][0]}")
        self._cache: dict[str, list[int]] = {}  # chunk -> ids; words repeat a lot

    @property
    def n_vocab(self) -> int:
        """The largest id + 1, as in tiktoken: an embedding of n_vocab rows holds every id."""
        return max(self._id_to_bytes, default=-1) + 1

    @classmethod
    def train(cls, text: str, vocab_size: int, special_tokens=("<|endoftext|>",),
              pattern: str = GPT2_SPLIT_PATTERN) -> "BPETokenizer":
        """Learn merges on `text` until bytes + merges + special tokens number `vocab_size`."""
        # a str would give one special token per character, a set ids in no fixed order, and ""
        # would be found between every two characters
        check(type(special_tokens) in (list, tuple) and "" not in special_tokens,
              "special_tokens must be a list or a tuple of tokens, not the empty string")
        special_tokens = list(dict.fromkeys(special_tokens))  # each once, in their order
        fewest = 256 + len(special_tokens)  # every byte and special token, and no merge
        check(type(vocab_size) is int and vocab_size >= fewest, lambda: "vocab_size must be an "
              f"integer >= {fewest}, got {vocab_size!r}")
        ranks, merges = learn_merges(text, vocab_size - fewest, pattern)
        specials = {s: len(ranks) + i for i, s in enumerate(special_tokens)}
        return cls(ranks, specials, merges, pattern)

    @classmethod
    def from_gpt2_files(cls, encoder_json, vocab_bpe) -> "BPETokenizer":
        """Load GPT-2's `encoder.json` (token -> id) and `vocab.bpe` (merges, in order)."""
        return cls(*read_gpt2_files(encoder_json, vocab_bpe))

    def save_gpt2_files(self, folder, *, replace: bool = False) -> None:
        """Write `encoder.json` and `vocab.bpe` in GPT-2's format (see write_gpt2_files)."""
        write_gpt2_files(folder, self.ranks, self.special_tokens, self.merges, replace=replace)

    def encode(self, text: str, allowed_special=frozenset()) -> list[int]:
        """Token ids of `text`. Special tokens are encoded only if listed in `allowed_special`
        (or it is "all"); any other special token in the text is an error, as in tiktoken."""
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            # A str can hold lone surrogates ("\ud800"), halves of a UTF-16 pair that have no
            # UTF-8 bytes. As tiktoken does, a pair is joined into its character and a lone one
            # becomes U+FFFD, the replacement character, rather than fail.
            text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        ids: list[int] = []
        for part, is_special in split_special_tokens(text, self.special_tokens,
                                                     allowed_special):
            if is_special:
                ids.append(self.special_tokens[part])
            else:
                for chunk in self._split.findall(part):
                    ids.extend(self._encode_chunk(chunk))
        return ids

    def _encode_chunk(self, chunk: str) -> list[int]:
        ids = self._cache.get(chunk)
        if ids is None:
            ids = apply_merges_fast(chunk.encode("utf-8"), self.ranks)
            if len(self._cache) < 100_000:
                self._cache[chunk] = ids
        return ids

    def decode_bytes(self, ids) -> bytes:
        return b"".join(self._id_to_bytes[operator.index(i)] for i in ids)  # not 1.5, as 1

    def decode(self, ids) -> str:
        # A multi-byte character cut between tokens decodes to the replacement character.
        return self.decode_bytes(ids).decode("utf-8", errors="replace")


__all__ = [
    'count_pairs',
    'most_frequent_pair',
    'merge_pair',
    'GPT2_SPLIT_PATTERN',
    'learn_merges',
    'apply_merges',
    'apply_merges_fast',
    'gpt2_byte_to_char',
    'read_gpt2_files',
    'write_gpt2_files',
    'split_special_tokens',
    'BPETokenizer',
]
