"""Checks of chapter 7's exercises: the right answers are worked out here, out of the
learner's sight (reading this file gives them away: try the exercise first)."""

import contextlib
import copy
import functools
import itertools
import math
import random

import numpy as np
import tiktoken
import torch
from torch import nn

from shared import (
    RESPONSE_HEADER,
    GPTModel,
    LinearWithLoRA,
    LoRALayer,
    calc_loss_loader,
    custom_collate_fn,
    evaluate_preferences,
    format_input,
    gpt2_config,
    preference_collate_fn,
    replace_linear_with_lora,
    set_seed,
)
from shared.exercises import NOT_TRIED, difference, property_exercise, value_exercise


@functools.cache
def _gpt2():
    return tiktoken.get_encoding("gpt2")


# Exercise 7.1 -------------------------------------------------------------------------------

# Stand-ins in the data's form: every entry has an "input", empty when there is none.
PHI3_ENTRIES = (
    {"instruction": "Name the capital of Italy.", "input": "", "output": "Rome."},
    {"instruction": "Correct the spelling of the word.", "input": "Ocassion",
     "output": "Occasion"},
    {"instruction": "Sort the numbers.", "input": "3, 1, 2", "output": "1, 2, 3"},
)


def _phi3(entry):
    text = f"<|user|>\n{entry['instruction']}"
    if entry["input"]:
        text += f"\n{entry['input']}"
    return text + "\n<|assistant|>\n"


def _tokens_saved(train_data, alpaca_end=RESPONSE_HEADER):
    count = _gpt2().encode
    return sum(len(count(format_input(entry) + alpaca_end)) - len(count(_phi3(entry)))
               for entry in train_data) / len(train_data)


def _template_problem(format_input_phi3):
    if not callable(format_input_phi3):
        return (f"format_input_phi3 should be your function, not a "
                f"{type(format_input_phi3).__name__}.")
    for entry in PHI3_ENTRIES:
        where = "with an input" if entry["input"] else "without an input"
        try:
            text = format_input_phi3(dict(entry))
        except Exception as error:  # noqa: BLE001 - the learner's code may fail in any way
            return (f"format_input_phi3 raises {type(error).__name__}: {error} for an entry "
                    f"{where}.")
        if text is None:
            return NOT_TRIED
        if not isinstance(text, str):
            return f"format_input_phi3 should return a string, not a {type(text).__name__}."
        if text != _phi3(entry):
            return (f"format_input_phi3 gives a different text than the template for an entry "
                    f"{where}: check the markers and every line break (print "
                    f"repr(format_input_phi3(entry)) to see them).")
    return None


@property_exercise("7.1", hints=[  # a wrong template gets its own message first
    "Two things are checked, the template and then the count. The template: compare "
    "print(repr(format_input_phi3(entry))) with the exercise's description, for an entry with "
    "an input and one without. The count: for each entry of train_data, the tokens of "
    "format_input(entry) + RESPONSE_HEADER minus those of format_input_phi3(entry), averaged.",
    "If the message above is not about your template, check the count: both prompts encoded "
    "with the same tokenizer, the Alpaca one with RESPONSE_HEADER, and the difference averaged "
    "over every entry of train_data.",
], examples=lambda: {
    "given": {"format_input_phi3": _phi3, "train_data": list(PHI3_ENTRIES)},
    "right": [_tokens_saved(PHI3_ENTRIES)],
    "wrong": [_tokens_saved(PHI3_ENTRIES) + 1, _tokens_saved(PHI3_ENTRIES, alpaca_end=""),
              -_tokens_saved(PHI3_ENTRIES), "17"],
})
def shorter_template(answer, format_input_phi3, train_data):
    problem = _template_problem(format_input_phi3)
    if problem:
        return problem
    expected = _tokens_saved(train_data)
    tolerance = {"rel_tol": 0, "abs_tol": 0.051}  # a mean rounded to one decimal is right
    mistakes = [
        (_tokens_saved(train_data, alpaca_end=""),
         "The Alpaca prompt the chapter trains with ends with RESPONSE_HEADER: count it too."),
        (-expected, "The sign is reversed: count Alpaca's tokens minus Phi-3's."),
        (expected * len(train_data), "That is the total over train_data; the exercise asks for "
                                     "the mean per entry."),
        (round(expected), "That looks rounded to a whole number: give the mean to one decimal."),
    ]
    for mistaken, message in mistakes:
        if (difference(answer, mistaken, **tolerance) is None
                and difference(answer, expected, **tolerance) is not None):
            return message
    return difference(answer, expected, **tolerance)


