"""Greedy decoding speed with and without a KV cache: ours, the book's, transformers'.

    python ch05_pretraining/benchmark_generation.py                  # 124M, 200 new tokens
    python ch05_pretraining/benchmark_generation.py --new-tokens 50 --rounds 1
    python ch05_pretraining/benchmark_generation.py --cached-only --rounds 5   # quicker

Ours comes three ways: chapter 5's generate with GPTModel and its KV cache (the teaching path),
and with FastDecoder (section 5.7), in float32 and with bfloat16 weights. The last lines print,
round by round, transformers' cached time over ours (the goal is at least 1.2x with the same
tokens as uncached decoding).

All variants hold the same random GPT-2-sized weights (ours are copied into the book's model
and into transformers' GPT2LMHeadModel), decode the same prompt greedily, and must produce the
same tokens; the table says whether they did. Rounds are interleaved and rotated so that a
noisy machine slows every variant alike; the table reports the median round, in new tokens
per second (prompt processing included).

The limit: generating one token reads every weight once, so at batch 1 decoding is bound by
memory bandwidth, not arithmetic. The weights read per token are the model's parameters times
the bytes per element, less the two embedding tables, of which only one row each is read, plus
the output head (the token embedding matrix when tied, counted once). Effective bandwidth =
weights read per token x tokens/s; it is compared with the machine's read bandwidth, measured in
the same run under the same thread settings: the best rate of a sum over a 512 MiB tensor and of
a matrix-vector product over a 512 MiB matrix, each timed several times. An uncached variant
reads the weights once per token too, but does far more arithmetic with them: its fraction shows
how far it is from the limit, not what limits it.
"""

import contextlib
import platform
import statistics
import tempfile
import time

import torch

from shared import (
    FastDecoder,
    GPTModel,
    count_parameters,
    generate,
    gpt2_config,
    save_gpt2_safetensors,
)
from shared.command_line import CommandParser, number_arg, run_main


FAST, FAST_BF16 = "ours, FastDecoder", "ours, FastDecoder, bf16 weights"
TRANSFORMERS = "transformers, KV cache"
GOAL = 1.2  # the course's aim: ours cached at least 1.2x transformers' cached generate


def our_variants(model, args):
    def decode(decoder, use_cache=True):
        return lambda prompt: generate(decoder, prompt, args.new_tokens, args.context,
                                       use_cache=use_cache)
    found = {"ours, no cache": decode(model, False), "ours, KV cache": decode(model)}
    found[FAST] = decode(FastDecoder(model))
    found[FAST_BF16] = decode(FastDecoder(model, torch.bfloat16))
    return found


def book_variants(model, args):
    from llms_from_scratch.ch04 import GPTModel as BookGPTModel
    from llms_from_scratch.ch04 import generate_text_simple
    book = BookGPTModel(model_config(args)).eval()
    state = model.state_dict()
    book.load_state_dict(state)  # tied in ours: the book's separate head gets a copy
    found = {"book, no cache": lambda prompt: generate_text_simple(book, prompt, args.new_tokens,
                                                                    args.context)}
    with contextlib.suppress(ImportError):
        from llms_from_scratch.kv_cache.gpt2 import GPTModel as BookCachedGPTModel
        from llms_from_scratch.kv_cache.utils import KVCache as BookKVCache
        book_cached = BookCachedGPTModel(model_config(args)).eval()
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
        found["book, KV cache (llms_from_scratch.kv_cache.gpt2)"] = book_cached_generate
    return found


def transformers_variants(model, args):
    from transformers import GPT2LMHeadModel
    with tempfile.TemporaryDirectory() as folder:
        save_gpt2_safetensors(model, folder)
        hf = GPT2LMHeadModel.from_pretrained(folder).eval()

    def decode(use_cache):
        def run(prompt):
            with torch.no_grad():
                return hf.generate(prompt, attention_mask=torch.ones_like(prompt),
                                   max_new_tokens=args.new_tokens,
                                   min_new_tokens=args.new_tokens, do_sample=False,
                                   use_cache=use_cache, pad_token_id=0)
        return run
    return {"transformers, no cache": decode(False), "transformers, KV cache": decode(True)}


def weight_bytes_per_token(model) -> int:
    """Bytes of weights read to generate one token (see the module docstring)."""
    embeddings = {id(model.tok_emb.weight), id(model.pos_emb.weight)}
    read = [p for p in model.parameters() if id(p) not in embeddings]
    if id(model.out_head.weight) in embeddings:  # tied: the head reads the whole matrix
        read.append(model.out_head.weight)
    return sum(p.numel() * p.element_size() for p in read)


def read_bandwidth(repeats=5) -> dict:
    """{kernel: best bytes/s} reading 512 MiB of float32 with a sum and a matrix-vector product."""
    data = torch.randn(2**27, generator=torch.Generator().manual_seed(0))  # 512 MiB
    matrix, vector = data.view(2**16, 2**11), torch.randn(2**11)
    found = {}
    for name, read in [("sum", data.sum), ("matrix-vector", lambda: matrix @ vector)]:
        read()
        seconds = []
        for _ in range(repeats):
            start = time.perf_counter()
            read()
            seconds.append(time.perf_counter() - start)
        found[name] = data.numel() * data.element_size() / min(seconds)
    return found


