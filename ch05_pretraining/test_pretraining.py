"""Tests of chapter 5: losses, the training loops, decoding, checkpoints, the LR schedule."""

import math

import matplotlib.pyplot as plt
import pytest
import tiktoken
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ch04_gpt_model.final_model import GPTModel
from ch04_gpt_model.gpt_model import generate_text_simple
from ch05_pretraining.decoding import (
    MinP,
    RepetitionPenalty,
    Temperature,
    TopK,
    TopP,
    generate_text,
    next_token,
    next_token_probs,
    sampling_processors,
)
from ch05_pretraining.pretraining import (
    calc_loss_batch,
    calc_loss_loader,
    generate_and_print_sample,
    plot_losses,
    plot_values,
    token_ids_to_text,
    train_model_simple,
)
from ch05_pretraining.training import (
    batches_per_step,
    cosine_schedule,
    find_highest_gradient,
    train_model,
    train_model_simple_hooked,
)
from shared import load_checkpoint, save_checkpoint  # chapter 5's checkpoints


TINY = {"vocab_size": 50, "context_length": 8, "emb_dim": 16, "n_heads": 2, "n_layers": 2,
        "drop_rate": 0.1, "qkv_bias": False}


class NextIdModel(nn.Module):
    """Predicts (last id + 1) mod vocab with certainty: a model whose outputs we know."""

    def __init__(self, vocab=10):
        super().__init__()
        self.vocab = vocab
        self.seen_lengths = []

    def forward(self, idx):
        self.seen_lengths.append(idx.shape[1])
        return nn.functional.one_hot((idx + 1) % self.vocab, self.vocab).float() * 10


def loaders(n=24, generator=None):
    """(input, target) windows of a repeating sequence the model can learn; the training
    loader shuffles with the global generator (as the course's loaders do) or `generator`."""
    ids = torch.arange(n * 9) % 23
    windows = ids.unfold(0, 9, 9)
    data = TensorDataset(windows[:, :-1], windows[:, 1:])
    return (DataLoader(data, batch_size=4, shuffle=True, drop_last=True, generator=generator),
            DataLoader(data, batch_size=4, shuffle=False))


# Losses ------------------------------------------------------------------------------------

def test_calc_loss_batch_is_mean_negative_log_probability_of_targets():
    torch.manual_seed(0)
    model = GPTModel(TINY).eval()
    x, y = torch.randint(0, 50, (2, 5)), torch.randint(0, 50, (2, 5))
    log_probs = torch.log_softmax(model(x), dim=-1)
    expected = -log_probs.gather(-1, y.unsqueeze(-1)).mean()
    torch.testing.assert_close(calc_loss_batch(x, y, model, "cpu"), expected)


def test_calc_loss_loader_limits_batches_and_handles_empty_loaders():
    torch.manual_seed(0)
    model = GPTModel(TINY).eval()
    _, val = loaders()
    with torch.no_grad():
        first_two = calc_loss_loader(val, model, "cpu", num_batches=2)
        by_hand = [calc_loss_batch(x, y, model, "cpu").item() for x, y in list(val)[:2]]
        assert first_two == pytest.approx(sum(by_hand) / 2)
        assert calc_loss_loader(val, model, "cpu", num_batches=1000) == pytest.approx(
            calc_loss_loader(val, model, "cpu"))
    empty = DataLoader(TensorDataset(torch.zeros(0, 8, dtype=torch.long)), batch_size=2)
    assert math.isnan(calc_loss_loader(empty, model, "cpu"))


# Training ----------------------------------------------------------------------------------

def train(eval_freq, epochs=3, seed=0, generator=None):
    torch.manual_seed(seed)
    model = GPTModel(TINY)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.1)
    train_loader, val_loader = loaders(generator=generator)
    losses = train_model_simple_hooked(model, train_loader, val_loader, optimizer, "cpu", epochs,
                                       eval_freq=eval_freq, eval_iter=2, progress=False)
    return model, losses