# Exercise 7.2 -------------------------------------------------------------------------------

# Stand-ins in the data's form: with and without an input, short and longer responses.
MASKING_ENTRIES = PHI3_ENTRIES + (
    {"instruction": "Rewrite the sentence in the passive voice.",
     "input": "The chef cooks the meal every day.",
     "output": "The meal is cooked every day by the chef."},
    {"instruction": "What is an antonym of 'complicated'?", "input": "",
     "output": "An antonym of 'complicated' is 'simple'."},
)


def _encode(text):
    return _gpt2().encode(text, disallowed_special=())


def _masking_items(entries, keep_header=True):
    """The book's masking (instruction and input) or, keep_header=False, this chapter's."""
    return [(_encode(format_input(entry) + RESPONSE_HEADER + entry["output"]),
             len(_encode(format_input(entry) + ("" if keep_header else RESPONSE_HEADER))))
            for entry in entries]


@property_exercise("7.2", hints=[
    "Each item is (ids, prompt_length): the ids of the whole text, and prompt_length the "
    "number of tokens of format_input(entry) (preamble, instruction and input, without the "
    "response header), whose targets the book masks.",
    "custom_collate_fn sets the targets at positions 0 to prompt_length - 2 to -100: those are "
    "the targets that are prompt tokens, since the target at position i is token i + 1. So "
    "prompt_length is the number of tokens of format_input(entry) alone, and the ids are those "
    "of the whole text.",
], examples=lambda: {
    "right": [_masking_items],
    "wrong": [lambda entries: _masking_items(entries, keep_header=False),
              lambda entries: [ids for ids, _ in _masking_items(entries)],
              lambda entries: [(ids, length + 1) for ids, length in _masking_items(entries)],
              lambda entries: [(ids[:length], length)
                               for ids, length in _masking_items(entries)],
              lambda entries: [[ids, length] for ids, length in _masking_items(entries)],
              lambda entries: [(length, ids) for ids, length in _masking_items(entries)]],
})
def book_masking(book_masking_items):
    if not callable(book_masking_items):
        return (f"The answer is your function book_masking_items itself, not a "
                f"{type(book_masking_items).__name__}.")
    entries = [dict(entry) for entry in MASKING_ENTRIES]
    try:
        theirs = book_masking_items(entries)
    except Exception as error:  # noqa: BLE001 - the learner's code may fail in any way
        return f"book_masking_items raises {type(error).__name__}: {error}."
    if theirs is None:
        return NOT_TRIED
    if not isinstance(theirs, list) or len(theirs) != len(entries):
        return (f"book_masking_items should return a list of {len(entries)} items for "
                f"{len(entries)} entries, one per entry.")
    if any(isinstance(item, list) and len(item) == 2 and isinstance(item[0], list)
           and isinstance(item[1], int) for item in theirs):
        return ("Each item should be a tuple (ids, prompt_length), as "
                "InstructionDataset(..., mask_instruction=True) makes them: custom_collate_fn "
                "reads a list as token ids.")
    if any(isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], int)
           and isinstance(item[1], list) for item in theirs):
        return ("Each item should be (ids, prompt_length), the token ids first: yours gives the "
                "prompt length first, the order of the book's solution.")
    expected = _masking_items(entries)
    try:
        their_inputs, their_targets = custom_collate_fn(theirs)
    except (TypeError, ValueError) as error:
        return f"custom_collate_fn refuses your items: {error}"
    inputs, targets = custom_collate_fn(expected)
    if their_inputs.shape != inputs.shape or not torch.equal(their_inputs, inputs):
        return ("The token ids differ from those of the whole text: each item's ids encode "
                "format_input(entry) + RESPONSE_HEADER + entry['output'].")
    if torch.equal(their_targets, targets):
        return None
    if torch.equal(their_targets, custom_collate_fn(_masking_items(entries, False))[1]):
        return ("That is this chapter's masking, which masks the response header too; the "
                "book's keeps the header's tokens among the targets.")
    if not (their_targets[:, 0] == -100).any():
        return ("Nothing of the prompt is masked: give each item as a tuple (ids, "
                "prompt_length), with the number of prompt tokens whose targets the book masks.")
    return ("Your items mask a different number of targets than the book's: count the tokens "
            "of format_input(entry) alone (preamble, instruction and input).")


