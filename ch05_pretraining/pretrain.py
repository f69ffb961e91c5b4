"""Pretrain a GPT on a folder of text files, on one CPU or GPU, or on many with torchrun.

A first run, small enough for a laptop's CPU (minutes; the README says how long it took where):

    python ch05_pretraining/pretrain.py --data my_texts/ --out runs/tiny \\
        --emb-dim 128 --n-layers 2 --n-heads 4 --context 64 --steps 300
    python ch05_pretraining/pretrain.py --data my_texts/ --out runs/tiny --resume --steps 600
                                        # after a stop (Ctrl-C, SIGTERM, --stop-after) or to go on
    python ch05_pretraining/pretrain.py --out runs/tiny --generate "Every effort moves you"
    python ch05_pretraining/pretrain.py --out runs/tiny --export runs/tiny-hf  # for transformers

Without the size flags it trains GPT-2 small (124 M parameters, a 2 GB checkpoint): a GPU's
work (a step took 6.8 s on the README's 2-core CPU, so its 1,000 steps about 2 h; on a CPU a
run whose estimate is over an hour says so). On many GPUs:

    torchrun --nproc_per_node=4 ch05_pretraining/pretrain.py --data my_texts/ --out runs/small-4

Everything is chapter 5's: GPTModel and train_model, appendix D's loop (linear warmup, cosine
decay, gradient clipping from the end of warmup) with its fast options. It trains on the device
shared.get_device() picks: an NVIDIA GPU (CUDA), else a Mac's GPU (MPS), else the CPU; the
environment variable LLM_COURSE_DEVICE names another. What this script adds is what training
at scale needs:

* The *.txt files are tokenised once, joined by <|endoftext|>, into a memory-mapped file of
  uint16 token ids (OUT/tokens.bin): later runs and every process read it without loading it.
  Its manifest (OUT/tokens.json) records the files and a checksum: a damaged cache is rebuilt.
  The last --val-fraction of the tokens is the validation split.
* Batches are random windows drawn from a generator seeded by (seed, step), so a step's data
  does not depend on what ran before it: a resumed run sees exactly the batches it would have.
* With torchrun, each process trains a DistributedDataParallel replica on its own share of the
  global batch (nccl on CUDA GPUs, one per process: the GPU of its local rank, so that
  LLM_COURSE_DEVICE may say "cuda" but not name one GPU; gloo on CPUs: on a Mac the processes
  train on the CPU, as torch.distributed cannot exchange MPS tensors); DDP averages the
  gradients, so the replicas stay identical. The effective batch is --batch x processes x
  --grad-accum.
* --fast turns on SDPA, weight tying, fused AdamW and, where the device multiplies bf16
  natively (CUDA compute capability 8.0 and above: A100, RTX 30 series, H100; CPUs with
  AVX512_BF16 or AMX, on Linux), bf16 autocast; elsewhere (a T4, a V100, a CPU with AVX2
  only, a Mac) the products stay float32, which emulated bf16 would only slow down.
* Every --checkpoint-every steps, OUT/checkpoint.pt gets the model, optimizer, step and every
  process's random-number states (the CPU's, and the GPUs'); --resume continues from it and
  gives the same weights as an uninterrupted run: bit for bit on CPUs; on GPUs, whose kernels
  may round differently from run to run, to rounding. This script does not request
  deterministic algorithms; for bit for bit on a GPU, add
  torch.use_deterministic_algorithms(True) at its start (chapter 5, section 5.4.2). --resume
  takes the model's and the training's settings from the checkpoint: a flag given that differs
  from the run's is refused by name (a new --steps is allowed, and stretches the schedule; so
  are --eval-every, --eval-batches and --checkpoint-every). OUT/log.jsonl records the
  evaluations (after a resume, without the steps run again); OUT/weights-rank<r>.sha256 the
  sha256 of each process's final weights (equal: the replicas stayed identical).
* load_run(OUT) returns the run's model (GPTModel); --generate and --export use it.
* A run never destroys another's work. A new run into a folder that holds one is refused
  unless told --resume or --overwrite (which deletes the old run's files once the new run has
  trained a step); a folder that holds files no run writes is refused even with --overwrite
  (move them, or choose another --out), and so is a --data inside --out; while a run trains,
  OUT/run.lock is locked (by the kernel, so a killed run leaves no stale lock) and a second
  run into OUT is refused, naming the first. SIGTERM (kill, timeout, a job scheduler's time
  limit) and Ctrl-C stop the run at the end of the step under way, with a checkpoint; a second
  Ctrl-C stops it at once. A loss or weights that become nan or infinite stop the run at that
  step, without saving them: the checkpoint keeps the last good step (a --resume would repeat
  the same steps: start again with a lower --lr in a new OUT, which keeps the checkpoint;
  --overwrite would delete it). A run refused before
  training (bad text, too few tokens) removes what it made in OUT.
"""

import argparse
import hashlib
import json
import math
import os
import re
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tiktoken
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm


try:
    import fcntl  # the kernel's file locks; Windows has none (see claim_run_folder)
except ImportError:
    fcntl = None

from shared import (
    GPT2_SIZES,
    GPTModel,
    check_finite,
    cosine_schedule,
    generate,
    generator_problems,
    generator_states,
    get_device,
    gpt2_config,
    keep_freed_memory,
    load_checkpoint,
    restore_generators,
    save_checkpoint,
    save_gpt2_safetensors,
    supports_fast_bf16,
    text_to_token_ids,
    token_ids_to_text,
    train_model,
    write_atomically,
)


def tokenize_folder(folder: Path, token_file: Path) -> np.memmap:
    """Token ids of every *.txt file in `folder`, cached in `token_file` (uint16).

    The manifest beside it (.json) names the files (by name, size and time) and the tokens'
    count and sha256; a cache that does not match it, truncated or damaged, is rebuilt.
    """
    files = text_files(folder)
    fingerprint = hashlib.sha256()
    for file in files:
        fingerprint.update(f"{file.name}\0{file.stat().st_size}\0{file.stat().st_mtime_ns}\0"
                           .encode())
    manifest = token_file.with_suffix(".json")
    if not _cache_is_intact(token_file, manifest, fingerprint.hexdigest()):
        tokenizer = tiktoken.get_encoding("gpt2")
        ids = []
        for file in files:
            try:
                text = file.read_text(encoding="utf-8")
            except UnicodeDecodeError as error:  # name the file, not just the byte
                raise ValueError(f"{file} is not UTF-8 text (byte {error.start}: "
                                 f"{error.reason}); convert it to UTF-8 or move it out of "
                                 f"{folder}") from None
            nul = text.find("\0")  # valid UTF-8, but no text holds it: a binary or UTF-16 file
            if nul >= 0:
                raise ValueError(f"{file} holds a NUL character (at character {nul:,}): a binary "
                                 f"or UTF-16 file? convert it to UTF-8 text or move it out of "
                                 f"{folder}")
            # "<|endoftext|>" written in a file is the separator token, on purpose: corpora are
            # often files of many documents joined by it, as GPT-2's were
            ids += tokenizer.encode(text, allowed_special={"<|endoftext|>"})
            ids.append(tokenizer.eot_token)  # documents are separated as in GPT-2's data
        array = memoryview(np.array(ids, dtype=np.uint16))  # written and hashed, not copied
        write_atomically(token_file, lambda tmp: tmp.write_bytes(array))
        write_atomically(manifest, lambda tmp: tmp.write_text(json.dumps({
            "fingerprint": fingerprint.hexdigest(), "files": [f.name for f in files],
            "tokens": len(ids), "sha256": hashlib.sha256(array).hexdigest()})))
    return np.memmap(token_file, dtype=np.uint16, mode="r")


