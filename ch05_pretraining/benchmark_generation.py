"""Greedy decoding speed with and without a KV cache: ours, the book's, transformers'.

    python ch05_pretraining/benchmark_generation.py                  # 124M, 200 new tokens
    python ch05_pretraining/benchmark_generation.py --new-tokens 50 --rounds 1
    python ch05_pretraining/benchmark_generation.py --cached-only --rounds 5   # quicker
    python ch05_pretraining/benchmark_generation.py --device cuda                # on a GPU

Ours comes three ways: chapter 5's generate with GPTModel and its KV cache (the teaching path),
and with FastDecoder (section 5.7.1), in float32, with bfloat16 weights and with int8 weights.
FastDecoder is a float32 copy of the same model whose nn.Linear weights are stored as decoding's
products read them (transposed in float32; in BFloat16Linear layers for bfloat16, in Int8Linear
layers for int8); generate runs the model's
own forward on that copy, under torch.inference_mode. Each FastDecoder also runs compiled
(FastDecoder(..., compile=True): torch.compile fuses the small operations between the products);
the warm-up round compiles them, which takes minutes on a CPU, and --no-compile leaves them out.
transformers' GPT2LMHeadModel runs with
and without its cache, and, where the processor multiplies bfloat16 natively
(shared.supports_fast_bf16), cached in bfloat16 too: the one to hold FastDecoder's bf16 weights
against.

All variants hold the same random GPT-2-sized weights (ours are copied into the book's model
and into transformers' GPT2LMHeadModel), decode the same prompt greedily, and should produce
the same tokens; the table says whether each did, against our uncached decoding (a bfloat16 or
int8 variant rounds differently, so it may not: the table says from which new token it parts).
After one untimed warm-up round, rounds are interleaved and rotated so that a noisy machine
slows every variant alike; the table reports the median round, in new tokens per second
(prompt processing included), and each variant's speed over transformers' cached float32
generate. The last lines hold the course's goals against what this run measured.

The limit: generating one token reads every weight once, so at batch 1 decoding is bound by
memory bandwidth, not arithmetic. The weights read per token are those of the variant's own
model, in the dtype it holds them in: every weight matrix, bias and norm once (a tied matrix
once), but of the two embedding tables only one row each. Effective bandwidth = weights read
per token x tokens/s; it is compared with the machine's read bandwidth, measured in the same
run under the same thread settings: the best rate of a sum over a 512 MiB tensor and of a
matrix-vector product over a 512 MiB matrix, each timed several times, before and after the
rounds. An uncached variant reads the weights once per token too, but does far more arithmetic
with them: its fraction shows how far it is from the limit, not what limits it.
"""

import contextlib
import statistics
import tempfile
import time

import torch
from torch import nn

from shared import (
    GPT2_SIZES,
    BFloat16Linear,
    FastDecoder,
    GPTModel,
    Int8Linear,
    count_parameters,
    generate_text,
    gpt2_config,
    measured_on,
    save_gpt2_safetensors,
    supports_fast_bf16,
)
from shared.tooling.command_line import CommandParser, device_arg, number_arg, run_main


CACHED, FAST, FAST_BF16 = "ours, KV cache", "ours, FastDecoder", "ours, FastDecoder, bf16 weights"
FAST_INT8 = "ours, FastDecoder, int8 weights"
COMPILED = ", compiled"  # FastDecoder(..., compile=True): the same variant through torch.compile
TRANSFORMERS, TRANSFORMERS_BF16 = "transformers, KV cache", "transformers, KV cache, bf16"
# The course's goals: (variant, its speed at least this many times, that of this variant)
GOALS = [(FAST, 1.2, TRANSFORMERS), (FAST + COMPILED, 1.2, TRANSFORMERS),
         (FAST_BF16, 1.2, TRANSFORMERS_BF16), (FAST_BF16 + COMPILED, 1.2, TRANSFORMERS_BF16),
         (FAST_INT8, 1.8, TRANSFORMERS), (FAST_INT8 + COMPILED, 1.8, TRANSFORMERS),
         (CACHED, 1.0, TRANSFORMERS)]


