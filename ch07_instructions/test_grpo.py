"""Section 7.11's GRPO: its loss against a direct computation, the pieces around it, the loop on
the addition task, and the same loop on a tiny random Qwen3 loaded from its published format,
with GSM8K's published format."""

import copy
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from ch05_pretraining.attention_variants import CharTokenizer
from ch07_instructions.grpo import (
    ADDITION_ALPHABET,
    END,
    GSM8K_INSTRUCTION,
    addition_problems,
    addition_reward,
    addition_split,
    addition_tasks,
    boxed_answer,
    brevity_bonus,
    checker_pairs,
    group_advantages,
    grpo_loss,
    gsm8k_reward,
    read_gsm8k,
    response_batch,
    reward_with_brevity_bonus,
    reward_with_brevity_bonus_fixed,
    sample_group,
    token_logprobs,
    train_dpo_on_pairs,
    train_grpo,
)
from conftest import qwen3_style_tokenizer, tiny_gpt


def direct_grpo_loss(logprobs, old, ref, advantages, mask, clip, beta):
    """GRPO's objective written out token by token, in Python floats."""
    per_response = []
    for i in range(len(logprobs)):
        terms = []
        for t in range(len(logprobs[i])):
            if not mask[i][t]:
                continue
            ratio = math.exp(logprobs[i][t] - old[i][t])
            a = advantages[i]
            surrogate = min(ratio * a, min(max(ratio, 1 - clip), 1 + clip) * a)
            kl = math.exp(ref[i][t] - logprobs[i][t]) - (ref[i][t] - logprobs[i][t]) - 1
            terms.append(surrogate - beta * kl)
        per_response.append(sum(terms) / len(terms))
    return -sum(per_response) / len(per_response)


def test_grpo_loss_equals_the_objective_written_out():
    torch.manual_seed(0)
    logprobs = -torch.rand(3, 4) * 3
    # ratios from 0.5 to 1.6: some inside the clip range, some above and below it
    old = logprobs - torch.log(torch.tensor([[1.0, 1.6, 0.5, 1.1], [0.7, 1.3, 1.0, 0.9],
                                             [1.25, 0.75, 1.0, 1.0]]))
    ref = logprobs + torch.randn(3, 4) * 0.5
    advantages = torch.tensor([1.5, -0.7, 0.0])
    mask = torch.tensor([[True, True, True, True], [True, True, True, False],
                         [True, True, False, False]])
    loss, stats = grpo_loss(logprobs, old, ref, advantages, mask, clip=0.2, kl_beta=0.1)
    expected = direct_grpo_loss(logprobs.tolist(), old.tolist(), ref.tolist(),
                                advantages.tolist(), mask.tolist(), 0.2, 0.1)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    log_ratio = ref - logprobs
    kl = (log_ratio.exp() - log_ratio - 1)[mask]
    assert stats["kl"] == pytest.approx(kl.mean().item(), rel=1e-6)
    # where min() takes the clipped term: 1.6 with advantage 1.5, 0.7 with -0.7 (0.5 with 1.5 and
    # 1.3 with -0.7 keep their own term; the third response's advantage is 0)
    assert stats["clipped"] == pytest.approx(2 / 9)
    with pytest.raises(ValueError, match=r"advantages be \(batch,\): got .* and \(3, 1\)"):
        grpo_loss(logprobs, old, ref, advantages[:, None], mask)


def test_a_clipped_token_gets_no_gradient_from_its_advantage():
    old = torch.log(torch.tensor([[0.5, 0.5]]))
    # the first token's ratio is 1.5 (clipped, advantage > 0), the second's 1.1 (inside)
    logprobs = torch.log(torch.tensor([[0.75, 0.55]])).requires_grad_(True)
    loss, _ = grpo_loss(logprobs, old, logprobs.detach(), torch.tensor([1.0]),
                        torch.ones(1, 2, dtype=torch.bool), clip=0.2, kl_beta=0.0)
    loss.backward()
    assert logprobs.grad[0, 0] == 0
    assert logprobs.grad[0, 1] == pytest.approx(-1.1 / 2)  # -ratio * advantage / tokens


def test_at_the_reference_the_kl_term_is_zero_with_zero_gradient():
    logprobs = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    loss, stats = grpo_loss(logprobs, logprobs.detach(), logprobs.detach(), torch.tensor([0.0]),
                            torch.ones(1, 2, dtype=torch.bool), kl_beta=1.0)
    loss.backward()
    assert stats["kl"] == 0 and loss.item() == 0
    assert torch.equal(logprobs.grad, torch.zeros(1, 2))


