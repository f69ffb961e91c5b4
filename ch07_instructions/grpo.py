# Generated from ch07_instructions/beyond_4_grpo.ipynb
# by `python -m shared.tooling.notebooks export`. Do not edit: change the notebook's cells
# marked `#| export grpo`, then export again.
# Each `# %%` line names the cell the code below it came from.

# %% beyond_4_grpo.ipynb cell 5, 7.11.1 A task a program checks, and a model that half knows it

"""Chapter 7, beyond the book: reinforcement learning with rewards a program checks
(beyond_4_grpo). A task whose answers a program checks (two-digit addition) and its rewards,
a group of sampled responses for each prompt, the GRPO loss and its training loop, which runs
unchanged on an open model, and GSM8K's published format for that model."""

import itertools
import json
import random
import re
import time
from functools import partial
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from ch02_text_data.text_data import GPTDatasetV1
from ch04_gpt_model.final_model import GPTModel
from ch05_pretraining.benchmarks import wilson_interval
from ch05_pretraining.decoding import generate_text
from ch05_pretraining.pretraining import context_length_of
from ch05_pretraining.training import train_model
from ch07_instructions.dpo import dpo_loss
from ch07_instructions.instructions import custom_collate_fn
from shared.checks import check
from shared.utils import progress_bar


# %% beyond_4_grpo.ipynb cell 6, 7.11.1 A task a program checks, and a model that half knows it

ADDITION_ALPHABET = "\n +0123456789=?Wahist"  # every character the task's texts use
END = "\n"  # a response ends with a new line: the task's end-of-text


def addition_problems(count: int, seed: int, *, largest: int = 99,
                      exclude=()) -> list[tuple[int, int]]:
    """`count` different problems (a, b), 0 <= a, b <= largest, none of them in `exclude`, in
    an order drawn from `seed`."""
    pool = sorted(set(itertools.product(range(largest + 1), repeat=2)) - set(exclude))
    check(count <= len(pool), lambda: f"count: {count} problems asked for, {len(pool)} left")
    return random.Random(seed).sample(pool, count)


def addition_text(problems) -> str:
    """Pretraining text: one equation a line, as a book of sums prints them."""
    return "".join(f"{a}+{b}={a + b}{END}" for a, b in problems)


def addition_prompt(problem) -> str:
    """The question the finetuned model answers; its answer follows, then END."""
    return f"What is {problem[0]}+{problem[1]}?\n"


def addition_answer(problem) -> str:
    return str(sum(problem))


# %% beyond_4_grpo.ipynb cell 8, 7.11.1 A task a program checks, and a model that half knows it

ADDER_CONFIG = {"context_length": 32, "emb_dim": 64, "n_heads": 4, "n_layers": 4,
                "drop_rate": 0.0, "qkv_bias": False}  # vocab_size: the tokenizer's


def addition_split(test_size: int = 500, seed: int = 123) -> tuple[list, list]:
    """(held-out problems, the rest), from all 10,000 two-digit problems: the held-out ones are
    never trained on in any stage."""
    held_out = addition_problems(test_size, seed)
    return held_out, addition_problems(10_000 - test_size, seed + 1, exclude=held_out)


def pretrain_adder(tokenizer, problems, *, epochs: int = 3, lr: float = 3e-3, seed: int = 123,
                   device="cpu") -> GPTModel:
    """A GPTModel of ADDER_CONFIG on `device`, pretrained on addition_text(problems) with
    chapter 2's windows (GPTDatasetV1) and chapter 5's train_model (warm-up, cosine decay,
    clipping)."""
    torch.manual_seed(seed)
    model = GPTModel({**ADDER_CONFIG, "vocab_size": tokenizer.n_vocab}).to(device)
    context = ADDER_CONFIG["context_length"]
    windows = GPTDatasetV1(addition_text(problems), tokenizer, context, context)
    loader = DataLoader(windows, batch_size=32, shuffle=True, drop_last=True,
                        generator=torch.Generator().manual_seed(seed))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.1)
    train_model(model, loader, loader, optimizer, device, epochs, None, 1, None, None,
                warmup_steps=10, initial_lr=1e-4, min_lr=lr / 10, progress=False)
    return model.eval()


