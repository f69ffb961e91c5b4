"""Training throughput and peak memory of one GPT-2-sized training step, side by side.

    python ch05_pretraining/benchmark_training.py                  # 124M, context 256, batch 2
    python ch05_pretraining/benchmark_training.py --ablation       # each fast option on its own
    python ch05_pretraining/benchmark_training.py --device cuda --context 1024 --batch 16

Variants, all with the same dimensions, random weights and random token ids:
  ours, default      GPTModel as the notebooks build it, chapter 5's train_model_simple, AdamW
  ours, fast         the same model and loop with the fast options of section 5.8 switched on
  book               llms-from-scratch's GPTModel (if installed), the book's training step
  transformers       transformers' GPT2LMHeadModel (if installed), the same step
Every measurement runs in a fresh process that builds one variant, takes one warm-up step
(and compiles, with --compile), then times --steps steps: models never share a heap, and each
variant is measured under glibc's default allocator and with freed memory kept
(shared.keep_freed_memory), in the same run. The processes are interleaved and rotated
(A B C D, B C D A, ...) so that a noisy machine slows every variant alike; the table reports
the median round. Peak memory: torch.cuda.max_memory_allocated on CUDA, else the process's
peak resident memory (VmHWM).
"""

import argparse
import contextlib
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from shared import (
    GPTModel,
    gpt2_config,
    keep_freed_memory,
    supports_fast_bf16,
    train_model_simple,
)


FAST_OPTIONS = ["tie_weights", "sdpa", "fused_adamw", "bf16_autocast", "compile"]


def our_variant(cfg, args, options=()):
    """train_step(batches) for our GPTModel with the given fast options."""
    cfg = {**cfg, "tie_weights": "tie_weights" in options, "sdpa": "sdpa" in options}
    model = GPTModel(cfg).to(args.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=4e-4, weight_decay=0.1,
                                  fused=True if "fused_adamw" in options else None)
    if "compile" in options:
        model.compile()
    autocast = torch.bfloat16 if "bf16_autocast" in options else None

    def train_step(batches):
        train_model_simple(model, batches, [], optimizer, args.device, 1, None, 0, None, None,
                           progress=False, autocast_dtype=autocast)
    return train_step


def plain_step(model, optimizer, logits_of):
    """The book's training step: zero_grad, cross-entropy, backward, AdamW step."""
    def train_step(batches):
        model.train()
        for inputs, targets in batches:
            optimizer.zero_grad()
            logits = logits_of(model, inputs)
            loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())
            loss.backward()
            optimizer.step()
    return train_step


def book_variant(cfg, args):
    from llms_from_scratch.ch04 import GPTModel as BookGPTModel
    model = BookGPTModel(cfg).to(args.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=4e-4, weight_decay=0.1)
    return plain_step(model, optimizer, lambda m, x: m(x))


def transformers_variant(cfg, args):
    from transformers import GPT2Config, GPT2LMHeadModel
    config = GPT2Config(vocab_size=cfg["vocab_size"], n_positions=cfg["context_length"],
                        n_embd=cfg["emb_dim"], n_layer=cfg["n_layers"], n_head=cfg["n_heads"],
                        resid_pdrop=cfg["drop_rate"], embd_pdrop=cfg["drop_rate"],
                        attn_pdrop=cfg["drop_rate"])
    model = GPT2LMHeadModel(config).to(args.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=4e-4, weight_decay=0.1)
    return plain_step(model, optimizer, lambda m, x: m(x).logits)


def variants(args):
    """name -> zero-argument function building that variant's train_step."""
    cfg = gpt2_config(args.size, context_length=args.context)
    fast = [o for o in FAST_OPTIONS if o != "compile" or args.compile]
    if not supports_fast_bf16(args.device):
        fast.remove("bf16_autocast")
    found = {"ours, default": lambda: our_variant(cfg, args)}
    if args.ablation:
        for option in fast:
            found[f"ours + {option}"] = lambda option=option: our_variant(cfg, args, [option])
    found["ours, fast (" + ", ".join(fast) + ")"] = lambda: our_variant(cfg, args, fast)
    if not args.ablation:
        with contextlib.suppress(ImportError):
            import llms_from_scratch.ch04  # noqa: F401
            found["book (llms-from-scratch)"] = lambda: book_variant(cfg, args)
        with contextlib.suppress(ImportError):
            import transformers  # noqa: F401
            found["transformers GPT2LMHeadModel"] = lambda: transformers_variant(cfg, args)
    return found


