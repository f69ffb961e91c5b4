"""Section 5.9.3's comparison over several seeds: GPT-2's block and the modern block of 4.8,
trained on The Verdict with the same budget (the notebook trains each once, from seed 123).

    python ch05_pretraining/benchmark_blocks.py [--seeds 123 124 125] [--epochs 5] [--pinned]

For each seed, both models start from that seed and see the same shuffled batches; the runs
draw their random numbers as the notebook's do (the same evaluations), so that with the
notebook runner's numerics (--pinned, shared/tooling/numerics.py: one thread, AVX2 kernels) seed 123
gives the notebook's numbers. Printed: parameters, the final training and validation losses
over the whole loaders, and, for the modern model (which has no position table), the loss on
windows of 128 validation tokens starting every 32 at positions 0-63 (trained on) and 64-127
(never trained on), against the same tokens 64-127 read as a fresh 64-token window of their
own, where position 64 + j is predicted from only the j + 1 tokens 64 to 64 + j.
"""

import contextlib
import io
import statistics

import tiktoken
import torch

from shared import (
    GPTModel,
    ModernGPTModel,
    calc_loss_loader,
    count_parameters,
    create_dataloader_v1,
    gpt2_config,
    read_text,
    set_seed,
    train_model_simple_hooked,
)
from shared.tooling.command_line import CommandParser, number_arg, run_main
from shared.tooling.numerics import pin_numerics


GPT2_BLOCK = gpt2_config(context_length=64, emb_dim=128, n_heads=4, n_layers=2)
MODERN_BLOCK = {"vocab_size": 50_257, "context_length": 128, "emb_dim": 128, "n_heads": 4,
                "n_kv_groups": 2, "n_layers": 2, "hidden_dim": 344, "qk_norm": True,
                "rope_base": 10_000.0, "drop_rate": 0.1}


def position_losses(model, ids: torch.Tensor, stride: int = 32) -> dict[str, float]:
    """Mean next-token loss over 128-token windows of ids at positions 0-63 and 64-127, and at
    64-127 when tokens 64-127 are read as a fresh window of their own (position 64 + j then
    sees only the j + 1 tokens 64 to 64 + j, not the 64 tokens before it)."""
    windows = ids.unfold(0, 129, stride)
    sums = {"0-63": 0.0, "64-127": 0.0, "64-127, as a fresh window": 0.0}
    with torch.no_grad():
        for batch in windows.split(8):  # (8, 129): the logits of 8 windows at a time
            whole = torch.nn.functional.cross_entropy(
                model(batch[:, :-1]).transpose(1, 2), batch[:, 1:], reduction="none")
            cut = torch.nn.functional.cross_entropy(
                model(batch[:, 64:-1]).transpose(1, 2), batch[:, 65:], reduction="none")
            sums["0-63"] += whole[:, :64].mean(1).sum().item()
            sums["64-127"] += whole[:, 64:].mean(1).sum().item()
            sums["64-127, as a fresh window"] += cut.mean(1).sum().item()
    return {key: total / len(windows) for key, total in sums.items()}


def main() -> None:
    parser = CommandParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=number_arg(int, 0, 2**32 - 1), nargs="+",
                        default=[123, 124, 125])  # NumPy's seeds
    parser.add_argument("--epochs", type=number_arg(int, 1), default=5)
    parser.add_argument("--pinned", action="store_true",
                        help="the notebooks' pinned numerics (one thread, AVX2 kernels)")
    args = parser.parse_args()
    if args.pinned:
        pin_numerics()  # before the first kernel, which is when ATen and MKL read the pins
    text = read_text("the-verdict")
    split = int(0.9 * len(text))
    val_ids = torch.tensor(tiktoken.get_encoding("gpt2").encode(text[split:]))
    results = {"GPT-2 block": [], "modern block": []}
    for seed in args.seeds:
        for name, build in (("GPT-2 block", lambda: GPTModel(GPT2_BLOCK)),
                            ("modern block", lambda: ModernGPTModel(MODERN_BLOCK))):
            set_seed(seed)
            model = build()
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
            set_seed(seed)  # the same shuffled batches for both models
            train_loader = create_dataloader_v1(text[:split], batch_size=2, max_length=64,
                                                stride=64, shuffle=True, drop_last=True)
            val_loader = create_dataloader_v1(text[split:], batch_size=2, max_length=64,
                                              stride=64, shuffle=False, drop_last=False)
            with contextlib.redirect_stdout(io.StringIO()):  # the evaluations' lines
                train_model_simple_hooked(model, train_loader, val_loader, optimizer, "cpu",
                                   args.epochs, eval_freq=36, eval_iter=4)
            model.eval()
            with torch.no_grad():
                losses = (calc_loss_loader(train_loader, model, "cpu"),
                          calc_loss_loader(val_loader, model, "cpu"))
            results[name].append(losses)
            line = (f"seed {seed} {name:<13} {count_parameters(model):,} parameters: training "
                    f"loss {losses[0]:.3f}, validation loss {losses[1]:.3f}")
            if name == "modern block":
                line += "; validation loss by position: " + ", ".join(
                    f"{key} {value:.3f}" for key, value in position_losses(model, val_ids).items())
            print(line, flush=True)
    for name, values in results.items():
        val = [v for _, v in values]
        print(f"{name}: validation loss {statistics.mean(val):.3f} "
              f"(from {min(val):.3f} to {max(val):.3f} over {len(val)} seeds)")


if __name__ == "__main__":
    run_main(main)