def test_loss_decreases_on_a_small_run():
    _, (train_losses, val_losses, tokens_seen) = train(eval_freq=5, epochs=6)
    assert train_losses[-1] < train_losses[0] - 1.0
    assert val_losses[-1] < val_losses[0] - 1.0
    assert tokens_seen == sorted(tokens_seen) and tokens_seen[-1] > tokens_seen[0]


class LetterTokenizer:
    """Letters a-z as ids 0-25: enough for the sample the loops print after each epoch."""

    def encode(self, text, allowed_special=None):
        return [ord(c) - ord("a") for c in text]

    def decode(self, ids):
        return "".join(chr(ord("a") + i % 26) for i in ids)


def test_training_matches_the_books_loop_draw_for_draw():
    """Same seed, same model, same data: the book's train_model_simple (the llms-from-scratch
    package, a test oracle) and ours report the same losses and end with the same weights."""
    from llms_from_scratch import ch05 as oracle
    results = []
    for loop in (train_model_simple, train_model_simple_hooked, oracle.train_model_simple):
        torch.manual_seed(0)
        model = GPTModel(TINY)
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.1)
        train_loader, val_loader = loaders()
        losses = loop(model, train_loader, val_loader, optimizer, "cpu", 3, eval_freq=2,
                      eval_iter=2, start_context="abc", tokenizer=LetterTokenizer())
        results.append((losses, model.state_dict()))
    (ours, our_weights), (hooked, hooked_weights), (book, book_weights) = results
    assert ours == hooked == book
    for key, value in our_weights.items():
        assert torch.equal(value, book_weights[key]) and torch.equal(value, hooked_weights[key])


def test_train_model_matches_appendix_d_draw_for_draw():
    """Appendix D's train_model (warmup, cosine decay, clipping from the end of warmup, in the
    book's repository's corrected version) and ours: the same losses, rates and weights."""
    from llms_from_scratch import appendix_d as oracle
    results = []
    for loop in (train_model, oracle.train_model):
        torch.manual_seed(0)
        model = GPTModel(TINY)
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.1)
        train_loader, val_loader = loaders()
        extra = {"progress": False} if loop is train_model else {}
        results.append((loop(model, train_loader, val_loader, optimizer, "cpu", 3, 2, 2, "abc",
                             LetterTokenizer(), warmup_steps=4, initial_lr=1e-4, min_lr=1e-5,
                             **extra), model.state_dict()))
    (ours, our_weights), (book, book_weights) = results
    assert ours == book
    for key, value in our_weights.items():
        assert torch.equal(value, book_weights[key]), key


def test_the_helpers_work_on_the_books_own_model(capsys):
    """The book's GPTModel has no cfg: the context length comes from its position embedding."""
    from llms_from_scratch import ch04 as book
    torch.manual_seed(0)
    model = book.GPTModel(TINY)
    generate_and_print_sample(model, LetterTokenizer(), "cpu", "abc")
    assert len(capsys.readouterr().out.strip()) == 53  # the prompt and 50 new tokens
    prompt = torch.tensor([[1, 2, 3]])
    assert torch.equal(generate_text(model.eval(), prompt, 12),
                       generate_text_simple(model, prompt, 12, context_size=8))
    train_loader, val_loader = loaders()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    train_model_simple(model, train_loader, val_loader, optimizer, "cpu", 1, eval_freq=5,
                       eval_iter=1, start_context="abc", tokenizer=LetterTokenizer())
    train_model(model, train_loader, val_loader, optimizer, "cpu", 1, 5, 1, "abc",
                LetterTokenizer(), warmup_steps=2)


