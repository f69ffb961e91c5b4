"""Benchmark: the from-scratch BPETokenizer against tiktoken on The Verdict.

    python ch02_text_data/benchmark_bpe.py [--repeats 5] [--long-runs]

Prints, for encoding The Verdict with GPT-2's merges, the median time of our tokenizer
(cold: a fresh chunk cache per run, as for a new text; warm: the cache already filled)
and of tiktoken, measured interleaved in the same run, with their ratio; then the time
to train a 1,000-token vocabulary on The Verdict.

With --long-runs, also times runs of 2,000, 20,000 and 200,000 random lowercase letters
without spaces (each one chunk for the pre-tokenizer): our tokenizer (apply_merges_fast,
cold cache) and tiktoken, median of the repeats, and the companion's quadratic apply_merges
once, on 2,000 and 20,000 letters only (200,000, a hundred times 20,000's time, would take
most of an hour). Each time comes with its growth per doubling of the length, (time ratio)
** (1 / log2(10)) between sizes ten apart: about 2 for linear work, 4 for quadratic. The ids
are checked against tiktoken's.
"""

import math
import os
import platform
import random
import statistics
import string
import time

import regex
import tiktoken
import torch

from ch02_text_data.bpe import BPETokenizer, apply_merges
from shared import fetch, read_text
from shared.tooling.command_line import CommandParser, number_arg, run_main


LONG_RUNS = (2_000, 20_000, 200_000)
QUADRATIC_RUNS = (2_000, 20_000)  # 200,000: about 100 times 20,000's time, most of an hour
SEED = 0


def timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def per_doubling(times: list[float]) -> list[str]:
    """Growth per doubling of the length between neighbouring sizes (ten times apart)."""
    return ["-"] + [f"x{(b / a) ** (1 / math.log2(10)):.2f}" for a, b in zip(times, times[1:])]


def long_runs(loaded: BPETokenizer, reference, repeats: int) -> None:
    rng = random.Random(SEED)
    texts = {n: "".join(rng.choices(string.ascii_lowercase, k=n)) for n in LONG_RUNS}
    ours, fast, quadratic = [], [], []
    for n, text in texts.items():
        expected = reference.encode(text)
        assert len(regex.findall(loaded.pattern, text)) == 1, "a run must be one chunk"
        cold = []
        for _ in range(repeats):
            fresh = BPETokenizer(loaded.ranks, loaded.special_tokens, loaded.merges)
            start = time.perf_counter()
            ids = fresh.encode(text)
            cold.append(time.perf_counter() - start)
            assert ids == expected, f"{n:,} letters: ids differ from tiktoken"
        ours.append(statistics.median(cold))
        fast.append(statistics.median(timed(lambda text=text: reference.encode(text))
                                      for _ in range(repeats)))
        if n in QUADRATIC_RUNS:
            start = time.perf_counter()
            ids = apply_merges(text.encode("utf-8"), loaded.ranks)
            quadratic.append(time.perf_counter() - start)
            assert ids == expected, f"{n:,} letters: apply_merges's ids differ from tiktoken"

    print(f"\nlong runs: random lowercase letters, no spaces (random.Random({SEED}).choices), "
          f"one chunk each;\nseconds (median of {repeats} runs; apply_merges: one run) and "
          "growth per doubling of the length")
    columns = [("BPETokenizer, cold cache", ours), ("tiktoken", fast),
               ("apply_merges (quadratic)", quadratic)]
    print(f"{'':>9}" + "".join(f"{name:>28}" for name, _ in columns))
    print(f"{'letters':>9}" + f"{'seconds':>14}{'per doubling':>14}" * len(columns))
    growth = [per_doubling(times) for _, times in columns]
    for k, n in enumerate(LONG_RUNS):
        cells = [f"{times[k]:>14.4f}{growth[c][k]:>14}" if k < len(times) else
                 f"{'(not run)':>14}{'':>14}" for c, (_, times) in enumerate(columns)]
        print(f"{n:>9,}" + "".join(cells))
    print("ids equal tiktoken's on every run: yes")


def main() -> None:
    parser = CommandParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=number_arg(int, 1), default=5)
    parser.add_argument("--long-runs", action="store_true",
                        help="also time runs of letters without spaces (one long chunk each)")
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
    if args.long_runs:
        long_runs(loaded, reference, args.repeats)


if __name__ == "__main__":
    run_main(main)
