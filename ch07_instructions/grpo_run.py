"""Section 7.11's stored run: a small GPT pretrained and finetuned on two-digit addition, then
improved by GRPO with three rewards, beside DPO on pairs a checker made and more finetuning.

    python ch07_instructions/grpo_run.py [--out ch07_instructions/grpo_run.json] [--workers 2]
        [--quick]

First, in this process: the model of grpo.ADDER_CONFIG pretrained on the equations of the 9,500
problems that are not held out (pretrain_adder), then finetuned on 5,000 of them, each a question
and its answer (finetune_adder), and scored on the 500 held-out problems, greedy. Then five runs
from that model, --workers at a time, each in a process of its own:

* "grpo": train_grpo with addition_reward (the right answer 1, a well-formed one 0.1);
* "gamed": the same with reward_with_brevity_bonus (a bonus for short answers, paid for all);
* "fixed": the same with reward_with_brevity_bonus_fixed (the bonus in full for right
  answers, only its penalty for wrong ones);
* "dpo": train_dpo_on_pairs, on checker_pairs sampled from the finetuned model;
* "more finetuning": finetune_adder again on the same 5,000 labelled problems.

Each run ends by scoring the 500 held-out problems, greedy, with exact_match. Every process pins
the notebooks' numerics (one thread, shared/tooling/numerics.py), so the runs go side by side,
one per core, and section 7.11 reruns the finetuning and GRPO's first steps to the same numbers.
Everything is written to --out (JSON): the settings, each run's history, each held-out problem's
score, the first responses, the machine, the date, the commit and the wall time. --quick runs a
few steps of each, to check the script; its numbers mean nothing.
"""

import copy
import json
import subprocess
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from shared.tooling.command_line import CommandParser, number_arg, run_main
from shared.tooling.numerics import pin_numerics


SETTINGS = {"labelled": 5_000, "pretrain_epochs": 3, "finetune_epochs": 7,
            "grpo_steps": 150, "prompts_per_step": 16, "group_size": 8, "lr": 3e-4,
            "kl_beta": 0.04, "clip": 0.2, "updates_per_batch": 2, "dpo_prompts": 1_500,
            "dpo_steps": 300, "dpo_batch": 16, "dpo_beta": 0.1, "more_finetune_epochs": 4}
QUICK = {**SETTINGS, "labelled": 200, "pretrain_epochs": 1, "finetune_epochs": 3,
         "grpo_steps": 3, "dpo_prompts": 300, "dpo_steps": 3, "dpo_batch": 1,
         "more_finetune_epochs": 3}
EXAMPLES = 12  # held-out problems whose responses are stored


def setup(settings: dict):
    """The tokenizer, the held-out tasks, the labelled and the other problems."""
    from ch05_pretraining.attention_variants import CharTokenizer
    from ch07_instructions.grpo import ADDITION_ALPHABET, addition_split, addition_tasks

    tokenizer = CharTokenizer(ADDITION_ALPHABET)
    held_out, rest = addition_split()
    labelled, unlabelled = rest[:settings["labelled"]], rest[settings["labelled"]:]
    return tokenizer, addition_tasks(tokenizer, held_out), labelled, unlabelled


def scored(model, tokenizer, held_out: list) -> dict:
    """Each held-out problem's greedy score, and the first EXAMPLES responses."""
    from ch07_instructions.grpo import END, exact_match, response_text, sample_group, solve

    eos_id = tokenizer.ids[END]
    examples = [[list(problem), response_text(tokenizer, sample_group(
        model, prompt, 1, 6, eos_id, temperature=0.0)[0], eos_id)[0]]
        for prompt, problem in held_out[:EXAMPLES]]
    scores = solve(model, held_out, tokenizer, exact_match, eos_id=eos_id)
    return {"accuracy": sum(scores) / len(scores), "scores": [int(s) for s in scores],
            "examples": examples}


