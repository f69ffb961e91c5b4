"""What running chapter 7 on a GPU needs, checked on the CPU: tensors made on the device they
are given (the `meta` device stands in, where nothing reads values).

shared/test_devices.py runs the chapter's functions and exercise checks on a stand-in GPU."""

import pytest
import torch

from ch07_instructions import instructions
from ch07_instructions.instructions import (
    custom_collate_draft_1,
    custom_collate_draft_2,
    custom_collate_fn,
    dpo_loss,
    generate_responses,
    preference_collate_fn,
    sequence_logprobs,
)
from conftest import tiny_gpt


META = torch.device("meta")


# Devices -----------------------------------------------------------------------------------

def test_the_collate_functions_put_their_tensors_on_the_device_they_are_given():
    batch = [[1, 2, 3], [4]]
    assert custom_collate_draft_1(batch, device=META).device == META
    for collate in (custom_collate_draft_2, custom_collate_fn):
        inputs, targets = collate(batch, device=META)
        assert inputs.device == targets.device == META and inputs.shape == (2, 3)
    pairs = [{"chosen": ([1, 2, 3], 2), "rejected": ([1, 2, 4, 5], 2)}]
    for inputs, targets in preference_collate_fn(pairs, device=META).values():
        assert inputs.device == targets.device == META


def test_sequence_log_probabilities_and_the_dpo_loss_stay_on_their_inputs_device():
    model = tiny_gpt(vocab_size=300, context_length=16).to(META)
    inputs, targets = custom_collate_fn([([1, 2, 3, 4], 2), ([5, 6], 1)], device=META)
    logps = sequence_logprobs(model(inputs), targets)
    assert logps.device == META and logps.shape == (2,)
    loss, chosen, rejected = dpo_loss(logps, logps, logps, logps)
    assert loss.device == chosen.device == rejected.device == META


class LetterTokenizer:
    def encode(self, text, allowed_special=None):
        return [ord(c) % 300 for c in text]


def test_generate_responses_builds_its_prompts_on_the_device_it_is_given(monkeypatch):
    # A model on `meta` cannot be decoded (it has no values): keep what generation returns.
    generated = []
    monkeypatch.setattr(instructions, "token_ids_to_text",
                        lambda ids, tokenizer: generated.append(ids) or "")
    model = tiny_gpt(vocab_size=300, context_length=512).to(META)
    entry = {"instruction": "Say hi.", "input": "", "output": "Hi."}
    prompt_length = len(LetterTokenizer().encode(instructions.format_input(entry)
                                                 + instructions.RESPONSE_HEADER))
    # eos_id=None: testing for the end of text would read values
    generate_responses(model, [entry], LetterTokenizer(), META, max_new_tokens=3, eos_id=None,
                       progress=False)
    assert generated[0].device == META and generated[0].shape == (1, prompt_length + 3)
    with pytest.raises(RuntimeError, match="device"):  # a prompt left on the CPU cannot join
        generate_responses(model, [entry], LetterTokenizer(), "cpu", max_new_tokens=3,
                           eos_id=None, progress=False)
