"""Section 5.13's sweep: small models trained under fixed compute budgets on Tiny Shakespeare's
characters, the loss law fitted to them, and larger runs held back, predicted, then run.

    python ch05_pretraining/scaling_sweep.py [--out ch05_pretraining/scaling_sweep.json]
        [--workers 2] [--quick]

Each budget trains six rungs of scaling.LADDER, each on the tokens the budget buys at 6 FLOPs per
parameter per token (C = 6ND), with one recipe (train_on_budget: AdamW, peak learning rate 1e-2,
warm-up and cosine decay, batches of 32 windows of 64 characters). Every run pins the notebooks'
numerics (one thread, shared/tooling/numerics.py), so --workers processes run side by side, one
per core, and section 5.13.2 reruns any one of them to the same loss. When the sweep is done, the
script fits the law (fit_loss_law), prints the compute-optimal size for the held-back budget and
the loss the law predicts for the rung nearest it and for its two neighbours on the ladder, and
only then trains those three runs. Everything is written to --out (JSON), with the machine, the
date, the commit and the wall time. --quick runs a sweep of
seconds, to check the script, whose fit means nothing."""

import json
import math
import subprocess
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from shared.tooling.command_line import CommandParser, number_arg, run_main
from shared.tooling.numerics import pin_numerics


CONTEXT, BATCH_TOKENS = 64, 32 * 64  # train_on_budget's batches: 32 windows of 64
BUDGETS = {1e11: (0, 6), 3e11: (1, 7), 1e12: (2, 8)}  # rungs of LADDER, [start, stop)
HELD_BACK = 3e12
QUICK_BUDGETS, QUICK_HELD_BACK = {3e8: (0, 3), 1e9: (0, 3)}, 3e9


_DATA = {}


def run_one(rung: tuple[int, int], flops: float) -> dict:
    """One run of the sweep, in a worker process with the notebooks' numerics."""
    pin_numerics()
    from ch05_pretraining.scaling import ladder_config, shakespeare_windows, train_on_budget

    if not _DATA:
        _DATA["windows"] = shakespeare_windows(CONTEXT)
    tokenizer, train, val_loader = _DATA["windows"]
    start = time.perf_counter()
    run = train_on_budget(ladder_config(*rung, tokenizer.n_vocab, CONTEXT), train, val_loader,
                          flops)
    return {**run, "budget": flops, "seconds": round(time.perf_counter() - start, 1)}


def fit(runs: list[dict]) -> dict:
    """The sweep's fits: each budget's lowest point (Chinchilla's second approach), the power
    law through them, and the loss law over every run (the third approach)."""
    from ch05_pretraining.scaling import fit_loss_law, fit_power_law, isoflop_minimum

    minima = {}
    for budget in sorted({run["budget"] for run in runs}):
        of_budget = [run for run in runs if run["budget"] == budget]
        try:
            minima[budget] = isoflop_minimum([run["params"] for run in of_budget],
                                             [run["val_loss"] for run in of_budget])
        except ValueError:  # no lowest point (a --quick sweep)
            minima[budget] = None
    found = {budget: point for budget, point in minima.items() if point}
    exponent = (fit_power_law(list(found), [params for params, _ in found.values()])[1]
                if len(found) >= 2 else None)
    law = fit_loss_law([run["params"] for run in runs], [run["tokens"] for run in runs],
                       [run["val_loss"] for run in runs])
    return {"isoflop_minima": {f"{budget:.0e}": point for budget, point in minima.items()},
            "params_exponent": exponent, "law": law}