def text_files(folder: Path) -> list[Path]:
    """The *.txt files directly in `folder`, sorted; raises FileNotFoundError when there are
    none, ValueError when one is not a regular file."""
    files = sorted(folder.glob("*.txt"))
    if not files:
        raise FileNotFoundError(f"{folder} holds no .txt files (pretrain.py reads the *.txt "
                                "files directly in it)")
    odd = [file.name for file in files if not file.is_file()]  # reading a pipe would wait
    if odd:
        raise ValueError(f"{folder}: {', '.join(odd)}: not a regular file (a folder, a pipe or "
                         "a broken link named *.txt); move it out of the folder")
    return files


def _cache_is_intact(token_file: Path, manifest: Path, fingerprint: str) -> bool:
    """Whether token_file holds the tokens its manifest describes, for these text files."""
    try:
        recorded = json.loads(manifest.read_text())
        if recorded["fingerprint"] != fingerprint:
            return False
        if token_file.stat().st_size != 2 * recorded["tokens"]:  # truncated or grown
            return False
        return token_sha256(token_file) == recorded["sha256"]  # damaged in place
    except (OSError, ValueError, KeyError, TypeError):  # missing, or a damaged manifest
        return False


def token_sha256(token_file: Path) -> str:
    """The sha256 of the token cache, read in 16 MiB pieces."""
    digest = hashlib.sha256()
    with token_file.open("rb") as tokens:
        while piece := tokens.read(1 << 24):
            digest.update(piece)
    return digest.hexdigest()


class RandomWindows:
    """`num_slots` batches of (input, target) windows at random offsets into `tokens`.

    Batch i draws the offsets of the whole global batch (batch x world_size) from a generator
    seeded by (seed, first_slot + i) and keeps this process's share. So the data of a step is
    fixed by its number alone, whatever ran before, on any number of processes.
    """

    def __init__(self, tokens: np.ndarray, context: int, batch: int, num_slots: int, seed: int,
                 first_slot: int = 0, rank: int = 0, world_size: int = 1):
        if len(tokens) <= context + 1:
            raise ValueError(f"{len(tokens)} tokens cannot fill one window of {context + 1}")
        self.tokens, self.context, self.batch = tokens, context, batch
        self.num_slots, self.seed, self.first_slot = num_slots, seed, first_slot
        self.rank, self.world_size = rank, world_size

    def __len__(self):
        return self.num_slots

    def __iter__(self):
        for slot in range(self.first_slot, self.first_slot + self.num_slots):
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + slot)
            offsets = torch.randint(0, len(self.tokens) - self.context - 1,
                                    (self.batch * self.world_size,), generator=generator)
            mine = offsets[self.rank * self.batch:(self.rank + 1) * self.batch]
            rows = np.stack([self.tokens[o:o + self.context + 1] for o in mine.tolist()])
            rows = torch.from_numpy(rows.astype(np.int64))
            yield rows[:, :-1], rows[:, 1:]