def run_one(name: str, weights: str, settings: dict) -> dict:
    """One of the five runs, in a worker process with the notebooks' numerics."""
    pin_numerics()
    import torch

    from ch04_gpt_model.final_model import GPTModel
    from ch07_instructions import grpo

    tokenizer, held_out, labelled, unlabelled = setup(settings)
    eos_id = tokenizer.ids[grpo.END]
    policy = GPTModel({**grpo.ADDER_CONFIG, "vocab_size": tokenizer.n_vocab})
    policy.load_state_dict(torch.load(weights))
    reference = copy.deepcopy(policy).eval().requires_grad_(False)
    start = time.perf_counter()
    result = {}
    if name == "more finetuning":
        grpo.finetune_adder(policy, tokenizer, labelled, epochs=settings["more_finetune_epochs"])
    elif name == "dpo":
        pairs = grpo.checker_pairs(policy, grpo.addition_tasks(
            tokenizer, unlabelled[:settings["dpo_prompts"]]), tokenizer, grpo.exact_match,
            eos_id=eos_id)
        losses = grpo.train_dpo_on_pairs(
            policy, reference, pairs, eos_id=eos_id, steps=settings["dpo_steps"],
            batch_size=settings["dpo_batch"], beta=settings["dpo_beta"])
        result = {"pairs": len(pairs), "losses": losses}
    else:
        reward = {"grpo": grpo.addition_reward, "gamed": grpo.reward_with_brevity_bonus,
                  "fixed": grpo.reward_with_brevity_bonus_fixed}[name]
        result["history"] = grpo.train_grpo(
            policy, reference, grpo.addition_tasks(tokenizer, unlabelled), reward, tokenizer,
            eos_id=eos_id, steps=settings["grpo_steps"],
            prompts_per_step=settings["prompts_per_step"], group_size=settings["group_size"],
            lr=settings["lr"], clip=settings["clip"], kl_beta=settings["kl_beta"],
            updates_per_batch=settings["updates_per_batch"], score=grpo.exact_match,
            progress=False)
    seconds = round(time.perf_counter() - start, 1)
    return {**result, **scored(policy, tokenizer, held_out), "seconds": seconds}


RUNS = ("grpo", "gamed", "fixed", "dpo", "more finetuning")


def main() -> None:
    parser = CommandParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("grpo_run.json"))
    parser.add_argument("--workers", type=number_arg(int, 1), default=2)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    pin_numerics()
    import torch

    from ch07_instructions.grpo import finetune_adder, pretrain_adder
    from shared.utils import measured_on, write_atomically

    settings = QUICK if args.quick else SETTINGS
    print(f"{measured_on()}; {len(RUNS)} runs, {args.workers} at a time", flush=True)
    start = time.perf_counter()
    tokenizer, held_out, labelled, unlabelled = setup(settings)
    model = pretrain_adder(tokenizer, labelled + unlabelled, epochs=settings["pretrain_epochs"])
    finetune_adder(model, tokenizer, labelled, epochs=settings["finetune_epochs"])
    finetuned = {**scored(model, tokenizer, held_out),
                 "seconds": round(time.perf_counter() - start, 1)}
    print(f"finetuned: held-out accuracy {finetuned['accuracy']:.3f} "
          f"({finetuned['seconds']} s)", flush=True)
    runs = {}
    with tempfile.TemporaryDirectory() as folder:
        weights = str(Path(folder) / "finetuned.pth")
        torch.save(model.state_dict(), weights)
        with ProcessPoolExecutor(args.workers) as pool:
            for name, run in zip(RUNS, pool.map(run_one, RUNS, [weights] * len(RUNS),
                                                [settings] * len(RUNS))):
                runs[name] = run
                print(f"{name}: held-out accuracy {run['accuracy']:.3f} ({run['seconds']} s)",
                      flush=True)

    # "-dirty" when the working tree held changes not yet committed, and which files they were in
    def git(*words):
        return subprocess.run(["git", *words], capture_output=True, text=True,
                              cwd=Path(__file__).parent).stdout
    result = {
        "command": "python ch07_instructions/grpo_run.py" + (" --quick" if args.quick else "")
                   + f" --workers {args.workers}",
        "measured_on": measured_on(), "commit": git("describe", "--always", "--dirty").strip(),
        "uncommitted": [line[3:] for line in git("status", "--porcelain").splitlines()],
        "wall_seconds": round(time.perf_counter() - start), "settings": settings,
        "finetuned": finetuned, "runs": runs}
    write_atomically(args.out, lambda tmp: tmp.write_text(json.dumps(result, indent=1) + "\n"))
    print(f"{result['wall_seconds']} s; written to {args.out}")


if __name__ == "__main__":
    run_main(main)