# Exercise 7.3 -------------------------------------------------------------------------------

def _sorted_positions(lengths, batch_size=8, descending=False, drop_last=False, extra=0):
    ordered = sorted(lengths, reverse=descending)
    batches = [ordered[i:i + batch_size] for i in range(0, len(ordered), batch_size)]
    if drop_last and len(batches[-1]) < batch_size:
        batches = batches[:-1]
    return sum(len(batch) * (max(batch) + extra) for batch in batches)


@value_exercise("7.3", hints=[
    "Sort the lengths, shortest first, and take them 8 at a time; each batch costs its number "
    "of texts times its longest length.",
    "Try a small case by hand: lengths [3, 1, 2] in batches of 2 sort into [1, 2] and [3], "
    "which cost 2 x 2 + 1 x 3 = 7 positions. Do the same with all the lengths, in batches of "
    "8, keeping the last, shorter batch.",
], mistakes=[
    (lambda expected, lengths: sum(lengths),
     "That counts the tokens of text; each batch also holds the padding up to its longest text."),
    (lambda expected, lengths: sum(len(lengths[i:i + 8]) * max(lengths[i:i + 8])
                                   for i in range(0, len(lengths), 8)),
     "That is the cost of the batches in the texts' own order: sort the lengths first."),
    (lambda expected, lengths: _sorted_positions(lengths, descending=True),
     "Sort shortest first: from longest to shortest, the short batch lands elsewhere."),
    (lambda expected, lengths: _sorted_positions(lengths, drop_last=True),
     "Keep the last batch of fewer texts: the exercise counts every text once."),
    (lambda expected, lengths: _sorted_positions(lengths, extra=1),
     "The inputs are as long as the longest text of the batch: the extra end-of-text token "
     "goes into the targets only."),
    (lambda expected, lengths: 8 * sum(max(sorted(lengths)[i:i + 8])
                                       for i in range(0, len(lengths), 8)),
     "The last batch holds fewer than 8 texts: count only those it holds."),
], examples=lambda: {"given": {"lengths": [5, 9, 3, 12, 7, 7, 30, 2, 11, 4, 6, 8, 10, 13, 1,
                                           16, 5]}})
def sorted_batch_positions(lengths):
    return _sorted_positions(lengths)


# Exercise 7.4 -------------------------------------------------------------------------------

LORA_STEPS = 41  # the exercise's number of steps (fewer when train_loader is shorter): the
# updates up to section 7.6's second evaluation


def _val_loss(model, loader, num_batches):
    """The validation loss as section 7.6's training log measures it (evaluation mode)."""
    model.eval()
    with torch.no_grad():
        return calc_loss_loader(loader, model, next(model.parameters()).device, num_batches)


def _seeded(seed):
    """set_seed(seed) inside, every random generator as it was outside."""
    @contextlib.contextmanager
    def seeded():
        states = random.getstate(), np.random.get_state()
        with torch.random.fork_rng():
            set_seed(seed)
            try:
                yield
            finally:
                random.setstate(states[0])
                np.random.set_state(states[1])
    return seeded()


def _lora_steps(model, train_loader, lr, weight_decay, steps=LORA_STEPS):
    """The exercise's training from its set_seed(123) on: `steps` steps of AdamW over the
    trainable parameters, with the loss over all counted targets."""
    with _seeded(123):
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                                      lr=lr, weight_decay=weight_decay)
        model.train()
        device = next(model.parameters()).device  # the learner's model may be on a GPU
        for inputs, targets in itertools.islice(train_loader, steps):
            inputs, targets = inputs.to(device), targets.to(device)
            loss = nn.functional.cross_entropy(model(inputs).flatten(0, 1), targets.flatten())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()


def _do_the_exercise(base_model, train_loader, lr, weight_decay, steps=LORA_STEPS):
    """The exercise done on a copy of `base_model` (other `steps`: the tests' wrong models)."""
    model = copy.deepcopy(base_model)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    with _seeded(123):
        replace_linear_with_lora(model, rank=8, alpha=16)
    _lora_steps(model, train_loader, lr, weight_decay, steps)
    return model


def _tiny_gpt():
    return GPTModel(gpt2_config(vocab_size=64, context_length=16, emb_dim=16, n_heads=2,
                                n_layers=1, drop_rate=0.0))