def test_training_reports_losses_and_samples_through_the_progress_bar(capsys, monkeypatch):
    """In a stored run (text bars), the losses and the sample print above the finished bar."""
    monkeypatch.setenv("LLM_COURSE_TEXT_PROGRESS", "1")

    class DigitTokenizer:
        def encode(self, text, allowed_special=None):
            return [int(c) for c in text]

        def decode(self, ids):
            return "".join(str(i % 10) for i in ids)

    torch.manual_seed(0)
    model = GPTModel(TINY)
    train_loader, val_loader = loaders()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    train_model_simple_hooked(model, train_loader, val_loader, optimizer, "cpu", 2, eval_freq=5,
                              eval_iter=1, start_context="123", tokenizer=DigitTokenizer(),
                              after_epoch=lambda epoch: f"epoch {epoch + 1} done")
    # What a notebook shows: on each line, the text after its last carriage return.
    lines = [line.rsplit("\r", 1)[-1] for line in capsys.readouterr().out.split("\n")]
    shown = [line for line in lines if line.strip()]
    assert shown[0].startswith("Ep 1 (Step 000000): Train loss")
    assert "epoch 1 done" in shown and "epoch 2 done" in shown
    assert shown[-1].startswith("training: 100%|") and "12/12" in shown[-1]


def test_after_epoch_and_count_seen_adapt_the_loop_to_other_tasks():
    train_loader, val_loader = loaders()
    model = GPTModel(TINY)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    epochs = []
    _, _, seen = train_model_simple_hooked(model, train_loader, val_loader, optimizer, "cpu", 2,
                                           eval_freq=6, eval_iter=1, count_seen=len,
                                           after_epoch=epochs.append, progress=False)
    assert epochs == [0, 1] and seen == [4, 28]  # examples (batches of 4), steps 0 and 6


def test_batches_per_step_groups_batches_and_keeps_a_short_last_group():
    assert list(batches_per_step(range(5), 2)) == [[0, 1], [2, 3], [4]]
    assert list(batches_per_step(range(3))) == [[0], [1], [2]]


def test_plot_values_puts_what_was_seen_above_each_epoch():
    # Accuracies measured at the end of epochs 1..3 of 1,040 examples each: the top axis
    # must put 1,040 above epoch 1 (it once started at 0 there).
    fig = plot_values(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([1040.0, 2080.0, 3120.0]),
                      [0.9, 0.95, 0.97], [0.88, 0.9, 0.93], label="accuracy",
                      seen_label="examples seen")
    bottom, top = fig.axes
    assert top.get_xlim() == pytest.approx(tuple(1040 * x for x in bottom.get_xlim()))
    assert top.get_xlabel() == "examples seen" and bottom.get_ylabel() == "accuracy"
    plt.close(fig)


def test_plot_losses_takes_the_books_arguments_and_returns_nothing():
    assert plot_losses([1.0, 2.0], [100, 200], [5.0, 4.0], [5.5, 5.0]) is None
    bottom, top = plt.gcf().axes
    assert bottom.get_ylabel() == "loss" and top.get_xlabel() == "tokens seen"
    plt.close("all")


def test_resuming_from_a_checkpoint_reproduces_an_uninterrupted_run(tmp_path):
    train_loader, val_loader = loaders()

    schedule = cosine_schedule(3e-3, 4 * len(train_loader), warmup_steps=3)  # the whole run's

    def run(model, optimizer, epochs, start_step=0):
        return train_model(model, train_loader, val_loader, optimizer, "cpu", epochs,
                           eval_freq=5, eval_iter=1, start_context=None, tokenizer=None,
                           warmup_steps=3, lr_schedule=schedule, start_step=start_step,
                           progress=False)[0]

    torch.manual_seed(5)
    model = GPTModel(TINY)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    uninterrupted_losses = run(model, optimizer, 4)
    uninterrupted = model.state_dict()

    torch.manual_seed(5)
    model = GPTModel(TINY)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first_losses = run(model, optimizer, 2)
    save_checkpoint(tmp_path / "ckpt.pth", model, optimizer, step=2 * len(train_loader))
    torch.manual_seed(999)  # anything may happen between stop and restart
    model = GPTModel(TINY)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    step = load_checkpoint(tmp_path / "ckpt.pth", model, optimizer)["step"]
    assert step % 5 != 0  # so the resumed run must not evaluate at its first step
    second_losses = run(model, optimizer, 2, start_step=step)
    assert first_losses + second_losses == uninterrupted_losses
    for key, value in uninterrupted.items():
        assert torch.equal(value, model.state_dict()[key]), key


