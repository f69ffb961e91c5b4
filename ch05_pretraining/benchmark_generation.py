"""Greedy decoding speed with and without a KV cache: ours, the book's, transformers'.

    python ch05_pretraining/benchmark_generation.py                  # 124M, 200 new tokens
    python ch05_pretraining/benchmark_generation.py --new-tokens 50 --rounds 1

All variants hold the same random GPT-2-sized weights (ours are copied into the book's model
and into transformers' GPT2LMHeadModel), decode the same prompt greedily, and must produce the
same tokens; the table says whether they did. Rounds are interleaved and rotated so that a
noisy machine slows every variant alike; the table reports the median round, in new tokens
per second (prompt processing included).
"""

import argparse
import contextlib
import platform
import statistics
import tempfile
import time

import torch

from shared import GPTModel, generate, gpt2_config, save_gpt2_safetensors


def our_variants(model, args):
    def decode(use_cache):
        return lambda prompt: generate(model, prompt, args.new_tokens, args.context,
                                       use_cache=use_cache)
    return {"ours, no cache": decode(False), "ours, KV cache": decode(True)}


def book_variants(model, args):
    from llms_from_scratch.ch04 import GPTModel as BookGPTModel
    from llms_from_scratch.ch04 import generate_text_simple
    book = BookGPTModel(model_config(args)).eval()
    state = model.state_dict()
    book.load_state_dict(state)  # tied in ours: the book's separate head gets a copy
    found = {"book, no cache": lambda prompt: generate_text_simple(book, prompt, args.new_tokens,
                                                                    args.context)}
    with contextlib.suppress(ImportError):
        from llms_from_scratch.kv_cache.generate import generate_text_simple as cached_generate
        from llms_from_scratch.kv_cache.gpt2 import GPTModel as BookCachedGPTModel
        book_cached = BookCachedGPTModel(model_config(args)).eval()
        book_cached.load_state_dict(state, strict=False)  # it builds masks on the fly
        if not torch.equal(book_cached.out_head.weight, model.out_head.weight):
            raise RuntimeError("the book's cached model did not take our weights")
        found["book, KV cache (llms_from_scratch.kv_cache)"] = (
            lambda prompt: cached_generate(book_cached, prompt, args.new_tokens, args.context))
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


def model_config(args):
    return gpt2_config(args.size, context_length=args.context, qkv_bias=True, drop_rate=0.0,
                       tie_weights=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="gpt2-small (124M)")
    parser.add_argument("--context", type=int, default=1024)
    parser.add_argument("--prompt-tokens", type=int, default=10)
    parser.add_argument("--new-tokens", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    torch.manual_seed(0)
    model = GPTModel(model_config(args)).eval()
    prompt = torch.randint(0, 50257, (1, args.prompt_tokens))
    decoders = our_variants(model, args)
    for extra in (book_variants, transformers_variants):
        with contextlib.suppress(ImportError):
            decoders.update(extra(model, args))
    print(f"torch {torch.__version__}, cpu, {torch.get_num_threads()} threads, "
          f"{platform.processor() or platform.machine()}, {args.size}, prompt "
          f"{args.prompt_tokens} tokens, {args.new_tokens} new tokens, {args.rounds} rounds")

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

    reference = outputs["ours, no cache"]
    uncached_rate = args.new_tokens / statistics.median(seconds["ours, no cache"])
    header = ("variant", "tokens/s", "vs ours, no cache", "same tokens as ours, no cache")
    rows = []
    for name in decoders:
        if name in failures:
            rows.append((name, failures[name], "", ""))
            continue
        rate = args.new_tokens / statistics.median(seconds[name])
        same = torch.equal(outputs[name][:, :reference.shape[1]], reference)
        rows.append((name, f"{rate:.1f}", f"{rate / uncached_rate:.2f}x", "yes" if same else "NO"))
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(4)]
    for row in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)))


if __name__ == "__main__":
    main()