@functools.cache
def _tiny_setting():
    """A tiny base model, a shuffled training loader of 40 batches, a 'validation loader',
    and the exercise's settings (TRAINING's lr, weight decay and eval_iter), in the notebook's
    form."""
    with _seeded(0):
        base_model = _tiny_gpt().eval()
        texts = [torch.randint(1, 64, (int(torch.randint(3, 12, (1,))),)).tolist()
                 for _ in range(80)]
    train_loader = torch.utils.data.DataLoader(
        texts, batch_size=2, shuffle=True, drop_last=True,
        collate_fn=functools.partial(custom_collate_fn, pad_token_id=0))
    val_loader = [custom_collate_fn([([1, 2, 3, 4, 5, 6], 3), ([7, 8, 9, 10], 2)],
                                    pad_token_id=0)]
    return {"base_model": base_model, "train_loader": train_loader,
            "val_loader": val_loader,
            "training": {"lr": 0.01, "weight_decay": 0.1, "eval_iter": 1}}


@functools.cache
def _tiny_lora():
    """The tiny setting's right LoRA model, and its loss: the exercise done there."""
    setting = _tiny_setting()
    model = _do_the_exercise(setting["base_model"], setting["train_loader"],
                             setting["training"]["lr"], setting["training"]["weight_decay"])
    return model, _val_loss(model, setting["val_loader"], 1)


def _lora_layers(model):
    return [m for _, m in model.named_modules(remove_duplicate=False)
            if isinstance(m, LinearWithLoRA)]


def _structure_problem(lora_model, base_model):
    """What is wrong with lora_model's make-up (frozen copy of base_model, rank-8 LoRA)."""
    if not isinstance(lora_model, nn.Module):
        return f"lora_model should be your model, not a {type(lora_model).__name__}."
    wrapped = _lora_layers(lora_model)
    if not wrapped:
        return "lora_model has no LoRA layers: apply replace_linear_with_lora to it."
    inside = {id(m.linear) for m in wrapped}
    bare = [m for m in lora_model.modules() if isinstance(m, nn.Linear) and id(m) not in inside]
    if bare:
        return (f"{len(bare)} linear layer(s) of lora_model have no LoRA update: "
                f"replace_linear_with_lora replaces every one.")
    if any(m.lora.A.shape[1] != 8 or abs(m.lora.scaling - 2.0) > 1e-9 for m in wrapped):
        return "The LoRA layers should have rank 8 and alpha 16."
    lora_ids = {id(p) for m in wrapped for p in m.lora.parameters()}
    if any(p.requires_grad for p in lora_model.parameters() if id(p) not in lora_ids):
        return ("Some of the original weights still train: freeze every parameter before "
                "adding the LoRA layers.")
    if not all(p.requires_grad for m in wrapped for p in m.lora.parameters()):
        return "The LoRA layers' own A and B matrices should be trainable."
    frozen = {name.replace(".linear.", "."): p for name, p in lora_model.named_parameters()
              if id(p) not in lora_ids}
    base = dict(base_model.named_parameters())
    if frozen.keys() != base.keys() or not all(
            frozen[name].shape == p.shape and torch.equal(frozen[name], p)
            for name, p in base.items()):
        return ("lora_model's frozen weights are not base_model's: LoRA goes on a copy of "
                "base_model, the model before finetuning (not on the finetuned model).")
    if all(bool((m.lora.B == 0).all()) for m in wrapped):
        return "Every LoRA B matrix is still zero: lora_model has not been trained yet."
    return None