def finetune_adder(model: GPTModel, tokenizer, problems, *, epochs: int = 7,
                   lr: float = 3e-3, seed: int = 123) -> GPTModel:
    """`model` finetuned in place to answer addition_prompt(problem) with the answer and END:
    the lesson's collate function with the prompt masked (items of (ids, prompt_length)), and
    chapter 5's train_model at a constant learning rate, on the model's device."""
    eos_id, device = tokenizer.ids[END], next(model.parameters()).device
    items = []
    for problem in problems:
        prompt = tokenizer.encode(addition_prompt(problem))
        items.append((prompt + tokenizer.encode(addition_answer(problem)), len(prompt)))
    loader = DataLoader(items, batch_size=64, shuffle=True,
                        generator=torch.Generator().manual_seed(seed),
                        collate_fn=partial(custom_collate_fn, pad_token_id=eos_id))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.1)
    train_model(model, loader, loader, optimizer, device, epochs, None, 1, None, None,
                warmup_steps=10, lr_schedule=lambda step: lr, progress=False)
    return model.eval()


def addition_tasks(tokenizer, problems) -> list[tuple[list[int], tuple[int, int]]]:
    """(prompt ids, problem) for each problem: what train_grpo and solve take."""
    return [(tokenizer.encode(addition_prompt(problem)), problem) for problem in problems]


# %% beyond_4_grpo.ipynb cell 11, 7.11.1 A task a program checks, and a model that half knows it

# A reward is reward(problem, response, ended) -> float: the response as text, without its end,
# and whether the model ended it (a response cut at max_new_tokens did not).

def exact_match(problem, response: str, ended: bool) -> float:
    """1 for the right answer, ended, and nothing else; else 0."""
    return float(ended and response == addition_answer(problem))


def well_formed(problem, response: str, ended: bool) -> float:
    """1 for a number of one to three digits, ended; else 0."""
    return float(ended and re.fullmatch(r"\d{1,3}", response) is not None)


def addition_reward(problem, response: str, ended: bool) -> float:
    """The correctness reward and, a tenth as large, the format reward."""
    return exact_match(problem, response, ended) + 0.1 * well_formed(problem, response, ended)


# %% beyond_4_grpo.ipynb cell 12, 7.11.1 A task a program checks, and a model that half knows it

def sample_group(model, prompt_ids: list[int], group_size: int, max_new_tokens: int,
                 eos_id: int, temperature: float = 1.0) -> list[list[int]]:
    """`group_size` responses to one prompt, drawn with the course's generate_text (KV cache):
    lists of token ids, each ending in eos_id if the model ended it, else cut at
    max_new_tokens."""
    device = next(model.parameters()).device
    prompt = torch.tensor([prompt_ids] * group_size, device=device)
    rows = generate_text(model, prompt, max_new_tokens, temperature=temperature,
                         eos_id=eos_id)[:, len(prompt_ids):].tolist()
    # generate_text stops before it writes the eos_id that the last open row draws: rows
    # shorter than max_new_tokens have all ended
    all_ended = len(rows[0]) < max_new_tokens
    return [row[:row.index(eos_id)] + [eos_id] if eos_id in row
            else row + [eos_id] if all_ended else row for row in rows]


def response_text(tokenizer, response_ids: list[int], eos_id: int) -> tuple[str, bool]:
    """(the response's text without its end, whether the model ended it)."""
    ended = bool(response_ids) and response_ids[-1] == eos_id
    return tokenizer.decode(response_ids[:-1] if ended else response_ids), ended


# %% beyond_4_grpo.ipynb cell 13, 7.11.1 A task a program checks, and a model that half knows it

def _check_room(model, tasks: list, max_new_tokens: int) -> None:
    """Refuse prompts that leave no room for max_new_tokens in the model's context:
    generate_text would slide its window, and the loss's forward pass fail far from here."""
    longest, context = max(len(ids) for ids, _ in tasks), context_length_of(model)
    needed = longest + max_new_tokens
    check(needed <= context, lambda: f"the longest prompt has {longest} tokens: with "
          f"max_new_tokens={max_new_tokens} it needs a context of {needed}, the model's: {context}")