def test_group_advantages_are_relative_to_the_group():
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.5, 0.5, 0.5, 0.5], [1.1, 0.1, 0.1, 0.1]])
    advantages = group_advantages(rewards)
    for row, got in zip(rewards, advantages):
        expected = (row - row.mean()) / (row.std() + 1e-4)  # std with n - 1, as torch's
        torch.testing.assert_close(got, expected)
    assert torch.equal(advantages[1], torch.zeros(4))  # equal rewards: nothing to learn
    torch.testing.assert_close(group_advantages(rewards, scale=False)[2],
                               torch.tensor([0.75, -0.25, -0.25, -0.25]))


class Scripted(nn.Module):
    """Greedy responses of known lengths: row i of a batch writes tokens 3, 4, ... and then
    `eos` after lengths[i] tokens."""

    def __init__(self, prompt_length, lengths, vocab=10, eos=1):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))
        self.cfg = {"context_length": 32, "vocab_size": vocab}  # what generate_text reads
        self.prompt_length, self.lengths, self.vocab, self.eos = (prompt_length, lengths,
                                                                  vocab, eos)

    def forward(self, idx):
        logits = torch.zeros(*idx.shape, self.vocab)
        for row in range(idx.shape[0]):
            for position in range(idx.shape[1]):
                written = position + 1 - self.prompt_length
                token = self.eos if written >= self.lengths[row] else 3 + written % 5
                logits[row, position, token] = 1.0
        return logits


@pytest.mark.parametrize("lengths, expected", [
    ((1, 3), [[3, 1], [3, 4, 5, 1]]),  # both end; generate_text stops before the last eos
    ((1, 5), [[3, 1], [3, 4, 5, 6]]),  # the second is cut at max_new_tokens
    ((4, 4), [[3, 4, 5, 6]] * 2),  # both cut
    ((0, 0), [[1], [1]]),  # empty responses, ended
])
def test_sample_group_ends_a_response_with_eos_only_where_the_model_ended_it(lengths, expected):
    model = Scripted(2, lengths)
    assert sample_group(model, [7, 8], 2, 4, eos_id=1, temperature=0.0) == expected


def test_a_batch_of_responses_targets_their_tokens_and_an_end_only_where_sampled():
    prompts = [[7, 8, 9], [7], [5, 6]]
    responses = [[3, 4, 1], [3, 4, 5, 6], [1]]  # ended, cut, ended empty
    inputs, targets = response_batch(prompts, responses, eos_id=1)
    for i, (prompt, response) in enumerate(zip(prompts, responses)):
        sequence = prompt + response
        assert inputs[i, :len(sequence) - 1].tolist() == sequence[:-1]
        expected = [-100] * (len(prompt) - 1) + response
        expected += [-100] * (targets.shape[1] - len(expected))
        assert targets[i].tolist() == expected


def test_token_logprobs_are_the_targets_log_probabilities():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 5)
    targets = torch.tensor([[1, -100, 4], [-100, -100, 0]])
    got = token_logprobs(logits, targets)
    logp = torch.log_softmax(logits, dim=-1)
    assert got[0].tolist() == pytest.approx([logp[0, 0, 1].item(), 0.0, logp[0, 2, 4].item()])
    assert got[1].tolist() == pytest.approx([0.0, 0.0, logp[1, 2, 0].item()])


def test_the_rewards_and_the_brevity_bonus():
    assert addition_reward((17, 72), "89", True) == pytest.approx(1.1)
    assert addition_reward((17, 72), "88", True) == pytest.approx(0.1)
    assert addition_reward((17, 72), "89", False) == 0  # cut: never an answer
    assert addition_reward((17, 72), "8 9", True) == 0
    assert [brevity_bonus(text) for text in ("", "89", "1234", "123456")] == [1, 0.5, 0, -0.5]
    # paid for every answer, the bonus makes silence worth more than a wrong answer, and the
    # less the shorter the wrong answer
    gamed = [reward_with_brevity_bonus((17, 72), text, True) for text in ("", "8", "88", "89")]
    assert gamed == pytest.approx([1.0, 0.85, 0.6, 1.6])
    fixed = [reward_with_brevity_bonus_fixed((17, 72), text, True)
             for text in ("", "8", "88", "89", "880000")]
    assert fixed == pytest.approx([0.0, 0.1, 0.1, 1.6, -0.5])  # six characters: not well formed
    assert reward_with_brevity_bonus_fixed((17, 72), "8", False) == 0  # cut: no bonus


def test_the_held_out_problems_are_in_no_other_split():
    held_out, rest = addition_split()
    assert len(held_out) == 500 and len(rest) == 9_500
    assert not set(held_out) & set(rest) and len(set(rest)) == 9_500
    with pytest.raises(ValueError, match="10001 problems asked for, 10000 left"):
        addition_problems(10_001, seed=0)