@property_exercise("7.4", hints=[
    "Freeze first (requires_grad_(False) on every parameter), then set_seed(123) and "
    "replace_linear_with_lora(lora_model, rank=8, alpha=16): only the new A and B matrices "
    "train, and A's random start is then the same as the check's.",
    "Call set_seed(123) twice: right before replace_linear_with_lora and right before the "
    "loop over the first 41 batches of train_loader; take AdamW over the parameters that "
    "require gradients, with TRAINING[\"lr\"] and TRAINING[\"weight_decay\"]. Then measure "
    "in evaluation mode, under torch.no_grad(): calc_loss_loader(val_loader, lora_model, "
    "device, num_batches=TRAINING[\"eval_iter\"]).",
], examples=lambda: {
    "given": {"lora_model": _tiny_lora()[0], **_tiny_setting()},
    "right": [_tiny_lora()[1]],
    "wrong": [_tiny_lora()[1] + 0.5, _tiny_lora()[1] * 2, "low"],
})
def lora_finetuning(answer, lora_model, base_model, train_loader, val_loader, training):
    if lora_model is None:
        return NOT_TRIED
    problem = _structure_problem(lora_model, base_model)
    if problem:
        return problem
    measured = _val_loss(lora_model, val_loader, training["eval_iter"])
    problem = difference(answer, measured, rel_tol=0, abs_tol=1e-3)
    if problem:
        return (f"{problem} Measure the lora_model you pass, after its training, with "
                f"calc_loss_loader(val_loader, lora_model, device, "
                f"num_batches=TRAINING['eval_iter']), in evaluation mode.")
    # The exercise redone on lora_model itself (its LoRA matrices set back to their seeded
    # start, then restored): no second copy of the model, whatever its size.
    wrapped = _lora_layers(lora_model)
    kept = [(p.detach().clone(), None if p.grad is None else p.grad.clone())
            for m in wrapped for p in (m.lora.A, m.lora.B)]
    was_training = lora_model.training
    try:
        with _seeded(123):  # replace_linear_with_lora's draws, in its order
            starts = [LoRALayer(m.lora.A.shape[0], m.lora.B.shape[1], 8, 16) for m in wrapped]
        with torch.no_grad():
            for m, start in zip(wrapped, starts):
                m.lora.A.copy_(start.A)
                m.lora.B.zero_()
        _lora_steps(lora_model, train_loader, training["lr"], training["weight_decay"])
        expected = _val_loss(lora_model, val_loader, training["eval_iter"])
    finally:
        with torch.no_grad():
            for p, (value, grad) in zip((p for m in wrapped for p in (m.lora.A, m.lora.B)),
                                        kept):
                p.copy_(value)
                p.grad = grad
        lora_model.train(was_training)
    if difference(measured, expected, rel_tol=0, abs_tol=1e-3) is not None:
        return ("Your LoRA model is not the one the exercise's 41 steps make from base_model "
                f"(its validation loss is {'higher' if measured > expected else 'lower'}). "
                "Check set_seed(123) right before replace_linear_with_lora and right before "
                "the loop, exactly 41 batches of train_loader, and AdamW's lr and "
                "weight_decay.")
    return None


# Exercise 7.5 -------------------------------------------------------------------------------

def _unigram_loss(train=(5, 5, 7), validation=(5, 9), vocab_size=10, smoothing=1,
                  log=torch.log, reduce=torch.mean):
    counts = torch.bincount(torch.tensor(train), minlength=vocab_size).double()
    probs = (counts + smoothing) / (counts.sum() + smoothing * vocab_size)
    return reduce(-log(probs[torch.tensor(validation)])).item()


@value_exercise("7.5", hints=[
    "Add one to every token's count, then divide by the total count plus the vocabulary "
    "size; a target's loss is -ln of its probability.",
    "Write down each target token's count plus one and the total plus the vocabulary size; "
    "the loss is the mean of the two targets' -ln p, not their sum.",
], mistakes=[
    (lambda expected: _unigram_loss(reduce=torch.sum),
     "That is the sum over the two targets; the loss is their mean."),
    (lambda expected: _unigram_loss(log=torch.log10),
     "Nats are natural logarithms: use ln, not log10."),
    (lambda expected: _unigram_loss(log=torch.log2),
     "Nats are natural logarithms: log2 gives bits."),
])
def unigram_by_hand():
    return _unigram_loss()


# Exercise 7.6 -------------------------------------------------------------------------------

_BETA = 0.1


@value_exercise("7.6", hints=[
    "Chain rule: the loss depends on the policy's log-probabilities only through the margin "
    "m = β·(change of chosen) − β·(change of rejected). What is the derivative of −log σ(m) "
    "at m = 0?",
    "Differentiate −log σ(m) with respect to m (σ'(m) = σ(m)·σ(−m)), then go through m to each "
    "log-probability. Or let autograd do it: dpo_loss on tensors made with "
    "requires_grad=True.",
], mistakes=[
    (lambda expected: (-0.5, 0.5),
     "Where does β enter? The margin is β times the difference of the log-ratios, and the "
     "chain rule goes through the margin."),
    (lambda expected: (-expected[0], -expected[1]),
     "The signs: raising the chosen response's probability lowers the loss, so that "
     "derivative is negative."),
    (lambda expected: (-_BETA, _BETA),
     "σ's factor is missing: at m = 0 the derivative of −log σ(m) is −σ(0), not −1."),
])
def dpo_first_gradient():
    return (-_BETA / 2, _BETA / 2)