def test_gradient_clipping_and_schedule_are_applied():
    torch.manual_seed(0)
    model = GPTModel(TINY)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    train_loader, val_loader = loaders()
    seen = []
    original_step = optimizer.step

    def recording_step(*args, **kwargs):
        norm = torch.norm(torch.stack([p.grad.norm() for p in model.parameters()]))
        seen.append((optimizer.param_groups[0]["lr"], norm.item()))
        return original_step(*args, **kwargs)

    optimizer.step = recording_step
    *_, lrs = train_model(model, train_loader, val_loader, optimizer, "cpu", 1, eval_freq=None,
                          eval_iter=1, start_context=None, tokenizer=None, warmup_steps=2,
                          lr_schedule=lambda step: 0.01 * (step + 1), max_grad_norm=0.5,
                          progress=False)
    assert [lr for lr, _ in seen] == pytest.approx([0.01 * (i + 1) for i in range(len(seen))])
    assert lrs == [lr for lr, _ in seen]
    assert any(norm > 0.5 for _, norm in seen[:2])  # warmup: not clipped yet
    assert all(norm <= 0.5 + 1e-5 for _, norm in seen[2:])


def test_train_model_warms_up_to_the_optimizers_rate_and_decays_to_min_lr():
    torch.manual_seed(0)
    model = GPTModel(TINY)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    train_loader, val_loader = loaders()
    *_, lrs = train_model(model, train_loader, val_loader, optimizer, "cpu", 2, None, 1, None,
                          None, warmup_steps=4, initial_lr=1e-4, min_lr=1e-5, progress=False)
    assert lrs == [cosine_schedule(1e-3, len(lrs), 4, 1e-4, 1e-5)(step)
                   for step in range(len(lrs))]
    assert lrs[0] == 1e-4 and max(lrs) == lrs[4] == pytest.approx(1e-3)


def test_find_highest_gradient_is_the_largest_entry_of_any_gradient():
    torch.manual_seed(0)
    model = GPTModel(TINY)
    assert find_highest_gradient(model) is None
    x = torch.randint(0, 50, (2, 5))
    calc_loss_batch(x, x, model, "cpu").backward()
    highest = max(p.grad.max() for p in model.parameters() if p.grad is not None)
    assert find_highest_gradient(model) == highest


# Decoding ----------------------------------------------------------------------------------

def test_greedy_decoding_follows_the_model():
    out = generate_text(NextIdModel(), torch.tensor([[3]]), max_new_tokens=4, context_size=5)
    assert out.tolist() == [[3, 4, 5, 6, 7]]


def test_generate_with_defaults_is_chapter_4s_greedy_decoder():
    torch.manual_seed(0)
    model = GPTModel(TINY).eval()
    prompt = torch.tensor([[4, 8, 15, 16, 23, 42, 7, 1, 2, 3]])  # longer than the context
    with pytest.warns(UserWarning, match="generate_text reads only its last 8"):
        tokens = generate_text(model, prompt, 12, context_size=8)
    torch.testing.assert_close(tokens, generate_text_simple(model, prompt, 12, context_size=8))


def test_top_k_1_sampling_equals_greedy():
    torch.manual_seed(0)
    model = GPTModel(TINY).eval()
    prompt = torch.tensor([[1, 2, 3]])
    greedy = generate_text(model, prompt, 10, context_size=8)
    sampled = generate_text(model, prompt, 10, context_size=8, temperature=1.5, top_k=1)
    assert torch.equal(greedy, sampled)


def test_fixed_seed_reproduces_sampled_text_and_other_seeds_differ():
    torch.manual_seed(0)
    model = GPTModel(TINY).eval()
    prompt = torch.tensor([[1, 2, 3]])

    def sample(seed):
        torch.manual_seed(seed)
        return generate_text(model, prompt, 20, context_size=8, temperature=2.0, top_p=0.95)

    assert torch.equal(sample(1), sample(1))
    assert not torch.equal(sample(1), sample(2))


def test_long_prompts_are_cropped_to_the_context():
    model = NextIdModel()
    with pytest.warns(UserWarning, match="its first 25 are dropped"):
        out = generate_text(model, torch.arange(30).unsqueeze(0) % 10, max_new_tokens=3,
                       context_size=5)
    assert out.shape == (1, 33)
    assert set(model.seen_lengths) == {5}


