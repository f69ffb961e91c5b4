"""Section 5.11.2's five attention variants, each trained from several seeds: how far a
variant's validation loss moves with the seed alone, beside how far the variants lie apart.

    python ch05_pretraining/benchmark_attention_variants.py [--seeds 3] [--batches 100]
        [--device cuda]

The notebook's budget and models exactly (4 layers of width 64, 4 query heads of 16, RoPE on 8
numbers of each, no QK-norm; 2 key-value groups, a latent of 16, windows of 16; 100 batches of
32 windows of 64 characters of Tiny Shakespeare, peak learning rate 6e-3), from seeds 123, 124,
...; seed 123 is the notebook's run. Prints each variant's loss from every seed, their mean and
their spread (largest minus smallest). --batches trains on more of the corpus (it has 490
batches of 32 windows of 64 characters to train on)."""

import time

from ch05_pretraining.attention_variants import (
    CharTokenizer,
    attention_variants,
    char_loaders,
    train_and_evaluate,
)
from shared import read_text
from shared.tooling.command_line import CommandParser, device_arg, number_arg, run_main
from shared.utils import measured_on


def main() -> None:
    parser = CommandParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=number_arg(int, 1), default=3)
    parser.add_argument("--batches", type=number_arg(int, 1), default=100)
    parser.add_argument("--device", type=device_arg, default="cpu")
    args = parser.parse_args()
    text = read_text("tinyshakespeare")
    split = text.rindex("\n\n", 0, int(0.9 * len(text))) + 2
    tokenizer, context, batch_size = CharTokenizer(text), 64, 32
    train_text = text[:min(split, context * args.batches * batch_size + 1)]
    val_text = text[split:split + 32_768 + 1]
    small = {"vocab_size": tokenizer.n_vocab, "context_length": context, "emb_dim": 64,
             "n_heads": 4, "n_layers": 4, "n_kv_groups": 4, "head_dim": 16, "hidden_dim": 192,
             "rope_base": 10_000.0, "rope_dim": 8}  # no QK-norm, half of each head rotated
    variants = attention_variants(small, kv_groups=2, window=16, latent=16, rope_dim=8)
    seeds = range(123, 123 + args.seeds)
    print(f"{measured_on()}, device {args.device}; {args.batches} batches of {batch_size} "
          f"windows of {context} characters; seeds {seeds.start}-{seeds.stop - 1}")
    start = time.perf_counter()
    for name, cfg in variants.items():
        losses = []
        for seed in seeds:
            train_loader, val_loader = char_loaders(train_text, val_text, tokenizer, context,
                                                    batch_size, seed=seed)
            _, loss = train_and_evaluate(cfg, train_loader, val_loader, peak_lr=6e-3,
                                         warmup_steps=15, seed=seed, device=args.device)
            losses.append(loss)
        print(f"{name:<24} " + " ".join(f"{loss:.3f}" for loss in losses)
              + f" | mean {sum(losses) / len(losses):.3f}, spread {max(losses) - min(losses):.3f}",
              flush=True)
    print(f"{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    run_main(main)