# Exercise 7.7 -------------------------------------------------------------------------------

@functools.cache
def _tiny_preferences():
    """A tiny reference, a perturbed copy as the policy, and a batch of four pairs."""
    with torch.random.fork_rng():
        torch.manual_seed(1)
        reference = _tiny_gpt().eval()
        policy = _tiny_gpt().eval()
        policy.load_state_dict(reference.state_dict())
        with torch.no_grad():
            for parameter in policy.parameters():
                parameter.add_(0.3 * torch.randn_like(parameter))
    pairs = [{"chosen": ([1, 2, 3, 4, 5], 3), "rejected": ([1, 2, 3, 6, 7, 8], 3)},
             {"chosen": ([9, 10, 11], 2), "rejected": ([9, 10, 12, 13], 2)},
             {"chosen": ([14, 15, 16, 17], 2), "rejected": ([14, 15, 18], 2)},
             {"chosen": ([20, 21, 22, 23, 24], 4), "rejected": ([20, 21, 22, 23, 25], 4)}]
    return policy, reference, preference_collate_fn(pairs, pad_token_id=0)


@value_exercise("7.7", hints=[
    "evaluate_preferences returns a dict of three numbers; the accuracy is the fraction of "
    "pairs whose margin is positive.",
    "Only the sign of each margin counts for the accuracy: does multiplying by a positive β "
    "ever change a sign? Then measure it as the exercise says.",
], mistakes=[
    (lambda expected, policy, reference, first_test_batch: evaluate_preferences(
        [first_test_batch], policy, reference, beta=1.0)["margin"],
     "That is the mean margin; the exercise asks for the accuracy."),
    (lambda expected, **given: expected * 100,
     "Give the accuracy as a fraction between 0 and 1, not as a percentage."),
], examples=lambda: {"given": dict(zip(("policy", "reference", "first_test_batch"),
                                       _tiny_preferences()))})
def accuracy_with_a_larger_beta(policy, reference, first_test_batch):
    return evaluate_preferences([first_test_batch], policy, reference, beta=1.0)["accuracy"]


# Exercise 7.8 -------------------------------------------------------------------------------

@value_exercise("7.8", hints=[
    "group_advantages subtracts the group's mean and divides by the group's standard deviation "
    "(torch's std: n - 1 in the denominator) plus 1e-4. Two numbers: the right answer's "
    "advantage in the first group, and any answer's in a group of eight wrong ones.",
    "Call it yourself: group_advantages(torch.tensor([[1.1] + [0.1] * 7, [0.1] * 8])). In the "
    "second group every reward equals the mean.",
], mistakes=[
    (lambda expected: (7 / 8 / math.sqrt(1 / 8 * 7 / 8), 0.0),
     "That divides by the population's standard deviation (n in the denominator); torch's std, "
     "which group_advantages uses, divides by n - 1."),
    (lambda expected: (7 / 8, 0.0),
     "That is the reward less the group's mean, without the division by the standard deviation "
     "that group_advantages makes by default."),
], rel_tol=1e-3, abs_tol=1e-3)
def group_of_eight():
    rewards = torch.tensor([[1.1] + [0.1] * 7, [0.1] * 8])
    centred = rewards - rewards.mean(dim=-1, keepdim=True)
    advantages = centred / (rewards.std(dim=-1, keepdim=True) + 1e-4)
    return (advantages[0, 0].item(), advantages[1, 0].item())


# Exercise 7.9 -------------------------------------------------------------------------------

@value_exercise("7.9", hints=[
    "Write both averages. Answering with two digits earns exact_match (1 with probability p), "
    "the format's 0.1 and the bonus for two characters; answering nothing earns only the bonus "
    "for no character.",
    "brevity_bonus(\"89\") and brevity_bonus(\"\") give the two bonuses. Set p + 0.1 + (the "
    "first) equal to (the second) and solve for p.",
], mistakes=[
    (lambda expected: expected + 0.1,
     "The format reward is missing: a wrong answer of two digits still earns 0.1."),
    (lambda expected: expected * 100,
     "Give p as a fraction between 0 and 1, not as a percentage."),
    (lambda expected: 1 - expected,
     "That is the probability of a wrong answer at the break-even point; the exercise asks for "
     "the accuracy p."),
], rel_tol=1e-3, abs_tol=1e-3)
def silence_pays_below():
    return 0.25 * (4 - 0) - 0.1 - 0.25 * (4 - 2)
