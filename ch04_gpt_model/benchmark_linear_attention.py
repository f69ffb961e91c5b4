"""Section 4.9's claim, measured: a Gated DeltaNet layer's cost per new token stays flat as the
context grows, while an attention layer's grows with its KV cache.

    python ch04_gpt_model/benchmark_linear_attention.py [--contexts 512 2048 8192 32768]
        [--steps 32] [--device cuda]

Two layers of one width (1,024-number embeddings): grouped-query attention with 16 query heads
and 4 key-value heads of 64 numbers (PyTorch's fused attention, as `sdpa` gives it), and Qwen3-
Next's Gated DeltaNet with 8 key heads and 16 value heads of 64 numbers. For each context
length, each layer reads that many random tokens into its cache (in pieces of 1,024), then
decodes --steps tokens one at a time; the script prints the median time per new token and the
bytes the layer's cache holds, and the ratio of the longest context's time to the shortest's.
The weights and tokens are random: what is measured is the work, not a model."""

import statistics
import time

import torch

from ch05_pretraining.benchmark_generation import synchronize
from shared import (
    DeltaNetCache,
    GatedDeltaNet,
    GroupedQueryAttention,
    KVCache,
    rope_angles,
    rope_frequencies,
)
from shared.tooling.command_line import CommandParser, device_arg, number_arg, run_main
from shared.utils import measured_on


EMB_DIM, HEAD_DIM = 1024, 64


def cache_bytes(cache) -> int:
    tensors = ((cache.state, cache.conv_inputs) if isinstance(cache, DeltaNetCache)
               else (cache.keys[:, :, :cache.length], cache.values[:, :, :cache.length]))
    return sum(t.numel() * t.element_size() for t in tensors)


def time_per_token(layer, make_cache, context: int, steps: int, device) -> tuple[float, int]:
    """Median seconds per new token after `context` tokens, and the cache's bytes then."""
    freqs = rope_frequencies(HEAD_DIM, 10_000.0).to(device)
    cache = make_cache(context + steps)
    generator = torch.Generator(device).manual_seed(0)
    seconds = []
    with torch.inference_mode():
        for start in range(0, context, 1024):  # the context, in pieces
            size = min(1024, context - start)
            x = torch.randn(1, size, EMB_DIM, device=device, generator=generator)
            layer(x, rope_angles(freqs, start, size), cache)
        for step in range(steps):
            x = torch.randn(1, 1, EMB_DIM, device=device, generator=generator)
            synchronize(device)
            begin = time.perf_counter()
            layer(x, rope_angles(freqs, context + step, 1), cache)
            synchronize(device)
            seconds.append(time.perf_counter() - begin)
    return statistics.median(seconds), cache_bytes(cache)


def main() -> None:
    parser = CommandParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contexts", type=number_arg(int, 1), nargs="+",
                        default=[512, 2048, 8192, 32768])
    parser.add_argument("--steps", type=number_arg(int, 1), default=32)
    parser.add_argument("--device", type=device_arg, default="cpu")
    args = parser.parse_args()
    torch.manual_seed(0)
    layers = {
        "grouped-query attention": (
            GroupedQueryAttention(EMB_DIM, 16, 4, HEAD_DIM, use_sdpa=True),
            lambda tokens: KVCache(tokens)),
        "Gated DeltaNet": (
            GatedDeltaNet(EMB_DIM, key_heads=8, value_heads=16, key_dim=HEAD_DIM,
                          value_dim=HEAD_DIM, conv_kernel=4),
            lambda tokens: DeltaNetCache()),
    }
    print(f"{measured_on()}, device {args.device}")
    for name, (layer, make_cache) in layers.items():
        layer.to(args.device).eval()
        results = [time_per_token(layer, make_cache, context, args.steps, args.device)
                   for context in args.contexts]
        for context, (seconds, nbytes) in zip(args.contexts, results):
            print(f"{name:<24} after {context:>7,} tokens: {seconds * 1e3:7.3f} ms per new "
                  f"token, cache {nbytes / 2**20:9.2f} MiB")
        print(f"{name:<24} longest context / shortest: "
              f"{results[-1][0] / results[0][0]:.2f}x the time per token")


if __name__ == "__main__":
    run_main(main)
