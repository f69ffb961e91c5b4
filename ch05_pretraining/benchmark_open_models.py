"""Section 5.9's loader, 4.8's ModernGPTModel and 5.9.2's FastModernDecoder at Qwen3-0.6B's or
Gemma 3 1B's dimensions, against transformers on the same machine: peak memory while loading,
and greedy decoding speed with the tokens compared, beside the machine's memory bandwidth. The
weights are random (no real ones can be downloaded here), saved by transformers in the
published format and dtype (bfloat16).

    python ch05_pretraining/benchmark_open_models.py [--model qwen3-0.6b] [--new-tokens 32]
        [--rounds 5] [--dtype float32] [--layers N]

Decoding one sequence reads every weight matrix once per token, so its speed is bounded by
memory bandwidth: the script measures it in the same run (a 1 GiB float32 tensor copied,
counting the bytes read and written, and summed, which only reads; best of 5 each) and prints,
for each decoder, the bytes of weights it reads per token times its tokens per second (the
16-token prompt's time included, so a lower bound on the rate while decoding), as a share of
the summing rate.

Loading is measured in fresh processes: each imports what it needs, notes its peak resident
memory, loads the folder and runs one token through the model (the files are memory-mapped, so
a weight is read only when first used), and reports how much the peak grew. Decoding runs both
models from the same folder in --dtype (float32 by default; FastModernDecoder keeps its
matrices in --dtype too, and computes everything else in float32, so under bfloat16 its tokens
may differ from the others'), greedy, from a 16-token prompt.
The rounds are interleaved, in alternating order, so that a drift of the machine hits every
decoder alike; tokens per second is the median over --rounds.
"""

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import transformers

from shared import (
    OPEN_MODEL_CONFIGS,
    FastModernDecoder,
    config_to_hf,
    generate,
    load_open_model,
    validate_modern_config,
)
from shared.command_line import CommandParser, number_arg, run_main


LOAD_PROBE = """
import sys, torch
from pathlib import Path
{imports}
def peak():  # this process's peak resident memory (not ru_maxrss: it keeps the parent's)
    status = Path("/proc/self/status").read_text().splitlines()
    return int(next(line for line in status if line.startswith("VmHWM")).split()[1]) * 1024
before = peak()
model = {load}
with torch.no_grad():  # one token through every layer: every weight is read at least once
    model(torch.tensor([[1]]))
weights = sum(p.numel() * p.element_size() for p in model.parameters())
print(peak() - before, weights)
"""
LOADERS = {
    "ours (load_open_model)": ("from shared import load_open_model",
                               "load_open_model(sys.argv[1])"),
    "transformers (from_pretrained)": (
        "import transformers",
        "transformers.AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.bfloat16)"),
}


MODELS = ("qwen3-0.6b", "gemma-3-1b")


def model_folder(folder: Path, name: str, layers: int | None) -> None:
    """A checkpoint of OPEN_MODEL_CONFIGS[name]'s dimensions (its first `layers` layers) with
    random weights, as transformers publishes it."""
    cfg = dict(OPEN_MODEL_CONFIGS[name])
    if layers is not None:
        cfg["n_layers"] = layers
        if cfg.get("layer_types"):
            cfg["layer_types"] = cfg["layer_types"][:layers]
    hf = config_to_hf(validate_modern_config(cfg), torch.bfloat16)
    config = transformers.AutoConfig.for_model(hf.pop("model_type"), **hf)
    torch.manual_seed(0)
    transformers.AutoModelForCausalLM.from_config(config).to(torch.bfloat16).save_pretrained(
        folder)


