"""Training throughput and peak memory of one GPT-2-sized training step, side by side.

    python ch05_pretraining/benchmark_training.py                  # 124M, context 256, batch 2
    python ch05_pretraining/benchmark_training.py --ablation       # each fast option on its own
    python ch05_pretraining/benchmark_training.py --device cuda --context 1024 --batch 16

Variants, all with the same dimensions, random weights and random token ids:
  ours, default      GPTModel as the notebooks build it, chapter 5's train_model_simple, AdamW
  ours, fast         the same model and loop with the fast options of section 5.8 switched on
  book               llms-from-scratch's GPTModel (if installed), the book's training step
  transformers       transformers' GPT2LMHeadModel (if installed), the same step
Rounds are interleaved (A B C D, A B C D, ...) so that a noisy machine slows every variant
alike; the table reports the median round. Peak memory is measured per variant: on CUDA with
torch.cuda.max_memory_allocated, on the CPU as the peak resident memory of a child process that
runs only that variant. --keep-freed-memory tells glibc's allocator to keep freed memory (5.8).
"""

import argparse
import contextlib
import ctypes
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from shared import GPTModel, gpt2_config, train_model_simple


GLIBC_M_TRIM_THRESHOLD, GLIBC_M_MMAP_MAX = -1, -4


def keep_freed_memory():
    """Ask glibc's malloc to keep freed memory instead of returning it to the kernel.

    By default, blocks above 128 KiB-32 MiB come from mmap and go back with munmap when freed,
    and each fresh page faults on first touch; a training step allocates and frees gigabytes.
    """
    libc = ctypes.CDLL("libc.so.6")
    ok = libc.mallopt(GLIBC_M_MMAP_MAX, 0) and libc.mallopt(GLIBC_M_TRIM_THRESHOLD, 2**30)
    if not ok:
        raise RuntimeError("mallopt refused the settings")


def cpu_has_bf16() -> bool:
    """True on CPUs with native bfloat16 dot products (AVX512_BF16 or AMX)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


FAST_OPTIONS = ["tie_weights", "sdpa", "fused_adamw", "bf16_autocast", "compile"]


def our_variant(cfg, args, options=()):
    """(model, train_step) for our GPTModel with the given fast options."""
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
    return model, train_step


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
    return model, train_step


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
    """name -> zero-argument function building (model, train_step)."""
    cfg = gpt2_config(args.size, context_length=args.context)
    fast = [o for o in FAST_OPTIONS if o != "compile" or args.compile]
    if args.device == "cpu" and not cpu_has_bf16():
        fast.remove("bf16_autocast")
    found = {}
    if args.ablation:
        found["ours, default"] = lambda: our_variant(cfg, args)
        for option in fast:
            found[f"ours + {option}"] = lambda option=option: our_variant(cfg, args, [option])
    else:
        found["ours, default"] = lambda: our_variant(cfg, args)
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


def measure_memory(name, args):
    """Peak memory of building and training one variant, in GiB."""
    if args.device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        model, train_step = variants(args)[name]()
        train_step(random_batches(args, 50257)[:2])
        synchronize(args.device)
        peak = torch.cuda.max_memory_allocated() / 2**30
        del model, train_step
        return peak
    command = [sys.executable, __file__, "--only", name, *sys.argv[1:]]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return float(result.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="gpt2-small (124M)")
    parser.add_argument("--context", type=int, default=256)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3, help="training steps per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--compile", action="store_true", help="include torch.compile")
    parser.add_argument("--ablation", action="store_true",
                        help="our default path with each fast option on its own")
    parser.add_argument("--keep-freed-memory", action="store_true")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory column")
    parser.add_argument("--only", help=argparse.SUPPRESS)  # child process: one variant's memory
    args = parser.parse_args()
    if args.keep_freed_memory:
        keep_freed_memory()
    torch.manual_seed(0)

    if args.only:  # child: build and train one variant, print its peak resident memory
        model, train_step = variants(args)[args.only]()
        train_step(random_batches(args, 50257)[:2])
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)
        return

    builders = variants(args)
    print(f"torch {torch.__version__}, {args.device}, {torch.get_num_threads()} threads, "
          f"{platform.processor() or platform.machine()}, {args.size}, context {args.context}, "
          f"batch {args.batch}, {args.steps} steps x {args.rounds} rounds"
          + (", glibc keeps freed memory" if args.keep_freed_memory else ""))
    models = {name: build() for name, build in builders.items()}
    batches = random_batches(args, 50257)
    for name, (_, train_step) in models.items():  # warm-up (and compilation) outside the clock
        start = time.perf_counter()
        train_step(batches[:1])
        synchronize(args.device)
        print(f"  warm-up {name}: {time.perf_counter() - start:.1f} s", flush=True)
    seconds = {name: [] for name in models}
    for round_index in range(args.rounds):
        for name, (_, train_step) in models.items():
            synchronize(args.device)
            start = time.perf_counter()
            train_step(batches)
            synchronize(args.device)
            seconds[name].append(time.perf_counter() - start)
        print(f"  round {round_index + 1}/{args.rounds} done", flush=True)
    del models

    tokens = args.steps * args.batch * args.context
    baseline = next((n for n in seconds if n.startswith("book")), "ours, default")
    baseline_rate = tokens / statistics.median(seconds[baseline])
    rows = []
    for name, times in seconds.items():
        rate = tokens / statistics.median(times)
        memory = "" if args.no_memory else f"{measure_memory(name, args):.2f}"
        rows.append((name, f"{rate:,.0f}", f"{rate / baseline_rate:.2f}x", memory))
    header = ("variant", "tokens/s", f"vs {baseline.split(' (')[0]}", "peak memory GiB")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(4)]
    for row in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)))


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