def test_generation_stops_at_eos_without_appending_it():
    out = generate_text(NextIdModel(), torch.tensor([[3]]), max_new_tokens=10, context_size=5,
                   eos_id=6)
    assert out.tolist() == [[3, 4, 5]]


def test_next_token_probs_is_one_step_of_each_strategy():
    logits = torch.tensor([[2.0, 1.0, 0.5, -1.0]])
    torch.testing.assert_close(next_token_probs(logits), torch.tensor([[1.0, 0.0, 0.0, 0.0]]))
    torch.testing.assert_close(next_token_probs(logits, temperature=1.0),
                               torch.softmax(logits, dim=-1))
    torch.testing.assert_close(next_token_probs(logits, temperature=2.0),
                               torch.softmax(logits / 2, dim=-1))
    top_2 = next_token_probs(logits, temperature=1.0, top_k=2)
    expected = torch.zeros(1, 4)
    expected[0, :2] = torch.softmax(torch.tensor([2.0, 1.0]), dim=-1)
    torch.testing.assert_close(top_2, expected)
    nucleus = next_token_probs(logits, temperature=1.0, top_p=0.5)
    assert nucleus[0].tolist() == [1.0, 0.0, 0.0, 0.0]
    vector = next_token_probs(logits[0], temperature=1.0, top_k=3)  # one row, no batch axis
    assert vector.shape == (4,) and vector[3] == 0


def test_next_token_draws_a_random_number_only_when_sampling():
    logits = torch.tensor([[2.0, 1.0, 0.5, -1.0]])
    state = torch.get_rng_state()
    assert next_token(logits).tolist() == [[0]]
    assert torch.equal(torch.get_rng_state(), state)  # greedy: no draw
    torch.manual_seed(3)
    drawn = next_token(logits, temperature=1.0)
    torch.manual_seed(3)
    assert torch.equal(drawn, torch.multinomial(torch.softmax(logits, -1), 1))


def test_generate_reads_the_context_length_from_the_model():
    torch.manual_seed(0)
    model = GPTModel(TINY).eval()
    prompt = torch.tensor([[4, 8, 15, 16, 23, 42, 7, 1, 2, 3]])  # longer than the context
    with pytest.warns(UserWarning, match="more than context_size=8"):  # read from the model
        assert torch.equal(generate_text(model, prompt, 5),
                           generate_text(model, prompt, 5, context_size=8))


def test_top_p_of_1_keeps_every_token_of_a_large_vocabulary():
    logits = 3 * torch.randn(4, 50257, generator=torch.Generator().manual_seed(0))
    assert torch.equal(TopP(1.0)(logits, None), logits)  # float32 sums reach 1 before the end


def test_top_p_keeps_the_smallest_set_reaching_p():
    logits = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log()
    for top_p, expected in [(0.7, [0.625, 0.375, 0.0, 0.0]), (0.5, [1.0, 0.0, 0.0, 0.0]),
                            (1.0, [0.5, 0.3, 0.15, 0.05])]:
        torch.testing.assert_close(torch.softmax(TopP(top_p)(logits, None), dim=-1),
                                   torch.tensor([expected]))


# Logits processors (5.3.4) -----------------------------------------------------------------

@pytest.mark.parametrize("options", [
    {"temperature": 0.7}, {"temperature": 1.0, "top_k": 5}, {"temperature": 1.3, "top_p": 0.8},
    {"temperature": 1.0, "min_p": 0.05}, {"temperature": 0.9, "repetition_penalty": 1.3},
    {"temperature": 0.8, "top_k": 20, "top_p": 0.9, "min_p": 0.02, "repetition_penalty": 1.2},
])
def test_the_processors_give_transformers_probabilities(options):
    import transformers

    hf = transformers.LogitsProcessorList()
    if "repetition_penalty" in options:
        hf.append(transformers.RepetitionPenaltyLogitsProcessor(options["repetition_penalty"]))
    hf.append(transformers.TemperatureLogitsWarper(options["temperature"]))
    for key, make in [("top_k", transformers.TopKLogitsWarper),
                      ("top_p", transformers.TopPLogitsWarper),
                      ("min_p", transformers.MinPLogitsWarper)]:
        if key in options:
            hf.append(make(options[key]))
    generator = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(4, 50, generator=generator)
    tokens = torch.randint(0, 50, (4, 12), generator=generator)
    expected = torch.softmax(hf(tokens, logits.clone()), dim=-1)
    torch.testing.assert_close(next_token_probs(logits, tokens=tokens, **options), expected)