def memory_bandwidth(gib: float = 1.0, repeats: int = 5) -> tuple[float, float]:
    """Bytes per second of a large float32 tensor copied (read plus written) and summed (read
    only), each the best of `repeats`."""
    source = torch.ones(int(gib * 2**30) // 4)
    target = torch.empty_like(source)
    target.copy_(source)  # the first touch maps the pages: not timed

    def best(step):
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
        return min(times)

    return 2 * source.nbytes / best(lambda: target.copy_(source)), source.nbytes / best(source.sum)


def bytes_read_per_token(tensors, embedding, head) -> int:
    """The bytes of weights one decoding step reads: each tensor once (a tied matrix once),
    except an untied token embedding, of which a step reads one row."""
    unique = {t.untyped_storage().data_ptr(): t for t in tensors}
    if embedding.untyped_storage().data_ptr() != head.untyped_storage().data_ptr():
        del unique[embedding.untyped_storage().data_ptr()]
    return sum(t.numel() * t.element_size() for t in unique.values())


def load_memory(folder: Path) -> None:
    print("peak memory of loading and one forward pass (a fresh process each; the growth of its "
          "peak resident memory after the imports):")
    for name, (imports, load) in LOADERS.items():
        probe = LOAD_PROBE.format(imports=imports, load=load)
        out = subprocess.run([sys.executable, "-c", probe, str(folder)], check=True,
                             capture_output=True, text=True).stdout.split()
        growth, weights = int(out[-2]), int(out[-1])
        print(f"  {name:<32} {growth / 2**30:5.2f} GiB for {weights / 2**30:.2f} GiB of "
              f"weights ({growth / weights:.2f}x)")


def decode_speed(folder: Path, dtype: torch.dtype, new_tokens: int, rounds: int,
                 bandwidth: float) -> None:
    ours = load_open_model(folder, dtype=dtype)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).eval()
    prompt = torch.randint(0, ours.cfg["vocab_size"], (1, 16),
                           generator=torch.Generator().manual_seed(1))
    runs = {"ours (generate, KV cache)": lambda: generate(ours, prompt, new_tokens)}
    read = {"ours (generate, KV cache)": bytes_read_per_token(
        list(ours.parameters()), ours.tok_emb.weight, ours.out_head.weight)}
    fast = FastModernDecoder(ours, dtype)  # its matrices in --dtype, the rest in float32
    runs["ours (FastModernDecoder)"] = lambda: generate(fast, prompt, new_tokens)
    kept = [t for block in fast.blocks for t in block.values() if t is not None]
    read["ours (FastModernDecoder)"] = bytes_read_per_token(
        [*kept, fast.final_norm, fast.head, fast.tok_emb], fast.tok_emb, fast.head)
    runs["transformers (generate)"] = lambda: theirs.generate(
        prompt, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
        pad_token_id=0, eos_token_id=None)
    read["transformers (generate)"] = bytes_read_per_token(
        list(theirs.parameters()), theirs.get_input_embeddings().weight,
        theirs.get_output_embeddings().weight)
    tokens, speeds = {}, {name: [] for name in runs}
    for run in runs.values():
        run()  # warm-up
    for round_ in range(rounds):
        for name, run in list(runs.items())[::1 if round_ % 2 == 0 else -1]:
            start = time.perf_counter()
            with torch.no_grad():
                tokens[name] = run()
            speeds[name].append(new_tokens / (time.perf_counter() - start))
    print(f"greedy decoding, {dtype}, prompt 16 tokens, {new_tokens} new, median of {rounds}; "
          f"weights read per token x tokens/s, against the sum's {bandwidth / 1e9:.1f} GB/s:")
    for name, values in speeds.items():
        rate = read[name] * statistics.median(values)
        print(f"  {name:<32} {statistics.median(values):6.2f} tokens/s, "
              f"{read[name] / 1e9:.2f} GB per token: {rate / 1e9:5.1f} GB/s "
              f"({rate / bandwidth:.0%} of the sum's)")
    *ours_names, reference = runs
    for name in ours_names:
        ratio = statistics.median(speeds[name]) / statistics.median(speeds[reference])
        print(f"  {name} / transformers: {ratio:.2f}x; identical tokens: "
              f"{torch.equal(tokens[name], tokens[reference])}")


def main() -> None:
    parser = CommandParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=number_arg(int, 1), default=32)
    parser.add_argument("--rounds", type=number_arg(int, 1), default=5)
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--layers", type=number_arg(int, 1), default=None,
                        help="fewer layers, for a quick run (default: the model's)")
    parser.add_argument("--model", choices=MODELS, default=MODELS[0])
    args = parser.parse_args()
    transformers.utils.logging.disable_progress_bar()
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, "
          f"{torch.get_num_threads()} threads")
    copying, bandwidth = memory_bandwidth()
    print(f"memory bandwidth, 1 GiB of float32, best of 5: a copy moves {copying / 1e9:.1f} GB/s "
          f"(read + written), a sum reads {bandwidth / 1e9:.1f} GB/s")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model_folder(folder, args.model, args.layers)
        layers = args.layers or OPEN_MODEL_CONFIGS[args.model]["n_layers"]
        print(f"checkpoint: {args.model}'s dimensions, {layers} layers, random weights, "
              f"{sum(f.stat().st_size for f in folder.glob('*.safetensors')) / 2**30:.2f} GiB "
              "of safetensors")
        load_memory(folder)
        decode_speed(folder, getattr(torch, args.dtype), args.new_tokens, args.rounds, bandwidth)


if __name__ == "__main__":
    run_main(main)