def random_batches(args, vocab_size):
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab_size, (args.steps, args.batch, args.context + 1),
                        generator=generator)
    return [(row[:, :-1].to(args.device), row[:, 1:].to(args.device)) for row in ids]


def synchronize(device):
    if device == "cuda":
        torch.cuda.synchronize()


def peak_memory_gib(device) -> float:
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**30
    status = Path("/proc/self/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM"))
               .split()[1]) / 2**20


def measure_in_this_process(args):
    """Child: build args.only, warm up, time args.steps steps; print seconds and peak GiB."""
    if args.keep_freed_memory and not keep_freed_memory():
        raise SystemExit("--keep-freed-memory needs glibc")
    torch.manual_seed(0)
    train_step = variants(args)[args.only]()
    batches = random_batches(args, 50257)
    train_step(batches[:1])  # first-call allocations, kernel choice, compilation
    synchronize(args.device)
    start = time.perf_counter()
    train_step(batches)
    synchronize(args.device)
    print(json.dumps({"seconds": time.perf_counter() - start,
                      "peak_gib": peak_memory_gib(args.device)}))


def measure(name, keep, args):
    command = [sys.executable, __file__, *sys.argv[1:], "--only", name]
    if keep:
        command.append("--keep-freed-memory")
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"{name} failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="gpt2-small (124M)")
    parser.add_argument("--context", type=int, default=256)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3, help="timed training steps per process")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--compile", action="store_true", help="include torch.compile")
    parser.add_argument("--ablation", action="store_true",
                        help="our default path with each fast option on its own")
    parser.add_argument("--allocator", choices=["both", "default", "keep"],
                        default="both" if sys.platform == "linux" else "default",
                        help="glibc's default, freed memory kept, or both (Linux)")
    parser.add_argument("--only", help=argparse.SUPPRESS)  # child: measure this variant
    parser.add_argument("--keep-freed-memory", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.only:
        measure_in_this_process(args)
        return

    allocators = {"both": [False, True], "default": [False], "keep": [True]}[args.allocator]
    runs = [(name, keep) for name in variants(args) for keep in allocators]
    print(f"torch {torch.__version__}, {args.device}, {torch.get_num_threads()} threads, "
          f"{platform.processor() or platform.machine()}, {args.size}, context {args.context}, "
          f"batch {args.batch}, {args.steps} steps per process, {args.rounds} rounds of "
          f"{len(runs)} processes", flush=True)
    results = {run: [] for run in runs}
    for round_index in range(args.rounds):
        shift = round_index % len(runs)
        for name, keep in runs[shift:] + runs[:shift]:  # each round starts with another
            results[name, keep].append(measure(name, keep, args))
        print(f"  round {round_index + 1}/{args.rounds} done", flush=True)

    tokens = args.steps * args.batch * args.context
    rate = {run: tokens / statistics.median(r["seconds"] for r in rows)
            for run, rows in results.items()}
    baseline_name = next((n for n, _ in runs if n.startswith("book")), "ours, default")
    header = ["variant"]
    for keep in allocators:
        label = "freed memory kept" if keep else "default malloc"
        header += [f"tokens/s, {label}", f"vs {baseline_name.split(' (')[0]}", "peak GiB"]
    table = []
    for name in variants(args):
        row = [name]
        for keep in allocators:
            peak = max(r["peak_gib"] for r in results[name, keep])
            row += [f"{rate[name, keep]:,.0f}",
                    f"{rate[name, keep] / rate[baseline_name, keep]:.2f}x", f"{peak:.2f}"]
        table.append(row)
    widths = [max(len(str(r[i])) for r in [header, *table]) for i in range(len(header))]
    for row in [header, ["-" * w for w in widths], *table]:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)))


if __name__ == "__main__":
    main()
