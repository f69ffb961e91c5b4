"""Tests of chapter 7's lesson module, instructions.py: formatting, splitting, batching,
masking and responses."""


import pytest
import torch
from torch import nn

from ch07_instructions.instructions import (
    RESPONSE_HEADER,
    InstructionDataset,
    custom_collate_fn,
    extract_response,
    format_input,
    generate_responses,
    load_instruction_data,
    split_instruction_data,
)


class LetterTokenizer:
    """One id per character: easy to count, and decode(encode(t)) == t."""

    def encode(self, text, allowed_special=None):
        return [ord(c) for c in text]

    def decode(self, ids):
        return "".join(chr(i) for i in ids)


# Data --------------------------------------------------------------------------------------

def test_instruction_data_and_the_split_sizes():
    data = load_instruction_data()
    assert len(data) == 1100 and {"instruction", "input", "output"} <= set(data[0])
    train, validation, test = split_instruction_data(data)
    assert (len(train), len(validation), len(test)) == (935, 55, 110)
    ids = [id(entry) for part in (train, validation, test) for entry in part]
    assert len(set(ids)) == 1100
    assert split_instruction_data(data)[2] == test  # seeded
    assert split_instruction_data(data, seed=None)[0] == data[:935]  # the book's order


def test_split_refuses_a_list_nested_one_level_too_deep():
    entries = [{"instruction": "Add.", "input": "", "output": "3"}] * 20
    with pytest.raises(ValueError, match="data holds lists, not entries"):
        split_instruction_data([entries])  # would give sets of 0, 1 and 0 entries


def test_format_input_with_and_without_input():
    with_input = format_input({"instruction": "Add.", "input": "1 and 2", "output": "3"})
    assert with_input.endswith("### Instruction:\nAdd.\n\n### Input:\n1 and 2")
    without = format_input({"instruction": "Say hi.", "input": "", "output": "Hi"})
    assert without.endswith("### Instruction:\nSay hi.") and "### Input" not in without


# Collate -----------------------------------------------------------------------------------

def test_collate_shifts_pads_and_ignores_all_but_the_first_pad():
    inputs, targets = custom_collate_fn([[0, 1, 2, 3, 4], [5, 6], [7, 8, 9]], pad_token_id=50)
    assert inputs.tolist() == [[0, 1, 2, 3, 4], [5, 6, 50, 50, 50], [7, 8, 9, 50, 50]]
    assert targets.tolist() == [[1, 2, 3, 4, 50], [6, 50, -100, -100, -100],
                                [8, 9, 50, -100, -100]]


def test_collate_keeps_an_endoftext_that_belongs_to_the_text():
    _, targets = custom_collate_fn([[1, 50, 2], [3]], pad_token_id=50)
    assert targets.tolist() == [[50, 2, 50], [50, -100, -100]]


def test_collate_truncates_to_the_allowed_maximum_length():
    inputs, targets = custom_collate_fn([list(range(10)), [1, 2]], allowed_max_length=4)
    assert inputs.shape == targets.shape == (2, 4)
    assert targets[0].tolist() == [1, 2, 3, 4]


def test_collate_masks_the_prompt_when_given_its_length():
    _, targets = custom_collate_fn([([10, 11, 12, 13, 14], 3), [20, 21]], pad_token_id=50)
    # prompt = 10 11 12: the targets 11 and 12 are prompt tokens; 13 is the first response
    assert targets.tolist() == [[-100, -100, 13, 14, 50], [21, 50, -100, -100, -100]]


def test_dataset_encodes_the_full_text_and_the_prompt_length():
    entry = {"instruction": "Add.", "input": "", "output": "3"}
    plain = InstructionDataset([entry], LetterTokenizer())
    prompt = format_input(entry) + RESPONSE_HEADER
    assert plain[0] == [ord(c) for c in prompt + "3"]
    masked = InstructionDataset([entry], LetterTokenizer(), mask_instruction=True)
    ids, prompt_length = masked[0]
    assert ids == plain[0] and prompt_length == len(prompt)
    _, targets = custom_collate_fn([masked[0]])
    assert [t for t in targets[0].tolist() if t != -100] == [ord("3"), 50256]


