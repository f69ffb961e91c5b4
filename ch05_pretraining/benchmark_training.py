"""Training throughput and peak memory of one GPT-2-sized training step, side by side.

    python ch05_pretraining/benchmark_training.py                  # 124M, context 256, batch 2
    python ch05_pretraining/benchmark_training.py --ablation       # each fast option on its own
    python ch05_pretraining/benchmark_training.py --device cuda --context 1024 --batch 16

Variants, all with the same dimensions, random weights and random token ids:
  ours, default      GPTModel as the notebooks build it, chapter 5's train_model, AdamW
  ours, fast         the same model and loop with the fast options of section 5.8 switched on
  ours, fast + chunked_loss   and the loss computed without the full logits (less memory)
  book               llms-from-scratch's GPTModel (if installed), the book's training step
  transformers       transformers' GPT2LMHeadModel (if installed), the same step
Every measurement runs in a fresh process that builds one variant, takes one warm-up step
(and compiles, with --compile), then times --steps steps: models never share a heap, and each
variant is measured under glibc's default allocator and with freed memory kept
(shared.keep_freed_memory), in the same run. The processes are interleaved and rotated
(A B C D, B C D A, ...) so that a noisy machine slows every variant alike; the table reports
the median round. Peak memory: torch.cuda.max_memory_allocated on CUDA, else the process's
peak resident memory (VmHWM).

The limit: the same run also measures the machine's own matrix-multiply throughput, under the
same thread settings: torch.matmul on float32 matrices shaped like the model's (rows = batch x
context, at least 2048; columns d_model -> 4 d_model, 4 d_model -> d_model, d_model -> vocab),
each timed several times, before and after the rounds; the best rate is the peak. Where bf16 is
native (shared.supports_fast_bf16) the same is measured in bfloat16. Each variant's achieved
FLOP/s counts the model's FLOPs, the same for every variant of the same dimensions:

    FLOPs per token = 6 N + 12 n_layers d_model context

N is the number of weights in matrix multiplications (every nn.Linear weight, the output head
included, tied or not; embeddings, biases and LayerNorms are left out): forward 2 N, backward
4 N. The second term is attention's two matmuls (scores and weighted sum), forward and backward,
counted over the full context as in the PaLM paper (a causal mask would halve it). FLOP/s =
tokens/s x FLOPs per token; MFU = FLOP/s / measured peak, the bf16 peak for variants that
autocast to bf16, else the float32 peak.
"""

import argparse
import contextlib
import json
import math
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from ch05_pretraining.benchmark_generation import synchronize
from shared import (
    GPTModel,
    calc_loss_batch,
    calc_loss_batch_chunked,
    gpt2_config,
    keep_freed_memory,
    supports_fast_bf16,
    train_model,
)
from shared.tooling.command_line import CommandParser, device_arg, number_arg, run_main


FAST_OPTIONS = ["tie_weights", "sdpa", "fused_adamw", "bf16_autocast", "compile"]
FAST_VARIANT_OPTIONS = {}  # variant name -> its fast options, where the name does not list them


def our_variant(cfg, args, options=()):
    """train_step(batches) for our GPTModel with the given fast options."""
    cfg = {**cfg, "tie_weights": "tie_weights" in options, "sdpa": "sdpa" in options}
    model = GPTModel(cfg).to(args.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=4e-4, weight_decay=0.1,
                                  fused=True if "fused_adamw" in options else None)
    if "compile" in options:
        model.compile()
    autocast = torch.bfloat16 if "bf16_autocast" in options else None
    loss_batch = calc_loss_batch_chunked if "chunked_loss" in options else calc_loss_batch

    def train_step(batches):
        train_model(model, batches, [], optimizer, args.device, 1, None, 0, None, None, 0,
                    lr_schedule=lambda step: 4e-4, max_grad_norm=None, progress=False,
                    autocast_dtype=autocast, loss_batch=loss_batch)
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
    cfg = gpt2_config(args.size, context_length=args.context, drop_rate=args.drop_rate)
    fast = [o for o in FAST_OPTIONS if o != "compile" or args.compile]
    if not supports_fast_bf16(args.device):
        fast.remove("bf16_autocast")
    found = {"ours, default": lambda: our_variant(cfg, args)}
    if args.ablation:
        for option in fast:
            found[f"ours + {option}"] = lambda option=option: our_variant(cfg, args, [option])
    found["ours, fast (" + ", ".join(fast) + ")"] = lambda: our_variant(cfg, args, fast)
    # Memory, not speed: the loss without the full logits (section 5.8), on top of the fast path
    # (without compile: the chunked loss calls model.hidden_states, which compile does not reach)
    chunked = [option for option in fast if option != "compile"] + ["chunked_loss"]
    found["ours, fast + chunked_loss"] = lambda: our_variant(cfg, args, chunked)
    FAST_VARIANT_OPTIONS["ours, fast + chunked_loss"] = chunked
    if not (args.ablation or args.ours_only):
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


def flops_per_token(cfg, args) -> int:
    """6 N + 12 n_layers d_model context (see the module docstring)."""
    model = GPTModel({**cfg, "tie_weights": False})
    matmul_weights = sum(m.weight.numel() for m in model.modules()
                         if isinstance(m, torch.nn.Linear))
    return 6 * matmul_weights + 12 * cfg["n_layers"] * cfg["emb_dim"] * args.context