def parameters_sha256(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for tensor in model.state_dict().values():
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class UsageError(ValueError):
    """A command-line flag that cannot work; raised before any data is read."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse would print the usage and exit; we raise instead
        raise UsageError(message)


def _path(text):
    """An argparse type: a path, not empty ("" would mean the current folder)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path (an unset shell variable?)")
    return Path(text)


FLOAT32_MAX = 3.4028234663852886e38


def _number(kind, low, low_inclusive=True, high=None):
    """An argparse type: `kind` (int or float) within [low, high) or (low, high)."""
    def parse(text):
        try:
            value = kind(text)
            if not math.isfinite(value):  # float("nan") and float("inf") parse
                raise ValueError
        except ValueError:
            expected = "an integer" if kind is int else "a finite number"
            raise argparse.ArgumentTypeError(f"{text!r} is not {expected}") from None
        if kind is float and abs(value) > FLOAT32_MAX:  # PyTorch would refuse it mid-step
            raise argparse.ArgumentTypeError(f"{value} is beyond float32's range (at most "
                                             f"{FLOAT32_MAX:.1e}), in which training computes")
        too_low = value < low if low_inclusive else value <= low
        if too_low or (high is not None and value >= high):
            bound = f"at least {low}" if low_inclusive else f"greater than {low}"
            bound += f" and less than {high}" if high is not None else ""
            raise argparse.ArgumentTypeError(f"{value} must be {bound}")
        return value
    parse.__name__ = kind.__name__
    return parse


COUNT = _number(int, 1)              # steps, batch sizes, intervals: 1 or more
NON_NEGATIVE = _number(int, 0)
POSITIVE = _number(float, 0, low_inclusive=False)
RATE = _number(float, 0, high=1)     # dropout, validation share: [0, 1)


class _Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The docstring as written, and each flag's default after its help (none for a flag
    whose default is no value: its help says what it means)."""

    def _get_help_string(self, action):
        if action.default in (None, False):
            return action.help
        return super()._get_help_string(action)


# Flags that only say how this invocation runs (not the run's model or training), and those a
# resume may change: the run's other settings come from its checkpoint.
RESUME_MAY_CHANGE = {"data", "out", "resume", "steps", "stop_after", "eval_every",
                     "eval_batches", "checkpoint_every", "compile", "quiet",
                     "release_freed_memory"}
USING_A_RUN = {"out", "generate", "export", "new_tokens", "temperature", "top_k", "seed",
               "overwrite"}


def make_parser() -> argparse.ArgumentParser:
    parser = _Parser(description=__doc__.split("\n")[0], formatter_class=_Formatter,
                     epilog="\n".join(__doc__.split("\n")[1:]))
    parser.add_argument("--data", type=_path, help="folder of .txt files (needed to train)")
    parser.add_argument("--out", type=_path, required=True,
                        help="the run's folder: tokens, checkpoint, log")
    parser.add_argument("--size", default="gpt2-small (124M)", choices=list(GPT2_SIZES),
                        help='the model, quoted, as in --size "gpt2-medium (355M)"')
    parser.add_argument("--emb-dim", type=COUNT, help="override the size's width")
    parser.add_argument("--n-layers", type=COUNT, help="override the size's depth")
    parser.add_argument("--n-heads", type=COUNT, help="override the size's heads")
    parser.add_argument("--context", type=COUNT, default=256, help="tokens the model reads")
    parser.add_argument("--drop-rate", type=RATE, default=0.1, help="dropout")
    parser.add_argument("--batch", type=COUNT, default=8,
                        help="sequences per process per micro-batch (a step takes --grad-accum "
                             "of them)")
    parser.add_argument("--grad-accum", type=COUNT, default=1, help="micro-batches per step")
    parser.add_argument("--steps", type=COUNT, default=1000, help="steps of the whole run")
    parser.add_argument("--lr", type=POSITIVE, default=6e-4, help="peak learning rate")
    parser.add_argument("--min-lr", type=_number(float, 0), default=6e-5,
                        help="learning rate at the last step")
    parser.add_argument("--warmup-steps", type=NON_NEGATIVE, default=100,
                        help="steps of linear warmup; gradient clipping starts after them")
    parser.add_argument("--weight-decay", type=_number(float, 0), default=0.1, help="AdamW's")
    parser.add_argument("--max-grad-norm", type=POSITIVE, default=1.0, help="clipping")
    parser.add_argument("--val-fraction", type=_number(float, 0, False, 1), default=0.1,
                        help="the last share of the tokens, held out for validation")
    parser.add_argument("--eval-every", type=COUNT, default=100,
                        help="steps between evaluations (printed, and logged in OUT/log.jsonl)")
    parser.add_argument("--eval-batches", type=COUNT, default=10, help="batches per evaluation")
    parser.add_argument("--checkpoint-every", type=COUNT, default=500,
                        help="steps between checkpoints (and one at the end)")
    # Data windows are seeded by seed * 1_000_003 + step, and torch's seeds end at 2**64.
    parser.add_argument("--seed", type=_number(int, 0, high=2**32), default=123,
                        help="the model's initial weights and the data's windows; --generate's "
                             "sampling")
    parser.add_argument("--resume", action="store_true",
                        help="continue OUT/checkpoint.pt; a flag left out takes the "
                             "run's value, not the default shown here")
    parser.add_argument("--overwrite", action="store_true",
                        help="start afresh in an OUT that holds a run, deleting the run's files "
                             "once the new run has trained a step (an OUT holding files no run "
                             "writes is refused even so); with --export, replace FOLDER")
    parser.add_argument("--stop-after", type=NON_NEGATIVE,
                        help="stop after this step, checkpointed, as a job's time limit would")
    parser.add_argument("--fast", action="store_true",
                        help="SDPA attention, fused AdamW, bf16 autocast only where the "
                             "processor multiplies bf16 natively, and tied input/output "
                             "embeddings: a different model from the book's (one matrix "
                             "for both roles; 38.6 M fewer parameters at GPT-2 small), "
                             "which learns differently")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress bar (the evaluation lines and the rest are printed)")
    parser.add_argument("--release-freed-memory", action="store_true",
                        help="keep glibc's default of returning freed memory to the system")
    using = parser.add_argument_group("using a run's model (with --out alone, no training)")
    using.add_argument("--generate", metavar="PROMPT",
                       help="print the run's continuation of PROMPT")
    using.add_argument("--new-tokens", type=COUNT, default=50, help="tokens --generate adds")
    using.add_argument("--temperature", type=_number(float, 0), default=0.8,
                       help="--generate's sampling temperature (0: the likeliest token)")
    using.add_argument("--top-k", type=COUNT, default=40,
                       help="--generate samples from this many likeliest tokens")
    using.add_argument("--export", type=_path, metavar="FOLDER",
                       help="write the run's model as a Hugging Face GPT-2 checkpoint "
                            "(save_gpt2_safetensors) into FOLDER: a new or empty one, or an "
                            "earlier export of a model of the same shape, which it replaces "
                            "(add --overwrite to replace a folder holding anything else, "
                            "deleting everything in it)")
    return parser


def given_flags(argv: list[str] | None) -> set[str]:
    """The destinations of the flags the command line gives (not left to their defaults)."""
    parser = make_parser()
    for action in parser._actions:  # argparse has no public way to tell given from default
        action.default = argparse.SUPPRESS
    return set(vars(parser.parse_args(argv)))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, checked: raises UsageError naming the flag before any work starts.

    With --resume, the settings the command line leaves out are the run's (its checkpoint's),
    and one it gives that differs from the run's is refused, naming both values."""
    args = make_parser().parse_args(argv)
    given = given_flags(argv)
    if args.generate is not None or args.export is not None:
        others = sorted(given - USING_A_RUN)
        if others:
            raise UsageError(f"--generate and --export use the run in --out and train nothing: "
                             f"leave out {', '.join(flag_name(d) for d in others)}")
        if args.generate is not None and not args.generate.strip():
            raise UsageError("argument --generate: an empty prompt")
        if args.overwrite and args.export is None:
            raise UsageError("--overwrite with --generate: it replaces a training run's folder, "
                             "or --export's FOLDER; leave it out")
        if args.export is not None and (holds(args.export, args.out)
                                        or holds(args.out, args.export)):
            raise UsageError(f"--export {args.export} is --out or holds it: the export would "
                             "replace the run it is made from (or, inside it, block its "
                             "--overwrite); choose another FOLDER")
        if args.export is not None and holds(args.export, Path.cwd()):
            raise UsageError(f"--export {args.export} is the current folder or holds it; "
                             "choose another FOLDER")
        if not (args.out / "checkpoint.pt").is_file():
            raise UsageError(f"--out {args.out} holds no checkpoint.pt: not a run of "
                             "pretrain.py, or one that saved none yet")
        return args
    problems = []
    if args.data is None:
        problems.append("--data is required to train (--generate and --export need only "
                        "--out)")
    elif not args.data.is_dir():
        problems.append(f"--data {args.data} is not a folder")
    elif holds(args.out, args.data):
        problems.append(f"--data {args.data} is inside --out {args.out} (or is it): a run's "
                        "folder holds only its own files; choose an --out outside the texts' "
                        "folder")
    else:
        try:  # the checks that need no reading; the text's are tokenize_folder's
            text_files(args.data)
        except (FileNotFoundError, ValueError) as error:
            problems.append(f"--data {error}")
    if args.resume and args.overwrite:
        problems.append("--resume continues the run in --out and --overwrite replaces it: "
                        "give one of them")
    if args.out.exists() and not args.out.is_dir():
        problems.append(f"--out {args.out} is a file, not a folder")
    elif args.resume and not (args.out / "checkpoint.pt").is_file():
        problems.append(f"--resume: {args.out} holds no checkpoint.pt to continue" + (
            ", as its run stopped before saving one: start it again with --overwrite"
            if (args.out / "log.jsonl").is_file() else ""))
    elif args.resume:
        problems += take_run_settings(args, given, int(os.environ.get("WORLD_SIZE", "1")))
    if args.min_lr > args.lr:
        problems.append(f"--min-lr {args.min_lr} is above --lr {args.lr}")
    if args.warmup_steps > args.steps:
        problems.append(f"--warmup-steps {args.warmup_steps} is longer than --steps {args.steps}")
    if args.stop_after is not None and args.stop_after >= args.steps:
        problems.append(f"--stop-after {args.stop_after} is not before the last step "
                        f"({args.steps - 1})")
    width = args.emb_dim or GPT2_SIZES[args.size]["emb_dim"]
    heads = args.n_heads or GPT2_SIZES[args.size]["n_heads"]
    if width % heads and not args.resume:  # a resume's model is the run's: checked above
        problems.append(f"the width {width} does not split into {heads} heads")
    if problems:
        raise UsageError("; ".join(problems))
    return args