def main() -> None:
    parser = CommandParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("scaling_sweep.json"))
    parser.add_argument("--workers", type=number_arg(int, 1), default=2)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    pin_numerics()
    from ch05_pretraining.scaling import LADDER, compute_optimal, law_loss
    from shared.utils import measured_on, write_atomically

    budgets, held_back = (QUICK_BUDGETS, QUICK_HELD_BACK) if args.quick else (BUDGETS, HELD_BACK)
    jobs = [(LADDER[i], budget) for budget, (lo, hi) in budgets.items() for i in range(lo, hi)]
    print(f"{measured_on()} per run, {args.workers} runs at a time; {len(jobs)} runs", flush=True)
    start = time.perf_counter()
    runs = []
    with ProcessPoolExecutor(args.workers) as pool:
        for run in pool.map(run_one, *zip(*jobs)):
            runs.append(run)
            print(f"C={run['budget']:.0e}  {run['n_layers']} layers x {run['emb_dim']:<3} "
                  f"{run['params']:>8,} parameters {run['tokens']:>10,} tokens  "
                  f"loss {run['val_loss']:.4f}  ({run['seconds']} s)", flush=True)
    fits = fit(runs)
    law = fits["law"]
    print("law: L = {E:.3f} + {A:.4g} / N^{alpha:.3f} + {B:.4g} / D^{beta:.3f}".format(**law))
    # The predictions, made and printed before the held-back runs start: the rung nearest the
    # law's best size for the held-back budget, and its neighbours on the ladder
    params, tokens = compute_optimal(law, held_back)
    sizes = {rung: rung_params(rung) for rung in LADDER}
    nearest = min(range(len(LADDER)), key=lambda i: abs(math.log(sizes[LADDER[i]] / params)))
    rungs = LADDER[max(nearest - 1, 0):nearest + 2]
    predicted = {}
    for rung in rungs:
        steps = round(held_back / (6 * sizes[rung] * BATCH_TOKENS))  # as train_on_budget counts
        predicted[rung] = law_loss(law, sizes[rung], steps * BATCH_TOKENS)
    print(f"held back: C={held_back:.0e}; the law's optimum {params:,.0f} parameters on "
          f"{tokens:,.0f} tokens; predicted: " + ", ".join(
              f"{rung[0]} layers x {rung[1]} {loss:.4f}" for rung, loss in predicted.items()),
          flush=True)
    held = []
    with ProcessPoolExecutor(args.workers) as pool:
        for rung, run in zip(rungs, pool.map(run_one, rungs, [held_back] * len(rungs))):
            held.append({"predicted_loss": predicted[rung], "run": run})
            print(f"{rung[0]} layers x {rung[1]}: measured {run['val_loss']:.4f} "
                  f"({run['seconds']} s)", flush=True)
    # "-dirty" when the working tree held changes not yet committed, and which files they were in
    def git(*words):
        return subprocess.run(["git", *words], capture_output=True, text=True,
                              cwd=Path(__file__).parent).stdout
    commit = git("describe", "--always", "--dirty").strip()
    uncommitted = [line[3:] for line in git("status", "--porcelain").splitlines()]
    result = {
        "command": "python ch05_pretraining/scaling_sweep.py"
                   + (" --quick" if args.quick else "") + f" --workers {args.workers}",
        "measured_on": measured_on(), "commit": commit, "uncommitted": uncommitted,
        "wall_seconds": round(time.perf_counter() - start), "context_length": CONTEXT,
        "runs": runs, **fits,
        "held_back": {"budget": held_back, "optimal_params": params, "optimal_tokens": tokens,
                      "nearest": list(LADDER[nearest]), "runs": held}}
    write_atomically(args.out, lambda tmp: tmp.write_text(json.dumps(result, indent=1) + "\n"))
    print(f"{result['wall_seconds']} s; written to {args.out}")


def rung_params(rung: tuple[int, int]) -> int:
    """The parameters of a rung's model (built on the meta device: no memory, no random draws)."""
    import torch

    from ch05_pretraining.attention_variants import CharTokenizer
    from ch05_pretraining.scaling import ladder_config
    from shared import ModernGPTModel, count_parameters, read_text

    vocab_size = CharTokenizer(read_text("tinyshakespeare")).n_vocab
    with torch.device("meta"):
        return count_parameters(ModernGPTModel(ladder_config(*rung, vocab_size, CONTEXT)))


if __name__ == "__main__":
    run_main(main)