def matmul_peak(args, dtype, repeats=5) -> float:
    """The best FLOP/s of torch.matmul on float32 (or dtype) matrices shaped like the model's."""
    cfg = gpt2_config(args.size, context_length=args.context)
    d, rows = cfg["emb_dim"], max(args.batch * args.context, 2048)
    shapes = [(rows, d, 4 * d), (rows, 4 * d, d), (rows, d, cfg["vocab_size"])]
    best = 0.0
    generator = torch.Generator().manual_seed(0)
    for m, k, n in shapes:
        a = torch.randn(m, k, generator=generator).to(args.device, dtype)
        b = torch.randn(k, n, generator=generator).to(args.device, dtype)
        out = torch.empty(m, n, device=args.device, dtype=dtype)
        torch.matmul(a, b, out=out)  # first call: allocation, kernel choice
        calls = 1
        for _ in range(repeats):
            synchronize(args.device)
            start = time.perf_counter()
            for _ in range(calls):
                torch.matmul(a, b, out=out)
            synchronize(args.device)
            seconds = time.perf_counter() - start
            best = max(best, 2 * m * k * n * calls / seconds)
            if seconds < 0.05:  # too short to time well (a fast GPU): more calls per timing
                calls = min(1000, math.ceil(calls * 0.05 / max(seconds, 1e-6)))
    return best


def measure_peaks(args) -> dict:
    """{dtype name: best matmul FLOP/s} for float32 and, where native, bfloat16."""
    peaks = {"float32": matmul_peak(args, torch.float32)}
    if supports_fast_bf16(args.device):
        peaks["bf16"] = matmul_peak(args, torch.bfloat16)
    return peaks


def format_flops(rate: float) -> str:
    return f"{rate / 1e12:.1f} TFLOP/s" if rate >= 1e12 else f"{rate / 1e9:.0f} GFLOP/s"


def measure(name, keep, args):
    command = [sys.executable, __file__, *sys.argv[1:], "--only", name]
    if keep:
        command.append("--keep-freed-memory")
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"{name} failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main():
    parser = CommandParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="gpt2-small (124M)")
    parser.add_argument("--context", type=number_arg(int, 1), default=256)
    parser.add_argument("--batch", type=number_arg(int, 1), default=2)
    parser.add_argument("--match", default="",
                        help="measure only the variants whose name contains this text")
    parser.add_argument("--ours-only", action="store_true",
                        help="leave out the book's code and transformers")
    parser.add_argument("--drop-rate", type=number_arg(float, 0, 1), default=0.1,
                        help="dropout (the book's 0.1; with dropout, attention on a CPU stores "
                             "its tokens x tokens weights even with sdpa)")
    parser.add_argument("--steps", type=number_arg(int, 1), default=3,
                        help="timed training steps per process")
    parser.add_argument("--rounds", type=number_arg(int, 1), default=3)
    parser.add_argument("--device", type=device_arg,
                        default="cuda" if torch.cuda.is_available() else "cpu")
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
    measured = [name for name in variants(args) if args.match in name]
    if not measured:
        raise SystemExit(f"no variant's name contains {args.match!r}: {list(variants(args))}")
    runs = [(name, keep) for name in measured for keep in allocators]
    print(f"torch {torch.__version__}, {args.device}, {torch.get_num_threads()} threads, "
          f"{platform.processor() or platform.machine()}, {args.size}, context {args.context}, "
          f"batch {args.batch}, {args.steps} steps per process, {args.rounds} rounds of "
          f"{len(runs)} processes", flush=True)
    peaks = measure_peaks(args)  # again after the rounds: the best of both counts
    results = {run: [] for run in runs}
    for round_index in range(args.rounds):
        shift = round_index % len(runs)
        for name, keep in runs[shift:] + runs[:shift]:  # each round starts with another
            results[name, keep].append(measure(name, keep, args))
        print(f"  round {round_index + 1}/{args.rounds} done", flush=True)
    peaks = {name: max(peak, rate) for (name, peak), rate
             in zip(peaks.items(), measure_peaks(args).values(), strict=True)}
    flops = flops_per_token(gpt2_config(args.size, context_length=args.context), args)
    print(f"measured matmul peak ({torch.get_num_threads()} threads): "
          + ", ".join(f"{name} {format_flops(peak)}" for name, peak in peaks.items())
          + f"; model FLOPs per token (6 N + 12 n_layers d_model context): {flops / 1e9:.2f} G")

    tokens = args.steps * args.batch * args.context
    rate = {run: tokens / statistics.median(r["seconds"] for r in rows)
            for run, rows in results.items()}
    baseline_name = next((n for n in measured if n.startswith("book")),
                         "ours, default" if "ours, default" in measured else measured[0])
    header = ["variant"]
    for keep in allocators:
        label = "freed memory kept" if keep else "default malloc"
        header += [f"tokens/s, {label}", f"vs {baseline_name.split(' (')[0]}", "FLOP/s", "MFU",
                   "peak GiB"]
    table = []
    for name in measured:
        row = [name]
        autocast = "bf16_autocast" in name + str(FAST_VARIANT_OPTIONS.get(name, ""))
        precision = "bf16" if autocast and "bf16" in peaks else "float32"
        for keep in allocators:
            peak = max(r["peak_gib"] for r in results[name, keep])
            achieved = rate[name, keep] * flops
            row += [f"{rate[name, keep]:,.0f}",
                    f"{rate[name, keep] / rate[baseline_name, keep]:.2f}x",
                    format_flops(achieved), f"{achieved / peaks[precision]:.0%} of {precision}",
                    f"{peak:.2f}"]
        table.append(row)
    widths = [max(len(str(r[i])) for r in [header, *table]) for i in range(len(header))]
    for row in [header, ["-" * w for w in widths], *table]:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)))


if __name__ == "__main__":
    run_main(main)
