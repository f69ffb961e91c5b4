"""The book's section 5.2 training run end to end, timed: would it fit in a CI run?

    python ch05_pretraining/benchmark_book_run.py              # default path, then fast path
    python ch05_pretraining/benchmark_book_run.py --pinned     # as the notebooks run in CI
    python ch05_pretraining/benchmark_book_run.py --only fast  # one of the two runs

The run is the book's: GPT-2 small (124M) at context 256, trained from scratch on The
Verdict for 10 epochs with batches of 2, AdamW (lr 4e-4, weight decay 0.1), both losses on
5 batches every 5 steps and a greedy sample after each epoch. It runs twice through chapter
5's train_model (at the book's constant learning rate, without clipping: the loop of
train_model_simple): as the notebook builds the model, and with the fast options of
section 5.8 that leave the model's arithmetic as the book's (SDPA, fused AdamW, and bf16
autocast where the processor has native bf16; no weight tying, no compilation). Prints the
wall time of each run and its last losses. --pinned applies the notebooks' pinned numerics
(one thread, AVX2 kernels), as the stored outputs and CI do.
"""

import platform
import time

from shared.tooling.command_line import CommandParser, run_main
from shared.tooling.numerics import pin_numerics


def book_run(fast: bool) -> tuple[float, float, float]:
    import tiktoken
    import torch

    from shared import (
        GPTModel,
        create_dataloader_v1,
        gpt2_config,
        read_text,
        set_seed,
        supports_fast_bf16,
        train_model,
    )

    tokenizer = tiktoken.get_encoding("gpt2")
    text = read_text("the-verdict")
    split = int(0.9 * len(text))
    set_seed(123)
    loaders = [create_dataloader_v1(part, batch_size=2, max_length=256, stride=256,
                                    shuffle=shuffle, drop_last=shuffle)
               for part, shuffle in [(text[:split], True), (text[split:], False)]]
    set_seed(123)
    model = GPTModel(gpt2_config("gpt2-small (124M)", context_length=256, sdpa=fast))
    optimizer = torch.optim.AdamW(model.parameters(), lr=4e-4, weight_decay=0.1,
                                  fused=True if fast else None)
    autocast = torch.bfloat16 if fast and supports_fast_bf16("cpu") else None
    start = time.perf_counter()
    train_losses, val_losses, *_ = train_model(
        model, *loaders, optimizer, "cpu", n_epochs=10, eval_freq=5, eval_iter=5,
        start_context="Every effort moves you", tokenizer=tokenizer, warmup_steps=0,
        lr_schedule=lambda step: 4e-4, max_grad_norm=None, autocast_dtype=autocast)
    return time.perf_counter() - start, train_losses[-1], val_losses[-1]


def main() -> None:
    parser = CommandParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pinned", action="store_true", help="the notebooks' pinned numerics")
    parser.add_argument("--only", choices=["default", "fast"], help="run one path only")
    args = parser.parse_args()
    if args.pinned:
        pin_numerics()
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{platform.processor() or platform.machine()}, pinned numerics: {args.pinned}")
    for name, fast in [("default path", False), ("fast path", True)]:
        if args.only and not name.startswith(args.only):
            continue
        seconds, train_loss, val_loss = book_run(fast)
        print(f"{name}: {seconds / 60:.1f} min; last losses: train {train_loss:.3f}, "
              f"validation {val_loss:.3f}", flush=True)


if __name__ == "__main__":
    run_main(main)