def adder(seed=0):
    tokenizer = CharTokenizer(ADDITION_ALPHABET)
    model = tiny_gpt(seed, vocab_size=tokenizer.n_vocab, context_length=16)
    return tokenizer, model


def test_grpo_raises_the_reward_a_tiny_model_can_reach():
    tokenizer, policy = adder()
    reference = copy.deepcopy(policy).requires_grad_(False)
    before = copy.deepcopy(reference.state_dict())
    tasks = addition_tasks(tokenizer, addition_problems(40, seed=1, largest=9))

    def starts_with_one(problem, response, ended):  # a reward any model can learn quickly
        return float(response.startswith("1"))

    history = train_grpo(policy, reference, tasks, starts_with_one, tokenizer,
                         eos_id=tokenizer.ids[END], steps=25, prompts_per_step=4, group_size=8,
                         max_new_tokens=3, lr=3e-2, progress=False)
    assert set(history) == {"reward", "correct", "length", "kl", "clipped", "seconds"}
    assert all(len(values) == 25 for values in history.values())
    assert history["reward"][0] < 0.2 and sum(history["reward"][-5:]) / 5 > 0.8
    assert history["kl"][-1] > 0
    for name, tensor in reference.state_dict().items():  # the reference is only read
        assert torch.equal(tensor, before[name])


def test_with_dropout_the_first_update_compares_the_policy_with_itself():
    tokenizer, policy = adder()
    policy = tiny_gpt(0, vocab_size=tokenizer.n_vocab, context_length=16, drop_rate=0.5)
    tasks = addition_tasks(tokenizer, addition_problems(20, seed=1, largest=9))
    history = train_grpo(policy, copy.deepcopy(policy).requires_grad_(False), tasks,
                         lambda p, r, e: float(r.startswith("1")), tokenizer,
                         eos_id=tokenizer.ids[END], steps=2, prompts_per_step=4, group_size=4,
                         max_new_tokens=3, lr=0.0, progress=False)
    assert history["kl"] == [0.0, 0.0] and history["clipped"] == [0.0, 0.0]


def test_train_grpo_refuses_what_would_fail_later_or_train_nothing():
    tokenizer, policy = adder()  # a context of 16
    tasks = addition_tasks(tokenizer, addition_problems(4, seed=1, largest=9))  # 13 tokens
    settings = {"eos_id": tokenizer.ids[END], "steps": 1, "prompts_per_step": 2,
                "progress": False}
    with pytest.raises(ValueError, match="the longest prompt has 13 tokens: with "
                                         "max_new_tokens=6 it needs a context of 19"):
        train_grpo(policy, policy, tasks, addition_reward, tokenizer, **settings)
    for bad in ({"micro_batch_size": 0}, {"updates_per_batch": 0}):
        with pytest.raises(ValueError, match="must be at least 1"):
            train_grpo(policy, policy, tasks, addition_reward, tokenizer, max_new_tokens=3,
                       **settings, **bad)


def test_checker_pairs_put_a_right_response_before_a_wrong_one_and_dpo_trains_on_them():
    tokenizer, policy = adder(seed=3)
    eos_id = tokenizer.ids[END]
    tasks = addition_tasks(tokenizer, addition_problems(16, seed=2, largest=3))
    pairs = checker_pairs(policy, tasks, tokenizer, lambda p, r, e: float(r.startswith("1")),
                          eos_id=eos_id, group_size=8, max_new_tokens=2)
    assert pairs
    for _, chosen, rejected in pairs:
        assert tokenizer.decode(chosen).startswith("1")
        assert not tokenizer.decode(rejected).startswith("1")
    reference = copy.deepcopy(policy).requires_grad_(False)
    losses = train_dpo_on_pairs(policy, reference, pairs, eos_id=eos_id, steps=20,
                                batch_size=min(4, len(pairs)), lr=1e-2)
    assert losses[0] == pytest.approx(math.log(2), abs=1e-5)  # policy = reference at first
    assert sum(losses[-5:]) / 5 < 0.5


GSM8K_LINES = [
    {"question": "Ann has 3 apples and buys 4 more. How many apples does she have?",
     "answer": "She has 3 + 4 = <<3+4=7>>7 apples.\n#### 7"},
    {"question": "A farm sells 1,000 eggs a day. How many in two days?",
     "answer": "In two days it sells 1,000 * 2 = <<1000*2=2000>>2,000 eggs.\n#### 2,000"},
]


def write_gsm8k(path, entries):
    path.write_text("".join(json.dumps(entry) + "\n" for entry in entries) + "\n",
                    encoding="utf-8")
    return path