def our_variants(model, args):
    """{name: (decode(prompt) -> tokens, the module whose weights it reads)}."""
    def decode(decoder, use_cache=True):
        return lambda prompt: generate_text(decoder, prompt, args.new_tokens, args.context,
                                       use_cache=use_cache)
    found = {"ours, no cache": (decode(model, False), model), CACHED: (decode(model), model)}
    for name, dtype in [(FAST, torch.float32), (FAST_BF16, torch.bfloat16),
                        (FAST_INT8, torch.int8)]:
        for compiled in [False, True][:1 + args.compile]:
            fast = FastDecoder(model, dtype, compile=compiled)
            found[name + COMPILED * compiled] = (decode(fast), fast.model)
    return found


def book_variants(model, args):
    from llms_from_scratch.ch04 import GPTModel as BookGPTModel
    from llms_from_scratch.ch04 import generate_text_simple
    book = BookGPTModel(model_config(args)).to(args.device).eval()
    state = model.state_dict()
    book.load_state_dict(state)  # tied in ours: the book's separate head gets a copy
    found = {"book, no cache": (lambda prompt: generate_text_simple(book, prompt, args.new_tokens,
                                                                     args.context), book)}
    with contextlib.suppress(ImportError):
        from llms_from_scratch.kv_cache.gpt2 import GPTModel as BookCachedGPTModel
        from llms_from_scratch.kv_cache.utils import KVCache as BookKVCache
        book_cached = BookCachedGPTModel(model_config(args)).to(args.device).eval()
        book_cached.load_state_dict(state, strict=False)  # it builds masks on the fly
        if not torch.equal(book_cached.out_head.weight, model.out_head.weight):
            raise RuntimeError("the book's cached model did not take our weights")

        def book_cached_generate(prompt):
            # The package's kv_cache.generate drives its Llama and Qwen models (it calls
            # reset_kv_cache, which its GPT-2 lacks); this is the same loop for its GPT-2.
            book_cached.current_pos, cache, idx = 0, BookKVCache(model.cfg["n_layers"]), prompt
            with torch.no_grad():
                logits = book_cached(prompt, use_cache=True, cache=cache)
                for step in range(args.new_tokens):
                    next_id = logits[:, -1].argmax(dim=-1, keepdim=True)
                    idx = torch.cat([idx, next_id], dim=1)
                    if step + 1 < args.new_tokens:
                        logits = book_cached(next_id, use_cache=True, cache=cache)
            return idx
        found["book, KV cache (llms_from_scratch.kv_cache.gpt2)"] = (book_cached_generate,
                                                                     book_cached)
    return found


def transformers_variants(model, args):
    from transformers import GPT2LMHeadModel
    from transformers.utils.logging import disable_progress_bar
    disable_progress_bar()
    with tempfile.TemporaryDirectory() as folder:
        save_gpt2_safetensors(model, folder)
        hf = GPT2LMHeadModel.from_pretrained(folder).to(args.device).eval()
        # bf16 only where the device multiplies it natively: elsewhere it is emulated, slow
        hf_bf16 = (GPT2LMHeadModel.from_pretrained(folder, dtype=torch.bfloat16)
                   .to(args.device).eval() if supports_fast_bf16(args.device) else None)

    def decode(hf, use_cache):
        def run(prompt):
            with torch.no_grad():
                return hf.generate(prompt, attention_mask=torch.ones_like(prompt),
                                   max_new_tokens=args.new_tokens,
                                   min_new_tokens=args.new_tokens, do_sample=False,
                                   use_cache=use_cache, pad_token_id=0)
        return run, hf
    found = {"transformers, no cache": decode(hf, False), TRANSFORMERS: decode(hf, True)}
    if hf_bf16 is not None:
        found[TRANSFORMERS_BF16] = decode(hf_bf16, True)
    return found


def weight_bytes_per_token(model: nn.Module) -> int:
    """Bytes of weights one decoding step reads: every parameter (and a BFloat16Linear's or an
    Int8Linear's weight, bias and scales) once, in the dtype held, a tied matrix once; embedding
    tables, of which a token reads one row each, are left out."""
    read = {}
    for module in model.modules():
        if isinstance(module, nn.Embedding):  # an untied table: one row per token
            continue
        tensors = ([module.weight, module.bias, getattr(module, "scale", None)]
                   if isinstance(module, (BFloat16Linear, Int8Linear))
                   else module.parameters(recurse=False))  # a tied head's counts here
        read.update({(t.data_ptr(), t.numel()): t for t in tensors if t is not None})
    return sum(t.numel() * t.element_size() for t in read.values())


