"""Section 5.9's loader, 4.8's ModernGPTModel and 5.7.1's FastDecoder at Qwen3-0.6B's or Gemma 3
1B's dimensions, against transformers on the same machine: peak memory while loading, and
greedy decoding speed with the tokens compared, beside the machine's memory bandwidth. The
weights are random (no real ones can be downloaded here), saved by transformers in the
published format and dtype (bfloat16).

    python ch05_pretraining/benchmark_open_models.py [--model qwen3-0.6b] [--new-tokens 32]
        [--rounds 5] [--dtype float32] [--layers N] [--device cuda]

Decoding one sequence reads every weight matrix once per token, so its speed is bounded by
memory bandwidth: the script measures it in the same run (a 1 GiB float32 tensor copied,
counting the bytes read and written, and summed, which only reads; best of 5 each) and prints,
for each decoder, the bytes of weights it reads per token (every weight once, in the dtype it
holds, but one row of an untied embedding table) times its tokens per second (the 16-token
prompt's time included, so a lower bound on the rate while decoding), as a share of the
summing rate.

Loading is measured in fresh processes: each imports what it needs, notes its peak resident
memory, loads the folder and runs one token through the model (the files are memory-mapped, so
a weight is read only when first used), and reports how much the peak grew.

Decoding runs five decoders greedily from a 16-token prompt: our ModernGPTModel loaded from the
folder in --dtype, with generate's KV cache; FastDecoder, a float32 copy of that model whose
nn.Linear weights are stored as decoding's products read them (transposed in float32; in
BFloat16Linear layers for bfloat16, Int8Linear layers for int8), running the model's own forward
under torch.inference_mode, with float32, bfloat16 and int8 weights; and transformers' generate
with the folder loaded in --dtype; and the three FastDecoders again, compiled
(FastDecoder(..., compile=True), which the warm-up compiles; --no-compile leaves them out). A
bfloat16 or int8 decoder rounds otherwise than the others,
so its tokens may differ from transformers'; in float32 all should be the same. The rounds are
interleaved, in alternating order, so that a drift of the machine hits every decoder alike;
tokens per second is the median over --rounds. The last lines hold the course's goals for --dtype
against what this run measured: in float32, FastDecoder at least as fast as transformers and at
90% of the read rate; FastDecoder, plain and compiled, each 1.2x as fast as transformers with
the same tokens, and with int8 weights 1.8x as fast; in bfloat16, where the processor
multiplies it natively, FastDecoder's bf16 weights 1.2x as fast as transformers; in both, our
generate at least 0.9x transformers. """

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import transformers

from ch05_pretraining.benchmark_generation import processor, synchronize, weight_bytes_per_token
from shared import (
    OPEN_MODEL_CONFIGS,
    FastDecoder,
    config_to_hf,
    generate_text,
    load_open_model,
    supports_fast_bf16,
    validate_modern_config,
)
from shared.tooling.command_line import CommandParser, device_arg, number_arg, run_main


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