def holds(folder: Path, path: Path) -> bool:
    """Whether `path` is `folder` or lies inside it (links resolved)."""
    return path.resolve().is_relative_to(folder.resolve())


def flag_name(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def read_checkpoint(path: Path) -> dict:
    """A checkpoint's dict, its tensors memory-mapped (read only where used)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (RuntimeError, OSError, EOFError, ValueError) as error:
        raise ValueError(f"{path} is not a readable checkpoint (truncated or damaged?): "
                         f"{error}") from None
    if not isinstance(state, dict) or not isinstance(state.get("config"), dict):
        raise ValueError(f"{path} holds no model configuration (config): not a checkpoint of "
                         "pretrain.py")
    return state


def run_settings(state: dict, world_size: int) -> dict:
    """The flags a pretrain.py checkpoint records (those it holds), by destination."""
    config, training = state["config"], state.get("training") or {}
    settings = {"emb_dim": config.get("emb_dim"), "n_layers": config.get("n_layers"),
                "n_heads": config.get("n_heads"), "context": config.get("context_length"),
                "drop_rate": config.get("drop_rate"), "fast": bool(config.get("tie_weights")),
                "seed": state.get("seed"), "val_fraction": state.get("val_fraction"),
                "steps": state.get("steps"), **(state.get("cadence") or {}),
                **{name: training.get(name) for name in ("grad_accum", "lr", "min_lr",
                   "warmup_steps", "weight_decay", "max_grad_norm")}}
    if isinstance(training.get("batch_x_processes"), int):
        settings["batch"] = training["batch_x_processes"] / world_size
    return {dest: value for dest, value in settings.items() if value is not None}


def take_run_settings(args: argparse.Namespace, given: set[str], world_size: int) -> list[str]:
    """Set args to the run's settings (from OUT/checkpoint.pt) where the command line leaves
    them out; return the given flags that differ from the run's, each named with both values."""
    state = read_checkpoint(args.out / "checkpoint.pt")
    settings = run_settings(state, world_size)
    differ = []
    for dest, value in settings.items():
        if dest not in given:
            continue
        if dest == "batch":
            if args.batch != value:
                differ.append(f"--batch {args.batch} on {world_size} process(es) makes "
                              f"{args.batch * world_size} sequences a step, the run's "
                              f"{round(value * world_size)}")
        elif dest == "fast":
            if args.fast != value:
                differ.append("--fast: the run was trained without it")
        elif dest not in RESUME_MAY_CHANGE and getattr(args, dest) != value:
            differ.append(f"{flag_name(dest)} {getattr(args, dest)} differs from the run's "
                          f"{value}")
    if "size" in given:  # a size's dimensions that no flag overrides
        for dest, value in GPT2_SIZES[args.size].items():
            if dest not in given and settings.get(dest) not in (None, value):
                differ.append(f'--size "{args.size}" has {flag_name(dest)} {value}, the '
                              f"run's {settings[dest]}")
    if differ:
        return [f"--resume continues the run in {args.out} with its own settings: "
                f"{'; '.join(differ)} (leave the flag out, or choose another --out)"]
    batch = settings.get("batch")
    if batch is not None and batch != int(batch):
        return [f"the run's {round(batch * world_size)} sequences a step do not split among "
                f"{world_size} processes"]
    for dest, value in settings.items():
        if dest not in given:
            setattr(args, dest, int(value) if dest == "batch" else value)
    return []


@dataclass
class Process:
    """Where this process runs and which share of the work is its own."""

    device: torch.device
    rank: int = 0
    world_size: int = 1

    @property
    def distributed(self) -> bool:
        return self.world_size > 1 or dist.is_initialized()

    @property
    def main(self) -> bool:
        return self.rank == 0


def set_up_process() -> Process:
    """The device (shared.get_device: CUDA, then MPS, then the CPU; LLM_COURSE_DEVICE names
    another), and under torchrun the process group (process_group_backend). Under
    torchrun each process trains on the GPU of its local rank, so LLM_COURSE_DEVICE may name
    the kind ("cuda", "cpu") but not one GPU ("cuda:1"): that is refused."""
    device = get_device()
    torchrun = "RANK" in os.environ
    if torchrun and device.type == "cuda" and device.index is not None:
        raise UsageError(f"LLM_COURSE_DEVICE={device} names one GPU, but under torchrun each "
                         "process trains on the GPU of its local rank (LOCAL_RANK): set "
                         "LLM_COURSE_DEVICE=cuda, and CUDA_VISIBLE_DEVICES to choose the GPUs")
    if device.type == "cuda":  # under torchrun, each process its own GPU
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", device.index or 0)))
        torch.cuda.set_device(device)
    elif device.type == "mps" and torchrun:  # no collective exchanges MPS tensors
        device = torch.device("cpu")
        if os.environ["RANK"] == "0":
            print("pretrain.py: torch.distributed cannot exchange tensors on a Mac's GPU (MPS): "
                  "the processes train on the CPU (one process, without torchrun, uses the "
                  "GPU)", file=sys.stderr)
    if not torchrun:
        return Process(device)
    dist.init_process_group(process_group_backend(device))
    return Process(device, dist.get_rank(), dist.get_world_size())


def process_group_backend(device: torch.device) -> str:
    """nccl between CUDA GPUs where PyTorch has it; gloo on CPUs, and on Windows, whose builds
    have no nccl (gloo exchanges CUDA tensors too, more slowly)."""
    return "nccl" if device.type == "cuda" and dist.is_nccl_available() else "gloo"


# torch's fused AdamW kernels, on the devices this script picks; elsewhere (LLM_COURSE_DEVICE
# naming another) --fast leaves AdamW unfused
FUSED_ADAMW_DEVICES = ("cuda", "mps", "cpu")


class RunFolderBusyError(ValueError):
    """Another run holds the --out folder."""


def claim_run_folder(args: argparse.Namespace):
    """Lock OUT/run.lock for as long as the returned file stays open, once OUT is free.

    Refuses a folder that another run holds (naming it) or that holds a run this one would
    destroy or files no run writes (check_fresh_start); a folder refused for its files is left
    as it was (no run.lock is made in it).
    The lock is the kernel's (flock): it goes with the process, so a crashed or killed run
    leaves none behind. Without flock (Windows) the folder is not locked, and a warning says
    so. release_run_folder empties the holder's line, so that no finished run is named.
    """
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"--out {args.out} cannot be made: {error.strerror}") from None
    if not (args.out / "run.lock").exists():  # not a run's folder: nothing is written into it
        check_fresh_start(args)  # unless it may be (checked again below, under the lock)
    lock = (args.out / "run.lock").open("a+")
    locked = fcntl is not None
    try:
        if locked:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as error:  # BlockingIOError: held; others: no flock on this disk
                if isinstance(error, BlockingIOError):
                    raise
                locked = False
        if not locked:
            print(f"pretrain.py: no file lock on this system or disk: nothing stops a second "
                  f"run into {args.out}", file=sys.stderr)
        check_fresh_start(args)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip() or "another process"
        lock.close()
        raise RunFolderBusyError(f"--out {args.out} is in use by {holder}: wait for that run "
                                 "to end, stop it, or choose another folder") from None
    except BaseException:
        lock.close()
        raise
    lock.seek(0)
    lock.truncate()
    lock.write(f"process {os.getpid()} on {socket.gethostname()} (started "
               f"{time.strftime('%Y-%m-%d %H:%M:%S')})\n")
    lock.flush()
    return lock