def solve(model, tasks: list, tokenizer, score, *, eos_id: int, max_new_tokens: int = 6,
          temperature: float = 0.0, samples: int = 1, progress: bool = False) -> list[float]:
    """score(problem, response, ended) of the model's response to each task's prompt, greedy
    by default (temperature 0); with samples > 1, the mean over that many sampled responses."""
    _check_room(model, tasks, max_new_tokens)
    was_training = model.training
    model.eval()
    scores = []
    try:
        for prompt_ids, problem in progress_bar(tasks, desc="solving", unit="problem",
                                                disable=not progress):
            group = sample_group(model, prompt_ids, samples, max_new_tokens, eos_id, temperature)
            scores.append(sum(score(problem, *response_text(tokenizer, ids, eos_id))
                              for ids in group) / samples)
    finally:
        model.train(was_training)
    return scores


def accuracy_with_interval(scores: list[float]) -> tuple[float, float, float]:
    """(accuracy, and its Wilson 95% interval) for scores of 0 or 1."""
    right = sum(scores)
    return (right / len(scores), *wilson_interval(right, len(scores)))


# %% beyond_4_grpo.ipynb cell 17, 7.11.2 A group of answers, and what each is worth

def response_batch(prompts: list[list[int]], responses: list[list[int]], eos_id: int,
                   device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, targets) for prompt + response sequences, by the lesson's custom_collate_fn:
    only the response's tokens (its end included) are targets, the rest -100."""
    ended = [bool(r) and r[-1] == eos_id for r in responses]
    # custom_collate_fn adds the end-of-text target itself; a cut response has none
    items = [(p + (r[:-1] if e else r), len(p)) for p, r, e in zip(prompts, responses, ended)]
    inputs, targets = custom_collate_fn(items, pad_token_id=eos_id, device=device)
    for row, (ids, _), e in zip(targets, items, ended):
        if not e:
            row[len(ids) - 1] = -100
    return inputs, targets