def memory_bandwidth(device: torch.device, gib: float = 1.0,
                     repeats: int = 5) -> tuple[float, float]:
    """Bytes per second of a large float32 tensor on `device` copied (read plus written) and
    summed (read only), each the best of `repeats`."""
    source = torch.ones(int(gib * 2**30) // 4, device=device)
    target = torch.empty_like(source)
    target.copy_(source)  # the first touch maps the pages: not timed

    def best(step):
        times = []
        for _ in range(repeats):
            synchronize(device)
            start = time.perf_counter()
            step()
            synchronize(device)
            times.append(time.perf_counter() - start)
        return min(times)

    return 2 * source.nbytes / best(lambda: target.copy_(source)), source.nbytes / best(source.sum)


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


OURS, FAST, FAST_BF16 = ("ours (generate, KV cache)", "ours (FastDecoder)",
                         "ours (FastDecoder, bf16 weights)")
FAST_INT8 = "ours (FastDecoder, int8 weights)"
TRANSFORMERS = "transformers (generate)"


def compiled(name: str) -> str:
    """The name of a FastDecoder variant built with compile=True (torch.compile)."""
    return name.removesuffix(")") + ", compiled)"


def decode_speed(folder: Path, dtype: torch.dtype, new_tokens: int, rounds: int,
                 bandwidth: float, device: torch.device, compile: bool = True) -> None:
    ours = load_open_model(folder, dtype=dtype).to(device)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).to(
        device).eval()
    fast, fast_bf16 = FastDecoder(ours), FastDecoder(ours, torch.bfloat16)
    fast_int8 = FastDecoder(ours, torch.int8)
    prompt = torch.randint(0, ours.cfg["vocab_size"], (1, 16),
                           generator=torch.Generator().manual_seed(1)).to(device)
    decoders = {  # name: (decode, the module whose weights it reads)
        OURS: (lambda: generate_text(ours, prompt, new_tokens), ours),
        FAST: (lambda: generate_text(fast, prompt, new_tokens), fast.model),
        FAST_BF16: (lambda: generate_text(fast_bf16, prompt, new_tokens), fast_bf16.model),
        FAST_INT8: (lambda: generate_text(fast_int8, prompt, new_tokens), fast_int8.model),
        TRANSFORMERS: (lambda: theirs.generate(
            prompt, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
            pad_token_id=0, eos_token_id=None), theirs),
    }
    if compile:  # the same FastDecoders through torch.compile: the warm-up compiles them
        for name, weight_dtype in [(FAST, torch.float32), (FAST_BF16, torch.bfloat16),
                                   (FAST_INT8, torch.int8)]:
            decoder = FastDecoder(ours, weight_dtype, compile=True)
            decoders[compiled(name)] = (
                lambda decoder=decoder: generate_text(decoder, prompt, new_tokens), decoder.model)
    tokens, speeds = {}, {name: [] for name in decoders}
    for run, _ in decoders.values():
        run()  # warm-up
    for round_ in range(rounds):
        for name, (run, _) in list(decoders.items())[::1 if round_ % 2 == 0 else -1]:
            synchronize(device)
            start = time.perf_counter()
            with torch.no_grad():
                tokens[name] = run()
            synchronize(device)
            speeds[name].append(new_tokens / (time.perf_counter() - start))
    speed = {name: statistics.median(values) for name, values in speeds.items()}
    dtype_name = str(dtype).removeprefix("torch.")
    same = {name: torch.equal(tokens[name], tokens[TRANSFORMERS]) for name in decoders}
    share = {name: weight_bytes_per_token(weights) * speed[name] / bandwidth
             for name, (_, weights) in decoders.items()}
    print(f"\ngreedy decoding, prompt 16 tokens, {new_tokens} new, median of {rounds} rounds; "
          f"ours (generate) and transformers in {dtype_name}, FastDecoder in float32 with "
          f"float32, bfloat16 or int8 weights; weights read per token x tokens/s against the sum's "
          f"{bandwidth / 1e9:.1f} GB/s:")
    rows = [("decoder", "tokens/s", "x transformers", "weights read per token",
             "weights read/s", "of the sum's rate", "same tokens as transformers")]
    for name, (_, weights) in decoders.items():
        rows.append((name, f"{speed[name]:.2f}", f"{speed[name] / speed[TRANSFORMERS]:.2f}x",
                     f"{weight_bytes_per_token(weights) / 1e9:.2f} GB",
                     f"{share[name] * bandwidth / 1e9:.1f} GB/s", f"{share[name]:.0%}",
                     "yes" if same[name] else "no"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in [rows[0], ["-" * w for w in widths], *rows[1:]]:
        print("  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))

    def verdict(measured, goal, also=True):
        return f"goal {'met' if measured >= goal and also else 'missed'}"
    print(f"\nthe course's goals for {dtype_name} (goal against measured):")
    if dtype == torch.float32:
        ratio = speed[FAST] / speed[TRANSFORMERS]
        print(f"  {FAST} >= 1.0x {TRANSFORMERS}, same tokens: {ratio:.2f}x, same tokens "
              f"{'yes' if same[FAST] else 'no'}: {verdict(ratio, 1.0, same[FAST])}")
        print(f"  {FAST} >= 90% of the sum's read rate: {share[FAST]:.0%}: "
              f"{verdict(share[FAST], 0.9)}")
        for name in [FAST_INT8] + [compiled(FAST_INT8)] * compile:
            ratio = speed[name] / speed[TRANSFORMERS]
            print(f"  {name} >= 1.8x {TRANSFORMERS}: {ratio:.2f}x: {verdict(ratio, 1.8)}")
        for name in [FAST] + [compiled(FAST)] * compile:
            ratio = speed[name] / speed[TRANSFORMERS]
            print(f"  {name} >= 1.2x {TRANSFORMERS}, same tokens: {ratio:.2f}x, same tokens "
                  f"{'yes' if same[name] else 'no'}: {verdict(ratio, 1.2, same[name])}")
    else:  # bf16: FastDecoder's bf16 weights against transformers' bf16 model
        native = supports_fast_bf16(device)
        for name in [FAST_BF16] + [compiled(FAST_BF16)] * compile:
            ratio = speed[name] / speed[TRANSFORMERS]
            print(f"  {name} >= 1.2x {TRANSFORMERS}: {ratio:.2f}x: "
                  + (verdict(ratio, 1.2) if native else "no goal (this device has no native "
                     "bf16: transformers' bf16 is emulated)"))
    ratio = speed[OURS] / speed[TRANSFORMERS]
    print(f"  {OURS} >= 0.9x {TRANSFORMERS}: {ratio:.2f}x: {verdict(ratio, 0.9)}")


def main() -> None:
    parser = CommandParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=number_arg(int, 1), default=32)
    parser.add_argument("--rounds", type=number_arg(int, 1), default=5)
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--layers", type=number_arg(int, 1), default=None,
                        help="fewer layers, for a quick run (default: the model's)")
    parser.add_argument("--model", choices=MODELS, default=MODELS[0])
    parser.add_argument("--device", type=device_arg, default="cpu",
                        help="where to decode (loading's memory is measured on the CPU)")
    parser.add_argument("--no-compile", dest="compile", action="store_false",
                        help="leave out the compiled FastDecoders (their warm-up compiles them: "
                             "minutes on a CPU)")
    args = parser.parse_args()
    device = torch.device(args.device)
    transformers.utils.logging.disable_progress_bar()
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else processor()
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, {where}")
    copying, bandwidth = memory_bandwidth(device)
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
        decode_speed(folder, getattr(torch, args.dtype), args.new_tokens, args.rounds, bandwidth,
                     device, args.compile)


if __name__ == "__main__":
    run_main(main)