def release_run_folder(lock) -> None:
    """Let go of the folder claim_run_folder locked; its run.lock no longer names this run."""
    lock.truncate(0)
    lock.close()


def claim_on_every_rank(args: argparse.Namespace, process: Process):
    """Rank 0 claims the folder (claim_run_folder); under torchrun, if it is refused, the other
    ranks stop too, instead of waiting for rank 0 at the first collective call."""
    lock, refusal = None, None
    if process.main:
        try:
            lock = claim_run_folder(args)
        except Exception as error:  # raised below, once the other ranks know
            refusal = error
    if process.distributed:
        refused = [refusal is not None]
        dist.broadcast_object_list(refused)
        if refused[0] and not process.main:
            raise ValueError(f"rank {process.rank}: stopped, as rank 0 could not take --out "
                             f"{args.out} (its message says why)")
    if refusal is not None:
        raise refusal
    return lock


RUN_FILES = ("checkpoint.pt", "log.jsonl")  # what a run leaves; tokens.bin is only a cache
FRESH_FILES = ("tokens.bin", "tokens.json", "run.lock")  # what a new run makes before a step
# every file a run writes: those, each process's weights-rank<r>.sha256, and the temporary
# <name>.tmp that write_atomically leaves only if the process is killed mid-write
A_RUNS_FILE = re.compile(r"(checkpoint\.pt|log\.jsonl|tokens\.bin|tokens\.json|run\.lock"
                         r"|weights-rank\d+\.sha256)(\.tmp)?")


def written_by_a_run(path: Path) -> bool:
    return A_RUNS_FILE.fullmatch(path.name) is not None and (path.is_symlink()
                                                              or not path.is_dir())


def check_fresh_start(args: argparse.Namespace) -> None:
    """Refuse a new run into a folder holding files no run writes (even with --overwrite), or
    a run, unless --resume or --overwrite says what to do with it (--overwrite deletes the
    run's files once the new run has trained a step: remove_run)."""
    if args.resume:
        return
    others = sorted(path.name + "/" * path.is_dir() for path in args.out.iterdir()
                    if not written_by_a_run(path))
    if others:
        shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5
                                         else "")
        raise UsageError(f"--out {args.out} holds files that are not a run of pretrain.py "
                         f"({shown}), which a run never deletes, even with --overwrite: move "
                         "them, or choose a new or empty --out")
    found = [name for name in RUN_FILES if (args.out / name).exists()]
    if found == ["log.jsonl"] and not args.overwrite:  # nothing for --resume to continue
        raise UsageError(f"--out {args.out} holds a run stopped before its first checkpoint "
                         "(log.jsonl): start it again with --overwrite, or choose another "
                         "folder")
    if found and not args.overwrite:
        raise UsageError(f"--out {args.out} holds a run ({', '.join(found)}): pass --resume "
                         "to continue it or --overwrite to replace it, or choose another "
                         "folder")


def remove_run(out: Path) -> None:
    """Delete the old run's files in `out` (for --overwrite): its checkpoint, log and weights'
    hashes, so that nothing of it is mistaken for the new run's. The new run's token cache and
    lock stay, and any file that is not a run's (check_fresh_start refused those before)."""
    for path in out.iterdir():
        if written_by_a_run(path) and path.name not in FRESH_FILES:
            path.unlink(missing_ok=True)


class RunStoppedError(BaseException):
    """Training stopped early on a signal; `step` is the last step done (None: before any).

    A BaseException, as KeyboardInterrupt is, so that no library's `except Exception` can
    swallow it on its way out."""

    def __init__(self, signum: int, step: int | None, checkpoint: Path | None = None):
        self.signum, self.step, self.checkpoint = signum, step, checkpoint
        where = ("before training began" if step is None else
                 f"after step {step}, checkpointed in {checkpoint}: continue with --resume")
        super().__init__(f"stopped by {signal.Signals(signum).name} {where}")