def test_read_gsm8k_reads_the_published_format(tmp_path):
    problems = read_gsm8k(write_gsm8k(tmp_path / "test.jsonl", GSM8K_LINES))
    assert [p["answer"] for p in problems] == ["7", "2000"]
    assert problems[1]["solution"].startswith("In two days") and "####" not in \
        problems[1]["solution"]
    broken = write_gsm8k(tmp_path / "broken.jsonl",
                         [GSM8K_LINES[0], {"question": "?", "answer": "no final line"}])
    with pytest.raises(ValueError, match=r"broken.jsonl, line 2: the answer does not end in "
                                         r"'#### <number>'"):
        read_gsm8k(broken)


def test_boxed_answers_and_the_gsm8k_reward():
    assert boxed_answer(r"so \boxed{12} ... no, \boxed{2,000}") == 2000
    for written in (r"\boxed{18}", r"\boxed{\$18}", r"\boxed{$18$}", r"\boxed{18\%}",
                    r"\boxed{18 \text{ dollars}}", r"\boxed{\text{18}}", r"\boxed{18.00}",
                    r"\boxed{ 18. }"):
        assert boxed_answer(written) == 18, written
    assert boxed_answer("18") is None and boxed_answer(r"\boxed{18 or 19}") is None
    problem = {"answer": "2000"}
    assert gsm8k_reward(problem, r"The farm sells \boxed{2,000} eggs.", True) == \
        pytest.approx(1.1)
    assert gsm8k_reward(problem, r"\boxed{200}", True) == pytest.approx(0.1)
    assert gsm8k_reward(problem, "2000", True) == 0
    assert gsm8k_reward(problem, r"\boxed{2000} and then", False) == 0  # cut: never right


@pytest.fixture(scope="module")
def qwen3_folder(tmp_path_factory):
    """A tiny random Qwen3 saved by transformers in the published format, with a Qwen3-style
    tokenizer.json, and a GSM8K file."""
    import transformers

    folder = tmp_path_factory.mktemp("models") / "qwen3"
    vocab = qwen3_style_tokenizer(folder).get_vocab_size()
    torch.manual_seed(0)
    transformers.Qwen3ForCausalLM(transformers.Qwen3Config(
        vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=256,
        tie_word_embeddings=True)).save_pretrained(folder)
    write_gsm8k(folder.parent / "gsm8k.jsonl", GSM8K_LINES)
    return folder


def test_the_loop_runs_unchanged_on_a_qwen3_from_its_published_format(qwen3_folder):
    from ch05_pretraining.open_weights import HFTokenizer, chat_prompt, load_open_model

    policy, tokenizer = load_open_model(qwen3_folder), HFTokenizer(qwen3_folder)
    reference = copy.deepcopy(policy).requires_grad_(False)
    problems = read_gsm8k(qwen3_folder.parent / "gsm8k.jsonl")
    tasks = [(tokenizer.encode(chat_prompt([{"role": "user", "content": f"{p['question']} "
                                             f"{GSM8K_INSTRUCTION}"}], "qwen3", thinking=False)),
              p) for p in problems]
    eos_id = tokenizer.encode("<|im_end|>")[0]
    settings = {"eos_id": eos_id, "steps": 1, "prompts_per_step": 2, "group_size": 3,
                "max_new_tokens": 8, "lr": 1e-3, "progress": False}
    history = train_grpo(copy.deepcopy(policy), reference, tasks, gsm8k_reward, tokenizer,
                         **settings)
    assert all(len(values) == 1 for values in history.values())
    assert history["reward"] == [0.0]  # a random model writes no \boxed{} answer

    def varied(problem, response, ended):  # rewards that differ, so that the step moves
        return len(set(response)) / 10

    whole, parts = copy.deepcopy(policy), copy.deepcopy(policy)
    train_grpo(whole, reference, tasks, varied, tokenizer, **settings)
    train_grpo(parts, reference, tasks, varied, tokenizer, micro_batch_size=4, **settings)
    changed = False
    for (name, a), b, c in zip(whole.state_dict().items(), parts.state_dict().values(),
                               policy.state_dict().values()):
        # parts of 4 and 2 responses give the update of the whole batch of 6
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=name)
        changed |= not torch.equal(a, c)
    assert changed


def test_the_gsm8k_command_trains_and_scores_an_open_model(qwen3_folder, tmp_path):
    data = qwen3_folder.parent / "gsm8k.jsonl"
    out = tmp_path / "run.json"
    finished = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("grpo_gsm8k.py")), "--model",
         str(qwen3_folder), "--train", str(data), "--test", str(data), "--steps", "2",
         "--prompts-per-step", "2", "--group-size", "2", "--max-new-tokens", "4", "--eval", "2",
         "--micro-batch", "3", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    assert "before: 0.000" in finished.stdout and "GRPO: 2 steps" in finished.stdout
    run = json.loads(out.read_text())
    assert len(run["history"]["reward"]) == 2 and len(run["scores"]["after"]) == 2