def test_a_repetition_penalty_makes_repeats_rarer_and_one_changes_nothing():
    logits = torch.tensor([[2.0, -1.0, 0.5, 1.5]])
    tokens = torch.tensor([[0, 1, 1]])  # tokens 0 and 1 were seen
    assert RepetitionPenalty(2.0)(logits, tokens).tolist() == [[1.0, -2.0, 0.5, 1.5]]
    assert torch.equal(RepetitionPenalty(1.0)(logits, tokens), logits)
    assert next_token(logits).item() == 0
    greedy = sampling_processors(repetition_penalty=2.0)  # it applies when greedy too
    assert next_token(logits, processors=greedy, tokens=tokens).item() == 3


def test_min_p_keeps_the_tokens_at_least_min_p_times_as_likely_as_the_best():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    kept = torch.softmax(MinP(0.2)(probs.log(), None), dim=-1)  # 0.2 * 0.5 = 0.1: 0.05 goes
    torch.testing.assert_close(kept, torch.tensor([[0.5, 0.3, 0.15, 0.0]]) / 0.95)


def test_sampling_processors_are_generates_options_in_transformers_order():
    assert [type(p) for p in sampling_processors(1.0, 5, 0.9, 0.1, 1.2)] == [
        RepetitionPenalty, TopK, Temperature, TopP, MinP]
    assert [type(p) for p in sampling_processors(0.0, 5, 0.9, 0.1, 1.2)] == [RepetitionPenalty]
    assert sampling_processors() == []


def test_generate_takes_your_own_processor_and_the_fast_decoder_gives_the_same_tokens():
    from ch05_pretraining.fast_path import FastDecoder

    torch.manual_seed(0)
    model = GPTModel(TINY).eval()
    prompt = torch.tensor([[4, 8, 15]])
    plain = generate_text(model, prompt, 6)

    def ban(token):
        return lambda logits, tokens: logits.index_fill(-1, torch.tensor([token]), -torch.inf)

    banned = generate_text(model, prompt, 6, logits_processors=[ban(plain[0, 3].item())])
    assert plain[0, 3].item() not in banned[0, 3:].tolist()
    for options in [{"repetition_penalty": 1.5}, {"temperature": 1.0, "min_p": 0.1},
                    {"logits_processors": [ban(plain[0, 3].item())]}]:
        torch.manual_seed(1)
        expected = generate_text(model, prompt, 6, **options)
        torch.manual_seed(1)
        assert torch.equal(generate_text(FastDecoder(model), prompt, 6, **options), expected)


# Learning-rate schedule --------------------------------------------------------------------

def test_cosine_schedule_warms_up_then_decays_to_the_minimum():
    schedule = cosine_schedule(peak_lr=1.0, total_steps=110, warmup_steps=10, initial_lr=0.1,
                               min_lr=0.01)
    assert schedule(0) == pytest.approx(0.1)
    assert schedule(5) == pytest.approx(0.55)
    assert schedule(10) == pytest.approx(1.0)
    assert schedule(60) == pytest.approx(0.505)
    assert schedule(110) == pytest.approx(0.01)
    decay = [schedule(s) for s in range(10, 111)]
    assert decay == sorted(decay, reverse=True)


# KV-cache generation (5.7) -----------------------------------------------------------------

