"""Section 7.11's loop on an open model: GRPO on GSM8K's problems, for a machine with a GPU.

    python ch07_instructions/grpo_gsm8k.py --model Qwen/Qwen3-0.6B \\
        --train gsm8k/train.jsonl --test gsm8k/test.jsonl

GSM8K's files are OpenAI's (MIT licence), in grade_school_math/data/ of github.com/openai/
grade-school-math: train.jsonl (7,473 problems) and test.jsonl (1,319). --model is a Hub name
(downloaded with download_open_model, section 5.9) or a folder in the published format. The
script scores --eval problems of the test file, greedy, before and after --steps steps of
train_grpo (section 7.11) on problems of the training file, each prompt a user message that asks
for the answer in \\boxed{} (GSM8K_INSTRUCTION), in Qwen3's chat format without thinking, and
prints the accuracies with their 95% intervals, the share right, answer length and KL to the
reference early and late in training, and the GPU's peak memory. The policy trains in
float32 with AdamW; the reference is a frozen float32 copy (in bfloat16 it would compute other
log-probabilities than the policy from the same weights, and the KL penalty would not start at
0). Weights, gradients and AdamW's two averages take 16 bytes a parameter, the reference 4: for
Qwen3-0.6B's 596 million (counted in section 7.11.7) 11.9 GB before any activation. A training
step's activations grow with --micro-batch and the responses' length: the logits of a
micro-batch of 4 answers of 600 tokens alone are 4 x 600 x 151,936 float32 numbers, 1.5 GB, and
a step holds several more tensors of that size (the logits divided by the
temperature, their log-softmax, and the gradients of both). Sampling should be the slow part: each
step decodes up to --max-new-tokens tokens for its prompts one group at a time. None of this was
measured: the course's machines have no GPU and no network (section 7.11.7).
"""

import copy
import json
import random
import time
from pathlib import Path

from shared.tooling.command_line import CommandParser, number_arg, run_main


def main() -> None:
    parser = CommandParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a Hub name or a folder")
    parser.add_argument("--train", type=Path, required=True, help="GSM8K's train.jsonl")
    parser.add_argument("--test", type=Path, required=True, help="GSM8K's test.jsonl")
    parser.add_argument("--steps", type=number_arg(int, 1), default=100)
    parser.add_argument("--prompts-per-step", type=number_arg(int, 1), default=8)
    parser.add_argument("--group-size", type=number_arg(int, 2), default=8)
    parser.add_argument("--max-new-tokens", type=number_arg(int, 1), default=400)
    parser.add_argument("--lr", type=float, default=1e-6)
    parser.add_argument("--kl-beta", type=float, default=0.04)
    parser.add_argument("--micro-batch", type=number_arg(int, 1), default=4)
    parser.add_argument("--eval", type=number_arg(int, 1), default=200,
                        help="test problems scored before and after")
    parser.add_argument("--out", type=Path, help="write the history and the scores (JSON)")
    args = parser.parse_args()

    import torch

    from ch05_pretraining.open_weights import (
        HFTokenizer,
        chat_prompt,
        download_open_model,
        load_open_model,
    )
    from ch07_instructions.grpo import (
        GSM8K_INSTRUCTION,
        accuracy_with_interval,
        gsm8k_reward,
        read_gsm8k,
        solve,
        train_grpo,
    )
    from shared.utils import get_device

    folder = Path(args.model)
    folder = folder if folder.is_dir() else download_open_model(args.model)
    device = get_device()
    policy = load_open_model(folder).to(device, torch.float32)
    reference = copy.deepcopy(policy).eval().requires_grad_(False)
    tokenizer = HFTokenizer(folder)
    end_of_turn = tokenizer.encode("<|im_end|>")  # where a Qwen3 chat turn ends: one token
    if len(end_of_turn) != 1:
        raise SystemExit(f"{args.model}: <|im_end|> is not one token of its tokenizer; this "
                         "script writes Qwen3's chat format, for a Qwen3 chat model")
    eos_id = end_of_turn[0]

    def tasks(path, count=None):
        problems = read_gsm8k(path)
        if count is not None:
            problems = random.Random(0).sample(problems, min(count, len(problems)))
        return [(tokenizer.encode(chat_prompt(
            [{"role": "user", "content": f"{p['question']}\n{GSM8K_INSTRUCTION}"}], "qwen3",
            thinking=False)), p) for p in problems]

    def correct(problem, response, ended):  # the reward without its format part
        return float(gsm8k_reward(problem, response, ended) >= 1)

    train, test = tasks(args.train), tasks(args.test, args.eval)
    print(f"{len(train)} training and {len(test)} test problems; {device}", flush=True)
    scored = {"before": solve(policy, test, tokenizer, correct, eos_id=eos_id,
                              max_new_tokens=args.max_new_tokens, progress=True)}
    print("before: {:.3f} ({:.3f} to {:.3f})".format(*accuracy_with_interval(scored["before"])),
          flush=True)
    start = time.perf_counter()
    history = train_grpo(policy, reference, train, gsm8k_reward, tokenizer, eos_id=eos_id,
                         steps=args.steps, prompts_per_step=args.prompts_per_step,
                         group_size=args.group_size, max_new_tokens=args.max_new_tokens,
                         lr=args.lr, kl_beta=args.kl_beta, score=correct,
                         micro_batch_size=args.micro_batch)
    print(f"GRPO: {args.steps} steps in {time.perf_counter() - start:.0f} s", flush=True)
    tenth = max(1, args.steps // 10)  # the first and last tenth of the steps, averaged
    for name in ("correct", "length", "kl"):
        first, last = history[name][:tenth], history[name][-tenth:]
        print(f"{name} per step: {sum(first) / len(first):.3f} over the first {tenth} steps, "
              f"{sum(last) / len(last):.3f} over the last {tenth}")
    scored["after"] = solve(policy, test, tokenizer, correct, eos_id=eos_id,
                            max_new_tokens=args.max_new_tokens, progress=True)
    print("after: {:.3f} ({:.3f} to {:.3f})".format(*accuracy_with_interval(scored["after"])))
    if device.type == "cuda":
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 1e9:.1f} GB")
    if args.out:
        args.out.write_text(json.dumps({"settings": vars(args) | {
            k: str(v) for k, v in vars(args).items() if isinstance(v, Path)},
            "history": history, "scores": scored}, indent=1) + "\n")


if __name__ == "__main__":
    run_main(main)