def token_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log p(target) at each position (batch, length); 0 where the target is -100."""
    mask = targets != -100
    logps = torch.log_softmax(logits.float(), dim=-1)
    return logps.gather(-1, targets.masked_fill(~mask, 0).unsqueeze(-1)).squeeze(-1) * mask


# %% beyond_4_grpo.ipynb cell 18, 7.11.2 A group of answers, and what each is worth

def group_advantages(rewards: torch.Tensor, scale: bool = True,
                     eps: float = 1e-4) -> torch.Tensor:
    """Each reward (groups, group_size) less its group's mean and, with `scale`, over its
    group's standard deviation, plus eps (a group of equal rewards has a deviation of 0, or of
    rounding errors: its advantages are 0, or as good as)."""
    centred = rewards - rewards.mean(dim=-1, keepdim=True)
    return centred / (rewards.std(dim=-1, keepdim=True) + eps) if scale else centred


def grpo_loss(logprobs, old_logprobs, ref_logprobs, advantages, mask, clip: float = 0.2,
              kl_beta: float = 0.04) -> tuple[torch.Tensor, dict]:
    """GRPO's loss for a batch of responses, and what to watch.

    logprobs (batch, length): each response token's log-probability under the policy (with its
    gradient); old_logprobs under the policy that sampled the responses, ref_logprobs under
    the frozen reference (both without); advantages (batch,); mask (batch, length): True on
    response tokens. Each token: the clipped ratio times its response's advantage, less
    kl_beta times an estimate of the KL divergence to the reference; averaged over each
    response's tokens, then over responses, and negated (a loss to minimise). Returns (loss,
    {"kl": mean KL estimate per token, "clipped": share of tokens whose clipped term counted,
    a ratio past 1 + clip with a positive advantage or below 1 - clip with a negative one}).
    """
    # a (batch, 1) advantage would broadcast to (batch, batch, length) and give a wrong loss
    shapes = [tuple(t.shape) for t in (logprobs, old_logprobs, ref_logprobs, mask)]
    check(len(set(shapes)) == 1 and advantages.shape == logprobs.shape[:1], lambda: f"the "
          f"log-probabilities and the mask must share one shape (batch, length), and advantages "
          f"be (batch,): got {shapes} and {tuple(advantages.shape)}")
    advantages = advantages.unsqueeze(-1)  # one per response, for all its tokens
    ratio = torch.exp(logprobs - old_logprobs)
    surrogate = torch.minimum(ratio * advantages,
                              ratio.clamp(1 - clip, 1 + clip) * advantages)
    # k3 (Schulman, 2020): pi_ref/pi - log(pi_ref/pi) - 1, never below 0, with the KL's mean
    log_ref_ratio = ref_logprobs - logprobs
    kl = torch.exp(log_ref_ratio) - log_ref_ratio - 1
    per_token = (surrogate - kl_beta * kl) * mask
    loss = -(per_token.sum(dim=-1) / mask.sum(dim=-1).clamp(min=1)).mean()
    with torch.no_grad():
        tokens = mask.sum().clamp(min=1)
        # where min() takes the clipped term, which then has no gradient
        clipped = ((ratio > 1 + clip) & (advantages > 0)) | ((ratio < 1 - clip) & (advantages < 0))
        stats = {"kl": ((kl * mask).sum() / tokens).item(),
                 "clipped": ((clipped & mask).sum() / tokens).item()}
    return loss, stats


# %% beyond_4_grpo.ipynb cell 27, 7.11.4 Training: the model's own answers, scored

def _response_logprobs(model, inputs, targets, temperature: float) -> torch.Tensor:
    """token_logprobs at the temperature the responses were drawn with."""
    return token_logprobs(model(inputs) / temperature, targets)


def train_grpo(policy, reference, tasks: list, reward, tokenizer, *, eos_id: int,
               steps: int, prompts_per_step: int = 16, group_size: int = 8,
               max_new_tokens: int = 6, lr: float = 3e-4, clip: float = 0.2,
               kl_beta: float = 0.04, updates_per_batch: int = 2, temperature: float = 1.0,
               score=None, micro_batch_size: int | None = None, seed: int = 0,
               progress: bool = True) -> dict:
    """GRPO: `steps` times, draw prompts_per_step of `tasks` ((prompt_ids, problem) pairs),
    sample group_size responses to each at `temperature`, score each with reward(problem,
    response, ended), and take updates_per_batch AdamW steps on grpo_loss, whose
    log-probabilities are those of the same temperature. The policy is trained in place, with
    dropout off (the ratios compare one network with itself); the reference is only read.
    micro_batch_size splits each update's batch into parts, each run forward and backward alone:
    the same update, in less memory. score(problem, response, ended) is what the history calls
    "correct" (default: the reward). Returns the history: per step, the mean reward, the share
    correct, the mean response length in tokens (the end included), the KL estimate and the
    share of tokens clipped (per token, in the step's last update), and the seconds so far.
    """
    check(group_size >= 2, lambda: f"group_size must be at least 2 (one answer has no group to "
          f"beat: its advantage would be nan), got {group_size}")
    check(updates_per_batch >= 1 and (micro_batch_size is None or micro_batch_size >= 1),
          "updates_per_batch and micro_batch_size must be at least 1")
    _check_room(policy, tasks, max_new_tokens)
    score = reward if score is None else score
    device = next(policy.parameters()).device
    optimizer = torch.optim.AdamW(policy.parameters(), lr=lr, weight_decay=0.0)
    policy.eval()
    reference.eval()
    draw = random.Random(seed)
    torch.manual_seed(seed)  # the samples' draws
    history = {name: [] for name in ("reward", "correct", "length", "kl", "clipped", "seconds")}
    start = time.perf_counter()
    for _ in progress_bar(range(steps), desc="GRPO", unit="step", disable=not progress):
        prompts, responses, rewards, correct = [], [], [], []
        for prompt_ids, problem in draw.sample(tasks, prompts_per_step):
            for ids in sample_group(policy, prompt_ids, group_size, max_new_tokens, eos_id,
                                    temperature):
                text, ended = response_text(tokenizer, ids, eos_id)
                rewards.append(reward(problem, text, ended))
                correct.append(score(problem, text, ended))
                prompts.append(prompt_ids)
                responses.append(ids)
        advantages = group_advantages(torch.tensor(rewards, device=device).view(
            prompts_per_step, group_size)).flatten()
        inputs, targets = response_batch(prompts, responses, eos_id, device)
        mask = targets != -100
        size = micro_batch_size or len(inputs)
        parts = [slice(i, i + size) for i in range(0, len(inputs), size)]
        with torch.no_grad():
            old = [_response_logprobs(policy, inputs[p], targets[p], temperature) for p in parts]
            ref = [_response_logprobs(reference, inputs[p], targets[p], temperature)
                   for p in parts]
        for _ in range(updates_per_batch):
            optimizer.zero_grad()
            stats = {"kl": 0.0, "clipped": 0.0}
            for p, old_part, ref_part in zip(parts, old, ref):
                logprobs = _response_logprobs(policy, inputs[p], targets[p], temperature)
                loss, part_stats = grpo_loss(logprobs, old_part, ref_part, advantages[p],
                                             mask[p], clip, kl_beta)
                (loss * len(inputs[p]) / len(inputs)).backward()  # the mean over responses
                for name in stats:  # per token, over the whole batch's tokens
                    stats[name] += part_stats[name] * (mask[p].sum() / mask.sum()).item()
            optimizer.step()
        history["reward"].append(sum(rewards) / len(rewards))
        history["correct"].append(sum(correct) / len(correct))
        history["length"].append(mask.sum().item() / len(responses))
        history["kl"].append(stats["kl"])  # of the last update: how far the policy has moved
        history["clipped"].append(stats["clipped"])
        history["seconds"].append(time.perf_counter() - start)
    return history


# %% beyond_4_grpo.ipynb cell 35, 7.11.5 A reward the model games

def brevity_bonus(response: str) -> float:
    """0.25 for each character fewer than four, less for each one more: 1 for an empty answer,
    0.5 for two digits, -0.5 for six characters."""
    return 0.25 * (4 - len(response))


def reward_with_brevity_bonus(problem, response: str, ended: bool) -> float:
    """addition_reward plus the bonus for brevity, for every ended answer."""
    return addition_reward(problem, response, ended) + (brevity_bonus(response) if ended else 0)


def reward_with_brevity_bonus_fixed(problem, response: str, ended: bool) -> float:
    """addition_reward plus the bonus for brevity, counted as Kimi k1.5 counts its length reward:
    in full for a right answer, for a wrong one only where it is below 0."""
    bonus = brevity_bonus(response) if ended else 0.0
    right = exact_match(problem, response, ended)
    return addition_reward(problem, response, ended) + (bonus if right else min(bonus, 0.0))


# %% beyond_4_grpo.ipynb cell 39, 7.11.6 GRPO beside DPO, and beside more finetuning

def checker_pairs(model, tasks: list, tokenizer, score, *, eos_id: int, group_size: int = 8,
                  max_new_tokens: int = 6, seed: int = 0) -> list[tuple[list, list, list]]:
    """DPO's pairs, made by a checker instead of people: group_size responses sampled for each
    task's prompt and, where score gives at least one 1 and one 0, (prompt ids, the first right
    response, the first wrong one)."""
    torch.manual_seed(seed)
    model.eval()
    pairs = []
    for prompt_ids, problem in tasks:
        scored = [(score(problem, *response_text(tokenizer, ids, eos_id)), ids) for ids in
                  sample_group(model, prompt_ids, group_size, max_new_tokens, eos_id)]
        right = [ids for value, ids in scored if value == 1]
        wrong = [ids for value, ids in scored if value == 0]
        if right and wrong:
            pairs.append((prompt_ids, right[0], wrong[0]))
    return pairs


def train_dpo_on_pairs(policy, reference, pairs: list, *, eos_id: int, steps: int,
                       batch_size: int = 16, lr: float = 3e-4, beta: float = 0.1,
                       seed: int = 0) -> list[float]:
    """`steps` AdamW steps on dpo_loss (beyond_3_dpo) over batches drawn from checker_pairs'
    pairs; each response's log-probability is the sum over its tokens. Returns the losses."""
    device = next(policy.parameters()).device
    optimizer = torch.optim.AdamW(policy.parameters(), lr=lr, weight_decay=0.0)
    draw, losses = random.Random(seed), []
    policy.train()
    for _ in range(steps):
        batch = draw.sample(pairs, batch_size)
        prompts = [prompt for prompt, _, _ in batch] * 2
        responses = [chosen for _, chosen, _ in batch] + [rejected for _, _, rejected in batch]
        inputs, targets = response_batch(prompts, responses, eos_id, device)
        logps = token_logprobs(policy(inputs), targets).sum(dim=-1)
        with torch.no_grad():
            ref_logps = token_logprobs(reference(inputs), targets).sum(dim=-1)
        loss, _, _ = dpo_loss(logps[:batch_size], logps[batch_size:], ref_logps[:batch_size],
                              ref_logps[batch_size:], beta)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    policy.eval()
    return losses