def test_cached_greedy_decoding_gives_the_uncached_tokens_for_200_tokens():
    torch.manual_seed(0)
    model = GPTModel({**TINY, "context_length": 64, "emb_dim": 32}).eval()
    prompt = torch.tensor([[4, 8, 15, 16, 23]])
    cached = generate_text(model, prompt, 200, context_size=64)  # slides past the context at 64
    uncached = generate_text(model, prompt, 200, context_size=64, use_cache=False)
    assert cached.shape == (1, 205)
    assert torch.equal(cached, uncached)


@pytest.mark.parametrize("options", [{"temperature": 1.5}, {"temperature": 1.0, "top_k": 5},
                                     {"temperature": 2.0, "top_p": 0.9}])
def test_cached_sampling_draws_the_same_tokens_as_uncached(options):
    torch.manual_seed(0)
    model = GPTModel(TINY).eval()
    prompt = torch.tensor([[1, 2, 3], [4, 5, 6]])
    torch.manual_seed(7)
    cached = generate_text(model, prompt, 12, context_size=8, **options)
    torch.manual_seed(7)
    uncached = generate_text(model, prompt, 12, context_size=8, use_cache=False, **options)
    assert torch.equal(cached, uncached)


def test_the_cache_feeds_each_token_once_until_the_window_slides():
    torch.manual_seed(0)
    model = GPTModel(TINY).eval()
    fed = []
    model.tok_emb.register_forward_hook(lambda module, args, out: fed.append(args[0].shape[1]))
    generate_text(model, torch.tensor([[1, 2, 3]]), 6, context_size=8)
    assert fed == [3, 1, 1, 1, 1, 1]  # prefill, then one token per step
    fed.clear()
    generate_text(model, torch.tensor([[1, 2, 3]]), 6, context_size=8)  # a fresh cache per call
    assert fed[0] == 3
    fed.clear()
    generate_text(model, torch.tensor([[1, 2, 3, 4, 5, 6]]), 5, context_size=8)
    assert fed == [6, 1, 1, 8, 8]  # 9 tokens no longer fit: full windows from then on


def test_cached_generation_stops_at_eos():
    torch.manual_seed(0)
    model = GPTModel(TINY).eval()
    prompt = torch.tensor([[1, 2, 3]])
    free = generate_text(model, prompt, 10, context_size=8)
    eos = free[0, 5].item()
    stopped = generate_text(model, prompt, 10, context_size=8, eos_id=eos)
    first_eos = (free[0, 3:] == eos).nonzero()[0].item() + 3
    assert torch.equal(stopped, free[:, :first_eos])


# The fast path's training options (5.8) ----------------------------------------------------

def plain(lr):
    """train_model's options for 5.2's loop: a constant rate, no clipping, silent."""
    return {"lr_schedule": lambda step: lr, "max_grad_norm": None, "progress": False}