def model_config(args):
    return gpt2_config(args.size, context_length=args.context, qkv_bias=True, drop_rate=0.0,
                       tie_weights=True)


def main():
    parser = CommandParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="gpt2-small (124M)")
    parser.add_argument("--context", type=number_arg(int, 1), default=1024)
    parser.add_argument("--prompt-tokens", type=number_arg(int, 1), default=10)
    parser.add_argument("--new-tokens", type=number_arg(int, 1), default=200)
    parser.add_argument("--rounds", type=number_arg(int, 1), default=2)
    parser.add_argument("--cached-only", action="store_true",
                        help="leave out the uncached variants (most of the run time)")
    args = parser.parse_args()

    torch.manual_seed(0)
    model = GPTModel(model_config(args)).eval()
    prompt = torch.randint(0, 50257, (1, args.prompt_tokens))
    decoders = our_variants(model, args)
    for extra in (book_variants, transformers_variants):
        with contextlib.suppress(ImportError):
            decoders.update(extra(model, args))
    if args.cached_only:
        decoders = {name: run for name, run in decoders.items() if "no cache" not in name}
    print(f"torch {torch.__version__}, cpu, {torch.get_num_threads()} threads, "
          f"{platform.processor() or platform.machine()}, {args.size}, prompt "
          f"{args.prompt_tokens} tokens, {args.new_tokens} new tokens, {args.rounds} rounds")
    bandwidth = read_bandwidth()  # again after the rounds: the best of both counts

    seconds, outputs, failures = {name: [] for name in decoders}, {}, {}
    names = list(decoders)
    for round_index in range(args.rounds):
        for name in names[round_index % len(names):] + names[:round_index % len(names)]:
            decode = decoders[name]  # each round starts with another variant
            if name in failures:
                continue
            start = time.perf_counter()
            try:
                outputs[name] = decode(prompt)
            except Exception as error:  # report a broken implementation instead of stopping
                failures[name] = f"fails: {type(error).__name__}: {error}"[:80]
                continue
            seconds[name].append(time.perf_counter() - start)
        print(f"  round {round_index + 1}/{args.rounds} done", flush=True)
    bandwidth = {name: max(rate, again) for (name, rate), again
                 in zip(bandwidth.items(), read_bandwidth().values(), strict=True)}
    peak = max(bandwidth.values())
    weight_bytes = weight_bytes_per_token(model)
    print(f"weights read per token: {weight_bytes / 1e6:.0f} MB (of {count_parameters(model):,} "
          f"parameters: all but the embedding tables, plus the tied output head once); "
          f"measured read bandwidth ({torch.get_num_threads()} threads): "
          + ", ".join(f"{name} {rate / 1e9:.1f} GB/s" for name, rate in bandwidth.items()))

    if args.cached_only:  # the tokens are still checked against uncached decoding, once
        with torch.no_grad():
            outputs["ours, no cache"] = generate(model, prompt, args.new_tokens, args.context,
                                                 use_cache=False)
    reference = outputs["ours, no cache"]
    base = "ours, KV cache" if args.cached_only else "ours, no cache"
    base_rate = args.new_tokens / statistics.median(seconds[base])
    header = ("variant", "tokens/s", f"vs {base}", "weights read/s", "of read bandwidth",
              "same tokens as ours, no cache")
    rows = []
    for name in decoders:
        if name in failures:
            rows.append((name, failures[name], "", "", "", ""))
            continue
        rate = args.new_tokens / statistics.median(seconds[name])
        same = torch.equal(outputs[name][:, :reference.shape[1]], reference)
        effective = rate * weight_bytes / (2 if name == FAST_BF16 else 1)
        rows.append((name, f"{rate:.1f}", f"{rate / base_rate:.2f}x",
                     f"{effective / 1e9:.1f} GB/s", f"{effective / peak:.0%}",
                     "yes" if same else "NO"))
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)))
    if TRANSFORMERS in seconds and seconds[TRANSFORMERS]:
        print(f"\nper round, transformers' time / ours (goal: ours cached >= {GOAL}x "
              "transformers cached, same tokens):")
        for name in ("ours, KV cache", FAST, FAST_BF16):
            if seconds.get(name):
                ratios = [theirs / ours for theirs, ours  # the rounds both completed
                          in zip(seconds[TRANSFORMERS], seconds[name])]
                same = torch.equal(outputs[name][:, :reference.shape[1]], reference)
                verdict = "met" if statistics.median(ratios) >= GOAL and same else "NOT met"
                print(f"  {name:34} median {statistics.median(ratios):.2f}x (rounds: "
                      + ", ".join(f"{r:.2f}" for r in ratios) + f"), same tokens: "
                      f"{'yes' if same else 'NO'}: {verdict}")


if __name__ == "__main__":
    run_main(main)