# %% beyond_4_grpo.ipynb cell 43, 7.11.7 The same loop on an open model: Qwen3 and GSM8K

def read_gsm8k(path: str | Path) -> list[dict]:
    """GSM8K's published JSON lines ({"question", "answer"}, the answer a worked solution that
    ends '#### <number>'): each as {"question", "solution", "answer"}, the answer the number
    alone, its thousands' commas removed."""
    problems = []
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        entry = json.loads(line)
        solution, marker, final = entry["answer"].rpartition("####")
        final = final.strip().replace(",", "")
        check(marker and re.fullmatch(r"-?\d+(\.\d+)?", final), f"{path}, line {number}: the "
              f"answer does not end in '#### <number>': {entry['answer'][-40:]!r}")
        problems.append({"question": entry["question"], "solution": solution.strip(),
                         "answer": final})
    return problems


GSM8K_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."


def boxed_answer(response: str) -> float | None:
    r"""The number in the response's last \boxed{...}, read as a float: its dollar and percent
    signs, \text{...} wrappers and thousands' commas ignored (\boxed{\$1,200}, \boxed{18\%} and
    \boxed{18 \text{ eggs}} are numbers); None without a \boxed{} that holds one number."""
    found = re.findall(r"\\boxed\{((?:[^{}]|\{[^{}]*\})*)\}", response)  # one level of {}
    if not found:
        return None
    text = re.sub(r"\\text\{([^{}]*)\}", r"\1", found[-1]).replace(",", "")
    numbers = re.findall(r"-?\d+(?:\.\d+)?", text)
    return float(numbers[0]) if len(numbers) == 1 else None


def gsm8k_reward(problem: dict, response: str, ended: bool) -> float:
    """For an ended response (one cut at the length limit gets 0, as in the addition task): 1
    for the right number in its last \\boxed{}, plus 0.1 for a number there at all."""
    given = boxed_answer(response) if ended else None
    return float(given == float(problem["answer"])) + 0.1 * (given is not None)


__all__ = [
    'ADDITION_ALPHABET',
    'END',
    'addition_problems',
    'addition_text',
    'addition_prompt',
    'addition_answer',
    'ADDER_CONFIG',
    'addition_split',
    'pretrain_adder',
    'finetune_adder',
    'addition_tasks',
    'exact_match',
    'well_formed',
    'addition_reward',
    'sample_group',
    'response_text',
    'solve',
    'accuracy_with_interval',
    'response_batch',
    'token_logprobs',
    'group_advantages',
    'grpo_loss',
    'train_grpo',
    'brevity_bonus',
    'reward_with_brevity_bonus',
    'reward_with_brevity_bonus_fixed',
    'checker_pairs',
    'train_dpo_on_pairs',
    'read_gsm8k',
    'GSM8K_INSTRUCTION',
    'boxed_answer',
    'gsm8k_reward',
]