def test_gradient_accumulation_over_two_half_batches_equals_one_full_batch():
    def train(batch_size, grad_accum_steps):
        torch.manual_seed(0)
        model = GPTModel({**TINY, "drop_rate": 0.0})
        ids = torch.arange(8 * 9) % 23
        windows = ids.unfold(0, 9, 9)
        data = TensorDataset(windows[:, :-1], windows[:, 1:])
        loader = DataLoader(data, batch_size=batch_size, shuffle=False)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
        train_model(model, loader, loader, optimizer, "cpu", 2, None, 1, None, None, 0,
                    **plain(1e-2), grad_accum_steps=grad_accum_steps)
        return model, optimizer

    full, full_opt = train(batch_size=4, grad_accum_steps=1)
    accumulated, acc_opt = train(batch_size=2, grad_accum_steps=2)
    assert acc_opt.state[next(iter(acc_opt.state))]["step"] == 4  # 2 epochs x 2 steps
    for a, b in zip(full.parameters(), accumulated.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_an_uneven_last_group_is_averaged_over_its_own_batches():
    torch.manual_seed(0)
    model = GPTModel({**TINY, "drop_rate": 0.0})
    ids = torch.arange(3 * 9) % 23
    windows = ids.unfold(0, 9, 9)
    loader = DataLoader(TensorDataset(windows[:, :-1], windows[:, 1:]), batch_size=1)
    grads = []
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # record gradients, change nothing
    optimizer.step = lambda: grads.append(model.out_head.weight.grad.clone())
    train_model(model, loader, loader, optimizer, "cpu", 1, None, 1, None, None, 0,
                **plain(0.0), grad_accum_steps=2)
    assert len(grads) == 2  # batches {0, 1}, then {2} alone
    model.zero_grad()
    x, y = loader.dataset[2]
    calc_loss_batch(x[None], y[None], model, "cpu").backward()
    torch.testing.assert_close(grads[1], model.out_head.weight.grad)


def test_bf16_autocast_computes_in_bf16_trains_and_keeps_float32_weights():
    torch.manual_seed(0)
    model = GPTModel(TINY)
    head_dtypes = set()
    model.out_head.register_forward_hook(lambda module, args, out: head_dtypes.add(out.dtype))
    train_loader, val_loader = loaders()
    before = calc_loss_loader(val_loader, model, "cpu")
    head_dtypes.clear()
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
    train_model(model, train_loader, val_loader, optimizer, "cpu", 5, None, 1, None, None, 0,
                **plain(5e-3), autocast_dtype=torch.bfloat16)
    assert head_dtypes == {torch.bfloat16}
    assert model.out_head.weight.dtype == torch.float32
    assert calc_loss_loader(val_loader, model, "cpu") < before - 0.5


# Bad inputs, a table per public function ----------------------------------------------------
# Each bad argument is refused before anything changes, with an error that names it; the exact
# wording is asserted only for a few exemplary messages.

def good_arguments(function, model, optimizer):
    """Arguments `function` accepts, with `model` and `optimizer` where it takes them."""
    return {
        plot_values: {"epochs_seen": [0.5, 1.0], "seen": [10, 20], "train_values": [5.0, 4.0],
                      "val_values": [5.5, 5.0]},
    }[function]


def refuse(function, argument, bad, error):
    """Call `function` with `argument` set to `bad`: `error` names the argument, and the
    model's weights and mode, the optimizer and the open figures are as they were."""
    torch.manual_seed(0)
    model = GPTModel(TINY).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    before = {name: t.clone() for name, t in model.state_dict().items()}
    figures = plt.get_fignums()
    arguments = good_arguments(function, model, optimizer)
    function(**arguments)  # the good arguments are accepted
    plt.close("all")
    with pytest.raises(error, match=argument):
        function(**{**arguments, argument: bad})
    assert model.training and all(m.training for m in model.modules())
    assert all(torch.equal(t, before[name]) for name, t in model.state_dict().items())
    assert plt.get_fignums() == figures


# plot_values

@pytest.mark.parametrize("argument, bad, error", [
    ("epochs_seen", [], ValueError), ("seen", [10, 20, 30], ValueError),
])
def test_plot_values_refuses(argument, bad, error):
    refuse(plot_values, argument, bad, error)


def test_plot_values_plots_one_evaluation_as_a_point_and_none_says_why():
    figure = plot_values([0.0], [0], [5.0], [5.5])  # one evaluation, at epoch 0
    assert [line.get_marker() for line in figure.axes[0].lines] == ["o", "o"]
    plt.close(figure)
    with pytest.raises(ValueError) as refusal:
        plot_values([], [], [], [])
    assert str(refusal.value) == ("seen and epochs_seen need one value per evaluation (none? give "
                                  "eval_freq), got 0 and 0")


# token_ids_to_text

def test_token_ids_to_text_decodes_one_sequence_and_a_batch_fails_loudly():
    tokenizer = tiktoken.get_encoding("gpt2")
    assert token_ids_to_text(torch.tensor([15496, 995]), tokenizer) == "Hello world"
    assert token_ids_to_text(torch.tensor([[15496, 995]]), tokenizer) == "Hello world"
    batch = torch.tensor([[15496, 995], [15496, 995]])
    assert [token_ids_to_text(row, tokenizer) for row in batch] == ["Hello world"] * 2
    with pytest.raises(TypeError):  # tiktoken's: a list of rows is not a list of ids
        token_ids_to_text(batch, tokenizer)
