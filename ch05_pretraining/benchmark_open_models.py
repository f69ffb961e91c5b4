"""Section 5.9's loader, 4.8's ModernGPTModel and 5.9.2's FastModernDecoder at Qwen3-0.6B's
dimensions, against transformers on the same machine: peak memory while loading, and greedy
decoding speed with the tokens compared. The weights are random (no real ones can be
downloaded here), saved by transformers in the published format and dtype (bfloat16).

    python ch05_pretraining/benchmark_open_models.py [--new-tokens 32] [--rounds 5]
        [--dtype float32] [--layers 28]

Loading is measured in fresh processes: each imports what it needs, notes its peak resident
memory, loads the folder and runs one token through the model (the files are memory-mapped, so
a weight is read only when first used), and reports how much the peak grew. Decoding runs both
models from the same folder in --dtype (float32 by default, the dtype FastModernDecoder
computes in whatever --dtype: under bfloat16 it reads twice the bytes of the other two and its
tokens may differ), greedy, from a 16-token prompt.
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

from shared import OPEN_MODEL_CONFIGS, FastModernDecoder, generate, load_open_model
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


def qwen3_folder(folder: Path, layers: int) -> None:
    """A Qwen3-0.6B-shaped checkpoint with random weights, as transformers publishes it."""
    cfg = OPEN_MODEL_CONFIGS["qwen3-0.6b"]
    config = transformers.Qwen3Config(
        vocab_size=cfg["vocab_size"], hidden_size=cfg["emb_dim"],
        intermediate_size=cfg["hidden_dim"], num_hidden_layers=layers,
        num_attention_heads=cfg["n_heads"], num_key_value_heads=cfg["n_kv_groups"],
        head_dim=cfg["head_dim"], max_position_embeddings=cfg["context_length"],
        rope_theta=cfg["rope_base"], rms_norm_eps=cfg["norm_eps"], tie_word_embeddings=True)
    torch.manual_seed(0)
    transformers.Qwen3ForCausalLM(config).to(torch.bfloat16).save_pretrained(folder)


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


def decode_speed(folder: Path, dtype: torch.dtype, new_tokens: int, rounds: int) -> None:
    ours = load_open_model(folder, dtype=dtype)
    fast = FastModernDecoder(ours)  # float32 whatever --dtype: it computes in float32 only
    theirs = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).eval()
    prompt = torch.randint(0, ours.cfg["vocab_size"], (1, 16),
                           generator=torch.Generator().manual_seed(1))
    runs = {
        "ours (generate, KV cache)": lambda: generate(ours, prompt, new_tokens),
        "ours (FastModernDecoder)": lambda: generate(fast, prompt, new_tokens),
        "transformers (generate)": lambda: theirs.generate(
            prompt, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
            pad_token_id=0, eos_token_id=None),
    }
    tokens, speeds = {}, {name: [] for name in runs}
    for run in runs.values():
        run()  # warm-up
    for round_ in range(rounds):
        for name, run in list(runs.items())[::1 if round_ % 2 == 0 else -1]:
            start = time.perf_counter()
            with torch.no_grad():
                tokens[name] = run()
            speeds[name].append(new_tokens / (time.perf_counter() - start))
    print(f"greedy decoding, {dtype}, prompt 16 tokens, {new_tokens} new, median of {rounds}:")
    for name, values in speeds.items():
        print(f"  {name:<32} {statistics.median(values):6.2f} tokens/s")
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
    parser.add_argument("--layers", type=number_arg(int, 1), default=28,
                        help="28 is Qwen3-0.6B's")
    args = parser.parse_args()
    transformers.utils.logging.disable_progress_bar()
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, "
          f"{torch.get_num_threads()} threads")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        qwen3_folder(folder, args.layers)
        print(f"checkpoint: Qwen3-0.6B's dimensions, {args.layers} layers, random weights, "
              f"{sum(f.stat().st_size for f in folder.glob('*.safetensors')) / 2**30:.2f} GiB "
              "of safetensors")
        load_memory(folder)
        decode_speed(folder, getattr(torch, args.dtype), args.new_tokens, args.rounds)


if __name__ == "__main__":
    run_main(main)
