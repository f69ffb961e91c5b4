"""Benchmark: the from-scratch BPETokenizer against tiktoken on The Verdict.

    python ch02_text_data/benchmark_bpe.py [--repeats 5]

Prints, for encoding The Verdict with GPT-2's merges, the median time of our tokenizer
(cold: a fresh chunk cache per run, as for a new text; warm: the cache already filled)
and of tiktoken, measured interleaved in the same run, with their ratio; then the time
to train a 1,000-token vocabulary on The Verdict.
"""

import argparse
import os
import platform
import statistics
import time

import tiktoken
import torch

from ch02_text_data.text_data import BPETokenizer
from shared import fetch, read_text


def timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    text = read_text("the-verdict")
    reference = tiktoken.get_encoding("gpt2")
    loaded = BPETokenizer.from_gpt2_files(fetch("gpt2-encoder"), fetch("gpt2-vocab"))
    assert loaded.encode(text) == reference.encode(text), "ids differ from tiktoken"

    cold, warm, fast = [], [], []
    for _ in range(args.repeats):  # interleaved, so machine noise hits all three alike
        fresh = BPETokenizer(loaded.ranks, loaded.special_tokens, loaded.merges)
        cold.append(timed(lambda fresh=fresh: fresh.encode(text)))
        warm.append(timed(lambda fresh=fresh: fresh.encode(text)))
        fast.append(timed(lambda: reference.encode(text)))
    cold_s, warm_s, fast_s = (statistics.median(x) for x in (cold, warm, fast))

    train = [timed(lambda: BPETokenizer.train(text, vocab_size=1000))
             for _ in range(max(1, args.repeats // 2))]

    print(f"machine: {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__}, "
          f"tiktoken {tiktoken.__version__}")
    print(f"The Verdict: {len(text):,} characters, {len(reference.encode(text)):,} GPT-2 tokens; "
          f"median of {args.repeats} runs\n")
    print(f"{'encode with GPT-2 merges':<34}{'seconds':>10}{'vs tiktoken':>14}")
    print(f"{'  BPETokenizer, cold cache':<34}{cold_s:>10.4f}{cold_s / fast_s:>13.1f}x")
    print(f"{'  BPETokenizer, warm cache':<34}{warm_s:>10.4f}{warm_s / fast_s:>13.1f}x")
    print(f"{'  tiktoken':<34}{fast_s:>10.4f}{1:>13.1f}x")
    print(f"\ntrain a 1,000-token vocabulary on The Verdict: {statistics.median(train):.2f} s "
          f"(median of {len(train)})")


if __name__ == "__main__":
    main()