class StopSignals:
    """SIGTERM and Ctrl-C (SIGINT) as a request to stop, while the `with` block runs.

    Before training begins nothing is worth saving, so a signal stops at once (RunStoppedError).
    Once `deferring` (from the training loop on) it only sets `requested` (the signal's number);
    the loop checkpoints at the end of the step and stops. A second Ctrl-C stops at once.
    Handlers can only be set in the main thread; elsewhere the signals keep their usual effect.
    Under torchrun each worker gets the signal; torchrun kills them --shutdown-timeout seconds
    later (30 by default), which must cover the rest of a step and a checkpoint.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.requested, self.deferring, self.previous = None, False, {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc_info):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)

    def _handle(self, signum, frame):
        again = self.requested is not None
        self.requested = signum  # set first: if the raise below were swallowed, the loop stops
        if not self.deferring:
            raise RunStoppedError(signum, None)
        if again and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: at once, as Ctrl-C usually is
        # os.write, not print: the handler may interrupt a print to stderr (the progress bar)
        os.write(2, f"\n{signal.Signals(signum).name}: stopping at the end of this step, with "
                    "a checkpoint (Ctrl-C again to stop at once)\n".encode())


def load_tokens(args: argparse.Namespace, process: Process) -> tuple[np.ndarray, np.ndarray]:
    """The training and validation token ids; one process tokenises, the others wait."""
    args.out.mkdir(parents=True, exist_ok=True)
    if process.main:
        tokenize_folder(args.data, args.out / "tokens.bin")
    if process.distributed:
        dist.barrier()
    tokens = tokenize_folder(args.data, args.out / "tokens.bin")
    split = int(len(tokens) * (1 - args.val_fraction))
    for name, part in (("training", tokens[:split]), ("validation", tokens[split:])):
        if len(part) <= args.context + 1:  # RandomWindows needs one window and a shift
            raise ValueError(f"the {name} split has {len(part):,} tokens, too few for one "
                             f"window of --context {args.context} + 1: add text or change "
                             f"--val-fraction ({args.val_fraction}) or --context")
    return tokens[:split], tokens[split:]


def data_checksum(args: argparse.Namespace) -> str:
    """The sha256 of the tokens (from the manifest), which resume compares."""
    return json.loads((args.out / "tokens.json").read_text())["sha256"]


def build(args: argparse.Namespace, process: Process) -> tuple[GPTModel, torch.optim.Optimizer]:
    """The model (the same initial weights in every process; its config is model.cfg), AdamW."""
    overrides = {k: v for k, v in {"emb_dim": args.emb_dim, "n_layers": args.n_layers,
                                   "n_heads": args.n_heads}.items() if v is not None}
    cfg = gpt2_config(args.size, context_length=args.context, drop_rate=args.drop_rate,
                      tie_weights=args.fast, sdpa=args.fast, **overrides)
    torch.manual_seed(args.seed)
    model = GPTModel(cfg).to(process.device)
    fused = args.fast and process.device.type in FUSED_ADAMW_DEVICES
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr,
                                  weight_decay=args.weight_decay, fused=fused or None)
    return model, optimizer


def training_settings(args: argparse.Namespace, world_size: int) -> dict:
    """The flags besides the model's that decide its weights: a resume must repeat them. The
    batch counts all processes' sequences, which fix a step's windows (RandomWindows)."""
    return {"batch_x_processes": args.batch * world_size, **{name: getattr(args, name) for name
            in ("grad_accum", "lr", "min_lr", "warmup_steps", "weight_decay", "max_grad_norm")}}


def resume(checkpoint_path: Path, model: GPTModel, optimizer: torch.optim.Optimizer,
           process: Process, expect: dict | None = None, steps: int | None = None) -> int:
    """Load the checkpoint into model and optimizer; the first step still to run.

    Raises ValueError, with model and optimizer untouched, when there is no usable checkpoint
    or it was trained with another configuration or other `expect`ed values (the seed, the
    data, the training settings). Another number of `steps` is allowed (it extends or shortens
    the run) and said. Each process continues its own random streams (its CPU's and its GPU's)
    when the number of processes and the kind of device are unchanged; otherwise the data is
    the same and only dropout masks differ. Those states are checked with the rest, before
    anything is loaded.
    """
    def own_generators(state):  # this process's generator states; None: none to continue
        rng_states = state.get("rng_states")
        if not isinstance(rng_states, list) or len(rng_states) != process.world_size:
            return None
        mine = rng_states[process.rank]  # an earlier pretrain.py kept the CPU's state alone
        return {"torch_rng": mine} if isinstance(mine, torch.Tensor) else mine

    def generators_problems(state):
        if not isinstance(state.get("rng_states"), list):
            return ["holds no list of the processes' random-number states (rng_states): not "
                    "a checkpoint of pretrain.py"]
        mine = own_generators(state)
        problems = generator_problems(mine) if mine is not None else []
        return [f"{problem} (the random-number states of process {process.rank})"
                for problem in problems]

    try:
        state = load_checkpoint(checkpoint_path, model, optimizer, restore_rng=False,
                                expect={"config": model.cfg, **(expect or {})},
                                validate=generators_problems)
    except (FileNotFoundError, ValueError) as error:
        raise ValueError(f"cannot resume: {error}") from None
    if steps is not None and state.get("steps", steps) != steps and process.main:
        print(f"resuming with --steps {steps}, not the {state['steps']} this run began with: "
              "the learning-rate schedule is computed for the new length", file=sys.stderr)
    mine, device = own_generators(state), process.device.type
    if mine is None:
        if process.main:
            print(f"resuming on {process.world_size} processes, not "
                  f"{len(state['rng_states'])}: same data, new dropout masks", file=sys.stderr)
        return state["step"] + 1
    restore_generators(mine)  # those this machine has
    saved_on = state.get("device")  # None: an earlier pretrain.py, which kept the CPU's alone
    if process.main and saved_on != device and (saved_on or device != "cpu"):
        where = f"on {saved_on}" if saved_on else "by an earlier pretrain.py, without GPU state"
        print(f"resuming on {device}; the checkpoint was saved {where}, whose dropout drew from "
              "another generator: same data, new dropout masks", file=sys.stderr)
    return state["step"] + 1


LONG_CPU_RUN = 3600  # seconds: an estimate above it on a CPU is said, once


def long_run_warning(seconds_per_step: float, steps_left: int) -> str | None:
    """What to say when the rest of a CPU run would take more than LONG_CPU_RUN, else None."""
    estimate = seconds_per_step * steps_left
    if estimate <= LONG_CPU_RUN:
        return None
    return (f"pretrain.py: at {seconds_per_step:.2g} s a step, the {steps_left:,} steps left "
            f"take about {estimate / 3600:.1f} h on this CPU. A model that trains in minutes "
            "there, in a new --out: --emb-dim 128 --n-layers 2 --n-heads 4 --context 64 (or a "
            "GPU)")


def weights_are_finite(model: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def run(args: argparse.Namespace, process: Process, model: GPTModel,
        optimizer: torch.optim.Optimizer, tokens: tuple[np.ndarray, np.ndarray],
        start_step: int, signals: StopSignals | None = None) -> None:
    """Train from start_step to the last step, logging, checkpointing and timing.

    Raises RunStoppedError, after checkpointing the step under way, when `signals` asks to stop;
    FloatingPointError, saving nothing of that step, when its loss (train_model checks it),
    its evaluated losses or the weights to be saved are nan or infinite: the checkpoint keeps
    the last step saved before.
    """
    signals = signals or StopSignals()
    train_tokens, val_tokens = tokens
    log_path, checkpoint_path = args.out / "log.jsonl", args.out / "checkpoint.pt"
    if args.compile:
        model.compile()
    replica = DistributedDataParallel(model) if process.distributed else model  # syncs weights
    last_step = args.steps - 1 if args.stop_after is None else min(args.stop_after, args.steps - 1)
    remaining = max(0, last_step + 1 - start_step)
    world_size, rank = process.world_size, process.rank
    train_loader = RandomWindows(train_tokens, args.context, args.batch,
                                 remaining * args.grad_accum, args.seed,
                                 start_step * args.grad_accum, rank, world_size)
    val_loader = RandomWindows(val_tokens, args.context, args.batch, args.eval_batches,
                               args.seed + 1)  # the same validation windows in every process
    saved = [start_step - 1 if args.resume else None]  # the step checkpoint.pt holds
    old_run = args.overwrite and process.main  # --overwrite: kept until a step is trained
    step_ends = []  # when the first steps ended, for the CPU's estimate

    def after_step(step, train_losses, val_losses):
        nonlocal old_run
        if step % args.eval_every == 0:  # (train_model stops at a training loss of nan)
            check_finite("the training loss (evaluated)", train_losses[-1], step=step)
            check_finite("the validation loss", val_losses[-1], step=step)
        if old_run:
            remove_run(args.out)
            old_run = False
        if step % args.eval_every == 0 and process.main:
            with log_path.open("a") as log:
                log.write(json.dumps({"step": step, "train_loss": train_losses[-1],
                                      "val_loss": val_losses[-1], "time": time.time()}) + "\n")
            if args.quiet:  # train_model prints its lines only with its bar: the same here
                print(f"Ep 1 (Step {step:06d}): Train loss {train_losses[-1]:.3f}, "
                      f"Val loss {val_losses[-1]:.3f}", flush=True)
        if process.main and process.device.type == "cpu" and len(step_ends) < 2:
            step_ends.append(time.perf_counter())  # the first step also warms up: timed apart
            if len(step_ends) == 2 and (warning := long_run_warning(
                    step_ends[1] - step_ends[0], last_step - step)):
                tqdm.write(warning, file=sys.stderr)
        signum = signals.requested or 0
        if process.distributed:  # every process stops after the same step, or DDP would hang
            flag = torch.tensor([signum], device=process.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            signum = int(flag.item())
        stop = signum > 0
        if (step + 1) % args.checkpoint_every == 0 or step == last_step or stop:
            if not weights_are_finite(model):  # the same in every process: DDP's replicas
                raise FloatingPointError(f"the weights became nan or infinite at step {step}:"
                                         " training stopped there, as every later update "
                                         "would be nan (a lower learning rate usually avoids "
                                         "it)")
            rng_states = [generator_states()]  # the CPU's generator, and the GPUs'
            if process.distributed:
                rng_states = [None] * world_size
                dist.all_gather_object(rng_states, generator_states())
            if process.main:
                save_checkpoint(checkpoint_path, model, optimizer, step=step, config=model.cfg,
                                rng_states=rng_states, device=process.device.type,
                                seed=args.seed, data_sha256=data_checksum(args),
                                val_fraction=args.val_fraction,
                                training=training_settings(args, world_size),
                                steps=args.steps, cadence=cadence(args))
            saved[0] = step
        if stop and step < last_step:
            if process.distributed:  # no process exits while the checkpoint is being written
                dist.barrier()
            raise RunStoppedError(signum, step, checkpoint_path)

    bf16 = args.fast and supports_fast_bf16(process.device)
    if process.main:
        print(f"{world_size} process(es) on {process.device.type}; {len(train_tokens):,} "
              f"training and {len(val_tokens):,} validation tokens; steps "
              f"{start_step}..{last_step}; {args.batch * world_size * args.grad_accum} "
              f"sequences of {args.context} per step"
              + (f"; products in {'bfloat16' if bf16 else 'float32'}" if args.fast else ""),
              flush=True)
    start = time.perf_counter()
    signals.deferring = True
    try:
        train_model(
            replica, train_loader, val_loader, optimizer, process.device, n_epochs=1,
            eval_freq=args.eval_every, eval_iter=args.eval_batches, start_context=None,
            tokenizer=None, warmup_steps=args.warmup_steps, start_step=start_step,
            grad_accum_steps=args.grad_accum,  # the schedule spans the whole run, not this part
            lr_schedule=cosine_schedule(args.lr, args.steps, args.warmup_steps, 0.0, args.min_lr),
            max_grad_norm=args.max_grad_norm, progress=process.main and not args.quiet,
            autocast_dtype=torch.bfloat16 if bf16 else None, after_step=after_step)
    except FloatingPointError as error:
        kept = (f"{checkpoint_path} keeps step {saved[0]}, the last saved" if saved[0] is not None
                else f"the run that was in {args.out} is untouched" if old_run
                else "no checkpoint was saved")
        # a --resume would repeat the same steps (same batches, same dropout masks)
        way_out = ("start again with a lower --lr in a new --out, which keeps this checkpoint "
                   "(--overwrite would delete it)") if saved[0] is not None else (
                   "start the run again with a lower --lr and --overwrite (or in a new --out)")
        raise FloatingPointError(f"{error}; {kept}: {way_out}") from None
    seconds = time.perf_counter() - start
    (args.out / f"weights-rank{rank}.sha256").write_text(parameters_sha256(model) + "\n")
    if process.main:
        trained = remaining * args.batch * world_size * args.grad_accum * args.context
        print(f"{trained:,} tokens in {seconds:.1f} s: {trained / max(seconds, 1e-9):,.0f} "
              "tokens/s", flush=True)
        script = os.path.relpath(__file__)  # as typed from here; absolute when it is far away
        script = script if not script.startswith(os.pardir) else os.path.abspath(__file__)
        print(f"the model after step {last_step}: {checkpoint_path}. Generate from it with\n"
              f"  python {script} --out {args.out} --generate \"Every effort moves you\"\n"
              f"or in Python: from ch05_pretraining.pretrain import load_run; "
              f"model = load_run({str(args.out)!r})", flush=True)


def cadence(args: argparse.Namespace) -> dict:
    """The evaluation and checkpoint intervals, which a resume keeps unless told others."""
    return {name: getattr(args, name) for name in ("eval_every", "eval_batches",
                                                   "checkpoint_every")}


def trim_log(log_path: Path, start_step: int) -> None:
    """Keep the log's lines of steps before start_step (none for a new run).

    A run stopped after its last checkpoint has logged steps that a resume runs (and logs)
    again; a crash can leave half a line. Both go, so each step is logged once.
    """
    if not log_path.is_file():
        return
    kept = []
    for line in log_path.read_text().splitlines():
        try:
            if json.loads(line)["step"] < start_step:
                kept.append(line + "\n")
        except (ValueError, KeyError, TypeError):
            continue
    write_atomically(log_path, lambda tmp: tmp.write_text("".join(kept)))


def main(argv: list[str] | None = None) -> None:
    """Pretrain as the command line says; raises ValueError or FileNotFoundError on bad input,
    RunStoppedError on SIGTERM or Ctrl-C (after a checkpoint, once training has begun)."""
    args = parse_args(argv)
    if args.generate is not None or args.export is not None:
        use_run(args)
        return
    if not args.release_freed_memory:
        keep_freed_memory()  # fewer page faults per step (README, "Speed and scale")
    process = set_up_process()
    lock = None
    made = not_there_yet(args.out) if process.main else []
    try:
        lock = claim_on_every_rank(args, process)
        with StopSignals() as signals:
            train(args, process, signals, made)
    finally:
        if lock is not None:
            release_run_folder(lock)
        if dist.is_initialized():
            dist.destroy_process_group()


def load_run(out: str | Path, device: str | torch.device = "cpu") -> GPTModel:
    """The model of the pretrain.py run in `out` (its folder, or its checkpoint.pt), as its
    checkpoint holds it, on `device`, in eval mode. Leaves the caller's random numbers as they
    were."""
    if not isinstance(out, (str, os.PathLike)):
        raise TypeError(f"load_run: out must be the run's folder (a str or a Path), not {out!r} "
                        f"({type(out).__name__})")
    path = Path(out)
    if path.name != "checkpoint.pt" or not path.is_file():  # the checkpoint itself is taken
        if path.is_file():
            raise NotADirectoryError(f"load_run: {out} is a file: give the run's folder (the "
                                    "--out of pretrain.py) or its checkpoint.pt")
        path = path / "checkpoint.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{out} holds no checkpoint.pt: not a run of pretrain.py, or "
                                "one that saved none yet")
    with torch.random.fork_rng(devices=[]):  # GPTModel draws initial weights, then replaced
        model = GPTModel(read_checkpoint(path)["config"])
    load_checkpoint(path, model, restore_rng=False)
    return model.to(device).eval()


def use_run(args: argparse.Namespace) -> None:
    """--export and --generate: the run's model written for transformers, or continuing a
    prompt (sampled with --temperature and --top-k, seeded by --seed)."""
    model = load_run(args.out, get_device())
    if args.export is not None:
        try:
            save_gpt2_safetensors(model, args.export, replace=args.overwrite)
        except FileExistsError as error:  # its words are Python's: replace=True
            raise FileExistsError(str(error).replace("pass replace=True", "add --overwrite")
                                  ) from None
        print(f"wrote {args.export / 'model.safetensors'} and config.json: "
              f"transformers.GPT2LMHeadModel.from_pretrained({str(args.export)!r}) reads them",
              flush=True)
    if args.generate is not None:
        tokenizer = tiktoken.get_encoding("gpt2")
        torch.manual_seed(args.seed)
        prompt = text_to_token_ids(args.generate, tokenizer).to(model.pos_emb.weight.device)
        ids = generate(model, prompt, max_new_tokens=args.new_tokens, temperature=args.temperature,
                       top_k=args.top_k)
        print(token_ids_to_text(ids.cpu(), tokenizer), flush=True)


def train(args: argparse.Namespace, process: Process, signals: StopSignals,
          made: list[Path] | None = None) -> None:
    """Tokenise, build, resume if asked, and run: main's work once the folder is ours. Refused
    before training (bad text, too few tokens, a checkpoint that does not fit), it removes the
    paths in `made` (not_there_yet's: what this invocation created), leaving --out as it was."""
    try:
        tokens, model, optimizer, start_step = prepare(args, process)
    except BaseException:
        remove_made(made or [])
        raise
    if process.main and not args.overwrite:  # --overwrite: run() removes the old log
        trim_log(args.out / "log.jsonl", start_step)
    run(args, process, model, optimizer, tokens, start_step, signals)


def prepare(args: argparse.Namespace, process: Process):
    """The tokens, the model and its optimizer (resumed if asked), and the first step to run."""
    tokens = load_tokens(args, process)
    model, optimizer = build(args, process)
    start_step = 0
    if args.resume:
        start_step = resume(args.out / "checkpoint.pt", model, optimizer, process,
                            expect={"seed": args.seed, "data_sha256": data_checksum(args),
                                    "val_fraction": args.val_fraction,
                                    "training": training_settings(args, process.world_size)},
                            steps=args.steps)
        last_step = args.steps - 1 if args.stop_after is None else args.stop_after
        if start_step > last_step:
            raise ValueError(f"the checkpoint is at step {start_step - 1} and this run "
                             f"ends at step {last_step}: nothing left to train (raise "
                             "--steps or --stop-after)")
    return tokens, model, optimizer, start_step


def not_there_yet(out: Path) -> list[Path]:
    """What a run into `out` would create that is not there now: the folders (`out` and any
    missing parents, innermost first) after the files a run makes before its first step."""
    folders = [folder for folder in (out, *out.parents) if not folder.exists()]
    files = [out / name for name in FRESH_FILES if not (out / name).exists()]
    return files + folders


def remove_made(made: list[Path]) -> None:
    """Remove what this invocation created (not_there_yet's list): files, then the folders it
    made, each only if empty now."""
    for path in made:
        try:
            if path.is_dir() and not path.is_symlink():
                path.rmdir()  # refuses a folder something else wrote into meanwhile
            else:
                path.unlink(missing_ok=True)
        except OSError:
            pass


if __name__ == "__main__":
    try:
        main()
    except UsageError as error:  # a bad flag: one line and status 2, as command lines do
        print(f"pretrain.py: error: {error} (see --help)", file=sys.stderr)
        sys.exit(2)
    except RunStoppedError as stopped:  # the status a shell gives a process ended by that signal
        print(f"pretrain.py: {stopped}", file=sys.stderr)
        sys.exit(128 + stopped.signum)
    except KeyboardInterrupt:
        print("pretrain.py: stopped at once by Ctrl-C; --out holds the last checkpoint saved, "
              "if any", file=sys.stderr)
        sys.exit(128 + signal.SIGINT)
    except (ValueError, OSError, FloatingPointError) as error:  # bad data, checkpoint or folder,
        sys.exit(f"pretrain.py: {error}")  # or a loss that became nan: status 1
