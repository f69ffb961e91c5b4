"""Chapter 7's exercise checks beyond what shared/test_exercises.py runs for every exercise:
the parts of a property check that the learner's *given* objects decide (their function,
their model), and the book's numbers the notebook plots."""

import copy

import torch

from ch07_instructions import book_run
from ch07_instructions import exercise_checks as checks
from shared import check_answer


def test_7_1_checks_the_function_before_the_number(capsys):
    entries = list(checks.PHI3_ENTRIES)
    right = checks._tokens_saved(entries)
    assert check_answer("7.1", right, format_input_phi3=checks._phi3, train_data=entries)
    assert not check_answer("7.1", right, format_input_phi3=lambda entry: None,
                            train_data=entries)
    assert "no answer yet" in capsys.readouterr().out

    def no_newline_after_the_marker(entry):
        return checks._phi3(entry).rstrip("\n")

    assert not check_answer("7.1", right, format_input_phi3=no_newline_after_the_marker,
                            train_data=entries)
    out = capsys.readouterr().out
    assert "different text than the template" in out and "without an input" in out

    def input_always(entry):
        return f"<|user|>\n{entry['instruction']}\n{entry['input']}\n<|assistant|>\n"

    assert not check_answer("7.1", right, format_input_phi3=input_always, train_data=entries)
    assert "entry without an input" in capsys.readouterr().out


def test_7_2_takes_the_books_masking_and_hints_at_ours(capsys):
    assert check_answer("7.2", checks._masking_items)
    assert "right" in capsys.readouterr().out
    ours = lambda entries: checks._masking_items(entries, keep_header=False)  # noqa: E731
    assert not check_answer("7.2", ours)
    out = capsys.readouterr().out
    assert "masks the response header too" in out
    assert "Exercise 7.2: right" not in out
    assert not check_answer("7.2", lambda entries: [ids for ids, _ in
                                                    checks._masking_items(entries)])
    assert "Nothing of the prompt is masked" in capsys.readouterr().out


def test_7_2_expected_masking_keeps_the_header_as_targets():
    entry = checks.MASKING_ENTRIES[0]
    ((ids, book_length),) = checks._masking_items([entry])
    ((_, our_length),) = checks._masking_items([entry], keep_header=False)
    assert our_length - book_length == len(checks._encode(checks.RESPONSE_HEADER))
    targets = checks.custom_collate_fn([(ids, book_length)])[1][0]
    assert targets[book_length - 2] == -100 and targets[book_length - 1] != -100


def test_7_4_inspects_the_model_it_is_given(capsys):
    model, loss = checks._tiny_lora()
    setting = checks._tiny_setting()
    assert check_answer("7.4", loss, lora_model=model, **setting)

    untrained = copy.deepcopy(model)
    for module in untrained.modules():
        if isinstance(module, checks.LinearWithLoRA):
            module.lora.B.data.zero_()
    assert not check_answer("7.4", loss, lora_model=untrained, **setting)
    assert "still zero" in capsys.readouterr().out

    not_frozen = copy.deepcopy(model)
    for parameter in not_frozen.parameters():
        parameter.requires_grad_(True)
    assert not check_answer("7.4", loss, lora_model=not_frozen, **setting)
    assert "still train" in capsys.readouterr().out

    plain = checks._tiny_gpt()
    assert not check_answer("7.4", loss, lora_model=plain, **setting)
    assert "no LoRA layers" in capsys.readouterr().out


def test_7_4_tells_the_exercise_from_a_finetuned_copy_and_from_a_single_step(capsys):
    """Both fakes measure their own loss honestly, and are still refused."""
    setting = checks._tiny_setting()
    train = (setting["train_loader"], setting["training"]["lr"],
             setting["training"]["weight_decay"])

    finetuned = copy.deepcopy(setting["base_model"])  # a stand-in for 7.6's finetuned model
    with torch.no_grad():
        for parameter in finetuned.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    on_the_finetuned_model = checks._do_the_exercise(finetuned, *train)
    loss = checks._val_loss(on_the_finetuned_model, setting["val_loader"], 1)
    assert not check_answer("7.4", loss, lora_model=on_the_finetuned_model, **setting)
    assert "frozen weights are not base_model's" in capsys.readouterr().out

    one_step = checks._do_the_exercise(setting["base_model"], *train, steps=1)
    loss = checks._val_loss(one_step, setting["val_loader"], 1)
    assert not check_answer("7.4", loss, lora_model=one_step, **setting)
    assert "not the one the exercise's 41 steps make" in capsys.readouterr().out

    # the check redoes the exercise on the learner's model and gives it back unchanged
    model, loss = checks._tiny_lora()
    before = {name: p.clone() for name, p in model.state_dict().items()}
    assert check_answer("7.4", loss, lora_model=model, **setting)
    assert all(torch.equal(before[name], p) for name, p in model.state_dict().items())


def test_the_books_logged_run_is_one_consistent_table():
    assert book_run.STEPS_PER_EPOCH == 935 // 8
    assert book_run.LOGGED_STEPS == list(range(0, 2 * book_run.STEPS_PER_EPOCH - 1, 5))
    assert len(book_run.TRAIN_LOSS) == len(book_run.VAL_LOSS) == len(book_run.LOGGED_STEPS)
    # the log's first and last lines, and the losses before training
    assert (book_run.TRAIN_LOSS[0], book_run.VAL_LOSS[0]) == (2.637, 2.626)
    assert (book_run.TRAIN_LOSS[-1], book_run.VAL_LOSS[-1]) == (0.292, 0.659)
    assert book_run.INITIAL == {"train": 3.826, "val": 3.762}