def test_ignored_targets_do_not_change_the_loss():
    logits = torch.randn(6, 9)
    targets = torch.tensor([1, 2, 3, -100, -100, -100])
    full = nn.functional.cross_entropy(logits, targets)
    assert torch.allclose(full, nn.functional.cross_entropy(logits[:3], targets[:3]))


# Responses ---------------------------------------------------------------------------------

def test_extract_response():
    prompt = "### Instruction:\nSay hi." + RESPONSE_HEADER
    assert extract_response(prompt + "Hello there.", prompt) == "Hello there."


class ScriptedModel(nn.Module):
    """Emits the ids of `reply`, one per step, then id 0 (eos) forever."""

    def __init__(self, reply, context=400):
        super().__init__()
        self.reply = [ord(c) for c in reply]
        self.cfg = {"context_length": context}  # what generate_responses reads of a GPTModel
        self.prompt_length = None

    def forward(self, ids):
        if self.prompt_length is None or ids.shape[1] < self.prompt_length:
            self.prompt_length = ids.shape[1]
        step = ids.shape[1] - self.prompt_length
        next_id = self.reply[step] if step < len(self.reply) else 0
        return nn.functional.one_hot(torch.tensor([[next_id] * ids.shape[1]]), 300).float()


def test_generate_responses_stops_at_eos_and_stores_the_response():
    data = [{"instruction": "Say hi.", "input": "", "output": "Hi"}]
    generate_responses(ScriptedModel("Hi!"), data, LetterTokenizer(), "cpu", max_new_tokens=20,
                       eos_id=0, progress=False)
    assert data[0]["model_response"] == "Hi!"


# The book's names and parameters ---------------------------------------------------------------

def test_the_books_names_have_the_books_parameters():
    import inspect

    from llms_from_scratch import ch07 as book

    from ch07_instructions import instructions

    for name in ("download_and_load_file", "format_input", "custom_collate_draft_1",
                 "custom_collate_draft_2", "custom_collate_fn", "check_if_running",
                 "query_model", "generate_model_scores"):
        ours = inspect.signature(getattr(instructions, name)).parameters
        theirs = inspect.signature(getattr(book, name)).parameters
        # the book's parameters first, in its order; anything more is optional
        assert list(ours)[:len(theirs)] == list(theirs), name
        assert all(p.default is not p.empty or p.kind is p.VAR_KEYWORD
                   for p in list(ours.values())[len(theirs):]), name


def test_the_books_download_and_load_file_works_from_the_mirror(tmp_path):
    from ch07_instructions.instructions import download_and_load_file

    url = ("https://raw.githubusercontent.com/rasbt/LLMs-from-scratch/main/ch07/"
           "01_main-chapter-code/instruction-data.json")
    path = tmp_path / "instruction-data.json"
    data = download_and_load_file(path, url)
    assert len(data) == 1100 and path.exists()
    assert download_and_load_file(path, url) == data  # read from file_path the second time


def test_custom_collate_fn_gives_the_books_batches_for_every_entry(tiktoken_gpt2):
    """7.3 finds the padding by length, the book by value: the same batches for this data."""
    from llms_from_scratch import ch07 as book

    texts = InstructionDataset(load_instruction_data(), tiktoken_gpt2).encoded_texts
    for start in range(0, len(texts), 8):
        batch = texts[start:start + 8]
        for limit in (None, 40):
            ours = custom_collate_fn(batch, allowed_max_length=limit)
            theirs = book.custom_collate_fn(batch, allowed_max_length=limit)
            assert all(torch.equal(a, b) for a, b in zip(ours, theirs)), (start, limit)


def test_the_collate_drafts_pad_and_shift():
    from ch07_instructions.instructions import custom_collate_draft_1, custom_collate_draft_2

    batch = [[0, 1, 2], [3]]
    assert custom_collate_draft_1(batch, pad_token_id=9).tolist() == [[0, 1, 2], [3, 9, 9]]
    inputs, targets = custom_collate_draft_2(batch, pad_token_id=9)
    assert inputs.tolist() == [[0, 1, 2], [3, 9, 9]]
    assert targets.tolist() == [[1, 2, 9], [9, 9, 9]]