def processor() -> str:
    """The date, the processor's name, threads and torch (shared.measured_on), and which of
    the instruction sets that decide these kernels' speed it has (read on Linux)."""
    flags = ""
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            present = set(cpuinfo.read().split())
        flags = " ".join(f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16")
                         if f in present)
    return f"{measured_on()}" + (f", {flags}" if flags else "")


def synchronize(device: str | torch.device) -> None:
    """Wait for the device's queued work, so that a clock read after it counts it (a GPU runs
    asynchronously; a CPU has nothing queued)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def read_bandwidth(device: torch.device, repeats=5) -> dict:
    """{kernel: best bytes/s} reading 512 MiB of float32 with a sum and a matrix-vector product."""
    data = torch.randn(2**27, generator=torch.Generator().manual_seed(0)).to(device)  # 512 MiB
    matrix, vector = data.view(2**16, 2**11), torch.randn(2**11).to(device)
    found = {}
    for name, read in [("sum", data.sum), ("matrix-vector", lambda: matrix @ vector)]:
        read()
        seconds = []
        for _ in range(repeats):
            synchronize(device)
            start = time.perf_counter()
            read()
            synchronize(device)
            seconds.append(time.perf_counter() - start)
        found[name] = data.numel() * data.element_size() / min(seconds)
    return found


def model_config(args):
    return gpt2_config(args.size, context_length=args.context, qkv_bias=True, drop_rate=0.0,
                       tie_weights=True)


def print_table(rows):
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    for row in [rows[0], ["-" * w for w in widths], *rows[1:]]:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)))


def main():
    parser = CommandParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="gpt2-small (124M)", choices=list(GPT2_SIZES))
    parser.add_argument("--context", type=number_arg(int, 1), default=1024)
    parser.add_argument("--prompt-tokens", type=number_arg(int, 1), default=10)
    parser.add_argument("--new-tokens", type=number_arg(int, 1), default=200)
    parser.add_argument("--rounds", type=number_arg(int, 1), default=2)
    parser.add_argument("--cached-only", action="store_true",
                        help="leave out the uncached variants (most of the run time)")
    parser.add_argument("--device", type=device_arg, default="cpu")
    parser.add_argument("--no-compile", dest="compile", action="store_false",
                        help="leave out the compiled FastDecoders (their warm-up compiles them: "
                             "minutes on a CPU)")
    args = parser.parse_args()
    args.device = torch.device(args.device)

    torch.manual_seed(0)
    model = GPTModel(model_config(args)).to(args.device).eval()
    prompt = torch.randint(0, 50257, (1, args.prompt_tokens)).to(args.device)
    variants = our_variants(model, args)
    for extra in (book_variants, transformers_variants):
        with contextlib.suppress(ImportError):
            variants.update(extra(model, args))
    if args.cached_only:
        variants = {name: run for name, run in variants.items() if "no cache" not in name}
    where = (torch.cuda.get_device_name(args.device) if args.device.type == "cuda" else
             f"{args.device.type}: {processor()}")
    print(f"torch {torch.__version__}, {where}, native bf16: "
          f"{'yes' if supports_fast_bf16(args.device) else 'no'}, {args.size} "
          f"({count_parameters(model):,} parameters), prompt {args.prompt_tokens} tokens, "
          f"{args.new_tokens} new tokens, {args.rounds} rounds")
    bandwidth = read_bandwidth(args.device)  # again after the rounds: the best of both counts

    seconds, outputs, failures, first_call = {name: [] for name in variants}, {}, {}, {}
    names = list(variants)
    for round_index in range(-1, args.rounds):  # round -1 warms up (first calls are slower)
        for name in names[round_index % len(names):] + names[:round_index % len(names)]:
            decode = variants[name][0]  # each round starts with another variant
            if name in failures:
                continue
            synchronize(args.device)
            start = time.perf_counter()
            try:
                outputs[name] = decode(prompt)
                synchronize(args.device)
            except Exception as error:  # report a broken implementation instead of stopping
                failures[name] = f"{type(error).__name__}: {error}"
                continue
            if round_index >= 0:
                seconds[name].append(time.perf_counter() - start)
            else:  # the first call: a compiled variant compiles in it
                first_call[name] = time.perf_counter() - start
        print(f"  {f'round {round_index + 1}/{args.rounds}' if round_index >= 0 else 'warm-up'}"
              " done", flush=True)
    bandwidth = {name: max(rate, again) for (name, rate), again
                 in zip(bandwidth.items(), read_bandwidth(args.device).values(), strict=True)}
    peak = max(bandwidth.values())
    print(f"measured read bandwidth ({where}): "
          + ", ".join(f"{name} {rate / 1e9:.1f} GB/s" for name, rate in bandwidth.items())
          + f"; the percentages below are of the best, {peak / 1e9:.1f} GB/s\n")

    if args.cached_only:  # the tokens are still checked against uncached decoding, once
        with torch.no_grad():
            outputs["ours, no cache"] = generate_text(model, prompt, args.new_tokens, args.context,
                                                 use_cache=False)
    reference = outputs["ours, no cache"]
    rates = {name: args.new_tokens / statistics.median(times)
             for name, times in seconds.items() if times}
    same = {name: torch.equal(tokens[:, :reference.shape[1]], reference)
            for name, tokens in outputs.items()}
    # where a variant's greedy tokens first part from the reference's (bf16, int8: rounding)
    parted = {name: int((tokens[0, :reference.shape[1]] != reference[0]).nonzero()[0, 0])
              - args.prompt_tokens + 1 for name, tokens in outputs.items() if not same[name]}
    base = CACHED if args.cached_only else "ours, no cache"
    rows = [("variant", "tokens/s", f"x {base}", f"x {TRANSFORMERS}", "weights read per token",
             "weights read/s", "of read bandwidth", "same tokens as ours, no cache")]
    for name, (_, weights) in variants.items():
        if name in failures:
            rows.append((name, "fails (below)", *[""] * (len(rows[0]) - 2)))
            continue
        per_token = weight_bytes_per_token(weights)
        effective = rates[name] * per_token
        rows.append((name, f"{rates[name]:.1f}", f"{rates[name] / rates[base]:.2f}x",
                     f"{rates[name] / rates[TRANSFORMERS]:.2f}x" if TRANSFORMERS in rates else "",
                     f"{per_token / 1e6:.0f} MB", f"{effective / 1e9:.1f} GB/s",
                     f"{effective / peak:.0%}",
                     "yes" if same[name] else f"no, from new token {parted[name]}"))
    print_table(rows)
    compiled = {name: first for name, first in first_call.items() if name.endswith(COMPILED)}
    if compiled:
        print("the compiled variants' first call, which compiles them: " + ", ".join(
            f"{name} {first:.0f} s" for name, first in compiled.items())
              + " (the median call after it: "
              + ", ".join(f"{args.new_tokens / rates[name]:.1f} s" for name in compiled) + ")")
    for name, error in failures.items():
        print(f"{name} fails: {error}")

    print("\nthe course's goals (tokens/s over tokens/s, the medians above; float32 variants "
          "also need the same tokens as ours, no cache):")
    for name, goal, against in GOALS:
        line = f"  {name} >= {goal}x {against}: "
        if name not in rates or against not in rates:
            why = ("this device has no native bf16" if against == TRANSFORMERS_BF16
                   and not supports_fast_bf16(args.device) else "a variant did not run")
            print(line + f"not measured ({why})")
            continue
        ratio = rates[name] / rates[against]
        needs_same = name in (FAST, FAST + COMPILED, CACHED)  # rounded weights may part
        met = ratio >= goal and (same[name] or not needs_same)
        print(line + f"measured {ratio:.2f}x"
              + (f", same tokens: {'yes' if same[name] else 'NO'}" if needs_same else "")
              + f": goal {'met' if met else 'missed'}")


if __name__ == "__main__":
    run_main(main)
