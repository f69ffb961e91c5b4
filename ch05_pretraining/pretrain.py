"""Pretrain a GPT on a folder of text files, on one CPU or GPU, or on many with torchrun.

A first run, small enough for a laptop's CPU (minutes; the README says how long it took where):

    python ch05_pretraining/pretrain.py --data my_texts/ --out runs/tiny \\
        --emb-dim 128 --n-layers 2 --n-heads 4 --context 64 --steps 300
    python ch05_pretraining/pretrain.py --data my_texts/ --out runs/tiny --resume --steps 600
                                        # after a stop (Ctrl-C, SIGTERM, --stop-after) or to go on
    python ch05_pretraining/pretrain.py --out runs/tiny --generate "Every effort moves you"
    python ch05_pretraining/pretrain.py --out runs/tiny --export runs/tiny-hf  # for transformers

Without the size flags it trains GPT-2 small (124 M parameters): a GPU's work (on a CPU, a
run whose estimate is over an hour says so). On many GPUs:

    torchrun --nproc_per_node=4 ch05_pretraining/pretrain.py --data my_texts/ --out runs/small-4

nanoGPT's train.py made of chapter 5's GPTModel and appendix D's train_model, on the device
shared.get_device() picks (CUDA, else MPS, else the CPU; LLM_COURSE_DEVICE names another),
plus: the texts tokenised once (OUT/tokens.bin); random windows seeded by (seed, step), so that
--resume, with the run's settings, gives the weights of an uninterrupted run (bit for bit on
CPUs, to rounding on GPUs); under torchrun, DistributedDataParallel (a step takes --batch x
processes x --grad-accum sequences); OUT/log.jsonl, the evaluations; OUT/weights-rank<r>.sha256
the sha256 of each process's final weights; load_run(OUT), the run's model; and nothing
destroyed that a run did not write (run_folder.py, beside it), SIGTERM and Ctrl-C stopping a run at
the end of a step, with a checkpoint.
"""

import argparse
import hashlib
import json
import os
import sys
import time
import warnings
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import tiktoken
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from ch05_pretraining.run_folder import (
    RunFolder,
    RunStoppedError,
    StopSignals,
    check_export_folder,
    given_flags,
    run_folder_problems,
    text_files,
    tokenize_folder,
)
from shared import (
    GPT2_SIZES,
    GPTModel,
    cosine_schedule,
    evaluate_model,
    generator_states,
    get_device,
    gpt2_config,
    keep_freed_memory,
    load_checkpoint,
    prepare_tiktoken_cache,
    restore_generators,
    save_checkpoint,
    save_gpt2_safetensors,
    supports_fast_bf16,
    text_to_token_ids,
    token_ids_to_text,
    train_model,
)
from shared import generate_text as generate
from shared.checks import check
from shared.safe_files import read_torch_file
from shared.tooling.command_line import (
    CommandParser,
    HelpFormatter,
    UsageError,
    number_arg,
    path_arg,
    run_main,
)


class RandomWindows:
    """`num_slots` batches of (input, target) windows at random offsets into `tokens`: batch i
    draws all processes' offsets from a generator seeded by (seed, first_slot + i) and keeps
    this process's share, so a step's data depends on its number alone."""

    def __init__(self, tokens: np.ndarray, context: int, batch: int, num_slots: int, seed: int,
                 first_slot: int = 0, rank: int = 0, world_size: int = 1):
        self.tokens, self.context, self.batch, self.num_slots = tokens, context, batch, num_slots
        self.seed, self.first_slot, self.rank, self.world_size = seed, first_slot, rank, world_size

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


# The command line ------------------------------------------------------------------------------

COUNT, NON_NEGATIVE = number_arg(int, 1), number_arg(int, 0)  # and floats, within float32:
POSITIVE = number_arg(float, 0, open_low=True, float32=True)
NON_NEGATIVE_FLOAT = number_arg(float, 0, float32=True)
RATE = number_arg(float, 0, 1, open_high=True)
TRAINING = ("grad_accum", "lr", "min_lr", "warmup_steps", "weight_decay", "max_grad_norm")
# Flags a resume may give anew (the others are the run's), and those of using a run
RESUME_MAY_CHANGE = {"data", "out", "resume", "steps", "stop_after", "eval_every", "eval_batches",
                     "checkpoint_every", "compile", "quiet", "release_freed_memory"}
USING_A_RUN = {"out", "generate", "export", "new_tokens", "temperature", "top_k", "seed"}


def make_parser() -> argparse.ArgumentParser:
    parser = CommandParser(description=__doc__.split("\n")[0], formatter_class=HelpFormatter,
                           epilog="\n".join(__doc__.split("\n")[1:]), raise_errors=True)
    add = parser.add_argument
    add("--data", type=path_arg, help="folder of .txt files (needed to train)")
    add("--out", type=path_arg, required=True, help="the run's folder: tokens, checkpoint, log")
    add("--size", default="gpt2-small (124M)", choices=list(GPT2_SIZES), help="the model (quoted)")
    add("--emb-dim", type=COUNT, help="override the size's width")
    add("--n-layers", type=COUNT, help="override the size's depth")
    add("--n-heads", type=COUNT, help="override the size's heads")
    add("--context", type=COUNT, default=256, help="tokens the model reads")
    add("--drop-rate", type=RATE, default=0.1, help="dropout")
    add("--batch", type=COUNT, default=8, help="sequences per process per micro-batch")
    add("--grad-accum", type=COUNT, default=1, help="micro-batches per step")
    add("--steps", type=COUNT, default=1000, help="steps of the whole run")
    add("--lr", type=POSITIVE, default=6e-4, help="peak learning rate")
    add("--min-lr", type=NON_NEGATIVE_FLOAT, default=6e-5, help="learning rate at the last step")
    add("--warmup-steps", type=NON_NEGATIVE, default=100, help="linear warmup, then clipping")
    add("--weight-decay", type=NON_NEGATIVE_FLOAT, default=0.1, help="AdamW's")
    add("--max-grad-norm", type=POSITIVE, default=1.0, help="clipping")
    add("--val-fraction", type=number_arg(float, 0, 1, open_low=True, open_high=True),
        default=0.1, help="the last share of the tokens, held out for validation")
    add("--eval-every", type=COUNT, default=100, help="steps between evaluations (OUT/log.jsonl)")
    add("--eval-batches", type=COUNT, default=10, help="batches per evaluation")
    add("--checkpoint-every", type=COUNT, default=500, help="steps between saves (and at the end)")
    # the windows' seeds are seed * 1_000_003 + step, and torch's seeds end at 2**64
    add("--seed", type=number_arg(int, 0, 2**32, open_high=True), default=123,
        help="the model's initial weights and the data's windows; --generate's sampling")
    add("--resume", action="store_true", help="continue OUT/checkpoint.pt; a flag left out "
        "takes the run's value, not the default shown here")
    add("--overwrite", action="store_true", help="start afresh in an OUT holding a run (deleted "
        "once the new run trains a step), or replace an --export; never deletes other files")
    add("--stop-after", type=NON_NEGATIVE, help="stop after this step, checkpointed")
    add("--fast", action="store_true", help="SDPA attention, fused AdamW, tied embeddings (not "
        "the book's model: 38.6 M fewer parameters at GPT-2 small) and, where the processor "
        "multiplies bf16 natively (CUDA 8.0+, AMX or AVX512_BF16 on Linux), bf16 autocast")
    add("--compile", action="store_true", help="torch.compile the model")
    add("--join-timeout", type=POSITIVE, default=300, help="seconds to wait for torchrun's others")
    add("--quiet", action="store_true",
        help="no progress bar (the evaluation lines and the rest are printed)")
    add("--release-freed-memory", action="store_true", help="let glibc return freed memory")
    use = parser.add_argument_group("using a run's model (with --out alone, no training)")
    use.add_argument("--generate", metavar="PROMPT", type=prompt_arg,
                     help="print a continuation of PROMPT")
    use.add_argument("--new-tokens", type=COUNT, default=50, help="tokens --generate adds")
    use.add_argument("--temperature", type=NON_NEGATIVE_FLOAT, default=0.8, help="0: greedy")
    use.add_argument("--top-k", type=COUNT, default=40, help="sample from the k likeliest tokens")
    use.add_argument("--export", type=path_arg, metavar="FOLDER", help="write the model for "
                     "transformers (save_gpt2_safetensors) into a new FOLDER or an earlier export")
    return parser


def prompt_arg(text: str) -> str:
    """--generate's PROMPT: an empty one gives the model nothing to continue."""
    check(text.strip(), "an empty prompt", argparse.ArgumentTypeError)
    return text


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, checked: UsageError, naming the flag, before any work starts."""
    args, given, problems = make_parser().parse_args(argv), given_flags(make_parser(), argv), []
    if args.generate is not None or args.export is not None:
        if others := sorted(given - USING_A_RUN - ({"overwrite"} if args.export else set())):
            problems.append(f"--generate and --export use the run in --out and train nothing: "
                            f"leave out {', '.join(flag(dest) for dest in others)}")
    elif args.data is None:
        problems.append("--data is required to train (--generate and --export need only --out)")
    elif not args.data.is_dir():
        problems.append(f"--data {args.data} is not a folder")
    else:
        try:  # the checks that need no reading; the text's are tokenize_folder's
            text_files(args.data)
        except (FileNotFoundError, ValueError) as error:
            problems.append(f"--data {error}")
    if args.generate is None and args.export is None:
        problems += training_problems(args, given)
    check(not problems, lambda: "; ".join(problems), UsageError)
    return args


def training_problems(args: argparse.Namespace, given: set[str]) -> list[str]:
    """The training flags' problems; with --resume, args takes the run's settings."""
    problems = run_folder_problems(args.out, args.data, args.resume, args.overwrite)
    if args.resume and not problems:
        problems += take_run_settings(args, given, int(os.environ.get("WORLD_SIZE", "1")))
    if args.min_lr > args.lr:
        problems.append(f"--min-lr {args.min_lr} is above --lr {args.lr}")
    if args.warmup_steps > args.steps:
        problems.append(f"--warmup-steps {args.warmup_steps} is longer than --steps {args.steps}")
    if args.stop_after is not None and args.stop_after >= args.steps:
        problems.append(f"--stop-after {args.stop_after} is not before the last step "
                        f"({args.steps - 1})")
    return problems


def flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")  # --stop-after, from args.stop_after


def read_checkpoint(path: Path) -> dict:
    """A checkpoint's dict, its tensors memory-mapped (read only where used)."""
    return read_torch_file(path, mmap=True)


def take_run_settings(args: argparse.Namespace, given: set[str], world_size: int) -> list[str]:
    """Set args to the run's settings where the command line leaves them out; the problems."""
    state = read_checkpoint(args.out / "checkpoint.pt")
    config, training = state["config"], state.get("training") or {}
    settings = {**{name: config.get(name) for name in ("emb_dim", "n_layers", "n_heads")},
                "context": config.get("context_length"), "drop_rate": config.get("drop_rate"),
                "fast": bool(config.get("tie_weights")), **(state.get("cadence") or {}),
                **{name: state.get(name) for name in ("seed", "val_fraction", "steps")},
                **{name: training.get(name) for name in TRAINING}}
    if isinstance(training.get("batch_x_processes"), int):
        settings["batch"] = training["batch_x_processes"] / world_size
    settings = {dest: value for dest, value in settings.items() if value is not None}
    differ = [f"--batch {args.batch} on {world_size} process(es) makes "
              f"{args.batch * world_size} sequences a step, the run's {round(value * world_size)}"
              if dest == "batch" else "--fast: the run was trained without it" if dest == "fast"
              else f"{flag(dest)} {getattr(args, dest)} differs from the run's {value}"
              for dest, value in settings.items()
              if dest in given and dest not in RESUME_MAY_CHANGE and getattr(args, dest) != value]
    if "size" in given:  # a size's dimensions that no flag overrides
        differ += [f'--size "{args.size}" has {flag(dest)} {value}, the run\'s {settings[dest]}'
                   for dest, value in GPT2_SIZES[args.size].items()
                   if dest not in given and settings.get(dest) not in (None, value)]
    if differ:
        return [f"--resume continues the run in {args.out} with its own settings: "
                f"{'; '.join(differ)} (leave the flag out, or choose another --out)"]
    if (batch := settings.get("batch")) is not None and batch != int(batch):
        return [f"the run's {round(batch * world_size)} sequences a step do not split among "
                f"{world_size} processes"]
    for dest, value in settings.items():
        if dest not in given:
            setattr(args, dest, int(value) if dest == "batch" else value)
    return []


# Processes --------------------------------------------------------------------------------------

@dataclass
class Process:
    """Where this process runs and which share of the work is its own."""
    device: torch.device
    rank: int = 0
    world_size: int = 1
    main = property(lambda self: self.rank == 0)


def set_up_process(join_timeout: float = 300) -> Process:
    """The device (shared.get_device); under torchrun, the process group and a GPU per process."""
    device, torchrun = get_device(), "RANK" in os.environ
    # one GPU named: each process would take its local rank's instead, silently
    one_gpu = torchrun and device.type == "cuda" and device.index is not None
    check(not one_gpu, f"LLM_COURSE_DEVICE={device}: give cuda under torchrun", UsageError)
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", device.index or 0)))
        torch.cuda.set_device(device)
    elif device.type == "mps" and torchrun:
        device = torch.device("cpu")
        if os.environ["RANK"] == "0":
            print("pretrain.py: torch.distributed cannot exchange tensors on a Mac's GPU (MPS): "
                  "the processes train on the CPU (one, without torchrun, uses the GPU)",
                  file=sys.stderr)
    if not torchrun:
        return Process(device)
    join_process_group(process_group_backend(device), join_timeout)
    return Process(device, dist.get_rank(), dist.get_world_size())


def join_process_group(backend: str, timeout: float) -> None:
    """init_process_group, saying first what it waits for, and giving up (TimeoutError) after
    `timeout` s, not torch's silent 30 minutes; the collectives keep torch's timeout."""
    env = os.environ.get
    waits = (f"rank {env('RANK')} of {env('WORLD_SIZE')} waits for the others at "
             f"{env('MASTER_ADDR')}:{env('MASTER_PORT')}, at most {timeout:g} s (--join-timeout)")
    hint = "" if env("TORCHELASTIC_RUN_ID") else ("; started without torchrun, its variables "
        "left set? unset RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT to train in one process")
    print(f"pretrain.py: {waits}{hint}", file=sys.stderr, flush=True)
    joining = dist.rendezvous("env://", timeout=timedelta(seconds=timeout))  # a generator
    try:
        store, rank, world_size = next(joining)
    except dist.DistError as error:
        raise TimeoutError(f"{waits}: they did not all come ({error}){hint}") from None
    store.set_timeout(dist.default_pg_timeout)  # for the collectives, as init_process_group's
    dist.init_process_group(backend, store=store, rank=rank, world_size=world_size)


def process_group_backend(device: torch.device) -> str:
    """nccl between CUDA GPUs where PyTorch has it (Windows builds have none); else gloo."""
    return "nccl" if device.type == "cuda" and dist.is_nccl_available() else "gloo"


# Training ---------------------------------------------------------------------------------------

def load_tokens(args: argparse.Namespace, process: Process) -> tuple[np.ndarray, np.ndarray]:
    """The training and validation tokens; one process tokenises, the others wait."""
    if process.main:
        tokenize_folder(args.data, args.out / "tokens.bin")
    if dist.is_initialized():
        dist.barrier()
    tokens = tokenize_folder(args.data, args.out / "tokens.bin")
    split = int(len(tokens) * (1 - args.val_fraction))
    for name, part in (("training", tokens[:split]), ("validation", tokens[split:])):
        # else torch.randint would fail in the first step or evaluation, naming neither
        check(len(part) > args.context + 1, f"the {name} split has {len(part):,} tokens, too "
              f"few for one window of --context {args.context} + 1: add text or change --context")
    return tokens[:split], tokens[split:]


def build(args: argparse.Namespace, process: Process) -> tuple[GPTModel, torch.optim.Optimizer]:
    """The model (the same initial weights in every process; its config is model.cfg), AdamW."""
    overrides = {k: v for k, v in {"emb_dim": args.emb_dim, "n_layers": args.n_layers,
                                   "n_heads": args.n_heads}.items() if v is not None}
    cfg = gpt2_config(args.size, context_length=args.context, drop_rate=args.drop_rate,
                      tie_weights=args.fast, sdpa=args.fast, **overrides)
    torch.manual_seed(args.seed)
    model = GPTModel(cfg).to(process.device)
    fused = args.fast and process.device.type in ("cuda", "mps", "cpu")  # torch's fused kernels
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr,
                                  weight_decay=args.weight_decay, fused=fused or None)
    return model, optimizer


def resume(checkpoint_path: Path, model: GPTModel, optimizer: torch.optim.Optimizer,
           process: Process, expect: dict | None = None, steps: int | None = None) -> int:
    """Load the checkpoint into model and optimizer (untouched if refused: ValueError); the
    first step to run. Each process continues its random streams (new dropout masks only if
    the number of processes or the kind of device changed)."""
    def own_generators(state):  # this process's generator states; None: none to continue
        states = state.get("rng_states")
        if isinstance(states, list) and len(states) == process.world_size:
            mine = states[process.rank]  # an earlier pretrain.py kept the CPU's state alone
            return {"torch_rng": mine} if isinstance(mine, torch.Tensor) else mine

    state = load_checkpoint(checkpoint_path, model, optimizer, restore_rng=False,
                            expect={"config": model.cfg, **(expect or {})})
    if steps is not None and state.get("steps", steps) != steps and process.main:
        print(f"resuming with --steps {steps}, not the {state['steps']} this run began with: "
              "the learning-rate schedule is computed for the new length", file=sys.stderr)
    mine, device, saved_on = own_generators(state), process.device.type, state.get("device")
    if mine is None and process.main:
        print(f"resuming on {process.world_size} processes, not {len(state['rng_states'])}: "
              "same data, new dropout masks", file=sys.stderr)
    elif mine is not None:
        restore_generators(mine)  # those this machine has
        if process.main and saved_on != device and (saved_on or device != "cpu"):
            where = f"on {saved_on}" if saved_on else "by an earlier pretrain.py, without GPU state"
            print(f"resuming on {device}; the checkpoint was saved {where}, whose dropout drew "
                  "from another generator: same data, new dropout masks", file=sys.stderr)
    return state["step"] + 1


LONG_CPU_RUN = 3600  # seconds: an estimate above it on a CPU is said, once


def long_run_warning(seconds_per_step: float, steps_left: int) -> str | None:
    if (estimate := seconds_per_step * steps_left) > LONG_CPU_RUN:
        return (f"pretrain.py: at {seconds_per_step:.2g} s a step, the {steps_left:,} steps "
                f"left take about {estimate / 3600:.1f} h on this CPU. A model that trains in "
                "minutes there, in a new --out: --emb-dim 128 --n-layers 2 --n-heads 4 "
                "--context 64 (or a GPU)")


def run(args: argparse.Namespace, process: Process, model: GPTModel,
        optimizer: torch.optim.Optimizer, tokens: tuple[np.ndarray, np.ndarray],
        start_step: int, signals: StopSignals, folder: RunFolder) -> None:
    """Train to the last step, checkpointing; a signal stops it after a checkpoint."""
    (train_tokens, val_tokens), world_size, rank = tokens, process.world_size, process.rank
    last_step = args.steps - 1 if args.stop_after is None else args.stop_after
    checkpoint_path, remaining = args.out / "checkpoint.pt", last_step + 1 - start_step
    if args.compile:
        model.compile()
    replica = DistributedDataParallel(model) if dist.is_initialized() else model  # syncs weights
    train_loader = RandomWindows(train_tokens, args.context, args.batch,
                                 remaining * args.grad_accum, args.seed,
                                 start_step * args.grad_accum, rank, world_size)
    val_loader = RandomWindows(val_tokens, args.context, args.batch, args.eval_batches,
                               args.seed + 1)  # the same validation windows in every process
    # The training loss is estimated on the run's first training windows, whatever step this
    # part of the run starts at: train_model's own estimate reads the first batches of the
    # loader it trains on, which a resume starts later, so a resumed run would log other numbers
    train_windows = RandomWindows(train_tokens, args.context, args.batch, args.eval_batches,
                                  args.seed, 0, rank, world_size)
    step_ends = []  # when the first steps ended, for the CPU's estimate

    def after_step(step, *_):
        if evaluated := step % args.eval_every == 0:
            train_loss, val_loss = evaluate_model(replica, train_windows, val_loader,
                                                  process.device, args.eval_batches)
        folder.trained_a_step()  # with --overwrite, the old run's files go now
        if evaluated and process.main:
            with (args.out / "log.jsonl").open("a") as log:
                log.write(json.dumps({"step": step, "train_loss": train_loss,
                                      "val_loss": val_loss, "time": time.time()}) + "\n")
            # windows are drawn at random, not read in passes: a step, not an epoch, says how far
            line = f"Step {step:06d}: Train loss {train_loss:.3f}, Val loss {val_loss:.3f}"
            if args.quiet:
                print(line, flush=True)
            else:
                tqdm.write(line)  # above the progress bar
        if process.main and process.device.type == "cpu" and len(step_ends) < 2:
            step_ends.append(time.perf_counter())  # the first step also warms up: timed apart
            if len(step_ends) == 2 and (warning := long_run_warning(
                    step_ends[1] - step_ends[0], last_step - step)):
                tqdm.write(warning, file=sys.stderr)
        signum = signals.requested_anywhere(process.device)  # under torchrun, in any process
        if (step + 1) % args.checkpoint_every == 0 or step == last_step or signum:
            folder.saving(step, model)  # nan or infinite weights: stopped, not saved
            rng_states = [generator_states()]  # the CPU's generator, and the GPUs'
            if dist.is_initialized():
                rng_states = [None] * world_size
                dist.all_gather_object(rng_states, generator_states())
            if process.main:
                save_checkpoint(checkpoint_path, model, optimizer, step=step, config=model.cfg,
                                rng_states=rng_states, device=process.device.type,
                                **run_settings(args, world_size), steps=args.steps,
                                cadence={name: getattr(args, name) for name
                                         in ("eval_every", "eval_batches", "checkpoint_every")})
        if signum and step < last_step:
            signals.stop(step, checkpoint_path)

    bf16 = args.fast and supports_fast_bf16(process.device)
    if process.main:
        products = f"; products in {'bfloat16' if bf16 else 'float32'}" if args.fast else ""
        print(f"{world_size} process(es) on {process.device.type}; {len(train_tokens):,} training "
              f"and {len(val_tokens):,} validation tokens; steps {start_step}..{last_step}; "
              f"{args.batch * world_size * args.grad_accum} sequences of {args.context} per step"
              f"{products}", flush=True)
    start = time.perf_counter()
    signals.deferring = True
    with folder.stopping_on_nan():  # a --resume would repeat the same steps
        train_model(
            replica, train_loader, val_loader, optimizer, process.device, n_epochs=1,
            eval_freq=None, eval_iter=args.eval_batches, start_context=None,  # after_step's
            tokenizer=None, warmup_steps=args.warmup_steps, start_step=start_step,
            grad_accum_steps=args.grad_accum,  # the schedule spans the whole run, not this part
            lr_schedule=cosine_schedule(args.lr, args.steps, args.warmup_steps, 0.0, args.min_lr),
            max_grad_norm=args.max_grad_norm, progress=process.main and not args.quiet,
            autocast_dtype=torch.bfloat16 if bf16 else None, after_step=after_step)
    seconds, digest = time.perf_counter() - start, hashlib.sha256()
    for tensor in model.state_dict().values():
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    (args.out / f"weights-rank{rank}.sha256").write_text(digest.hexdigest() + "\n")
    if process.main:
        trained = remaining * args.batch * world_size * args.grad_accum * args.context
        script = min(os.path.relpath(__file__), os.path.abspath(__file__), key=len)  # to type
        print(f"{trained:,} tokens in {seconds:.1f} s: {trained / max(seconds, 1e-9):,.0f} "
              f"tokens/s\nthe model after step {last_step}: {checkpoint_path}. Generate from "
              f"it with\n  python {script} --out {args.out} --generate \"Every effort moves "
              f"you\"\nor in Python: from ch05_pretraining.pretrain import load_run; "
              f"model = load_run({str(args.out)!r})", flush=True)


def run_settings(args: argparse.Namespace, world_size: int) -> dict:
    """What decides the weights besides the model: a checkpoint records it, a resume repeats it."""
    tokens = json.loads((args.out / "tokens.json").read_text())  # tokenize_folder's manifest
    return {"seed": args.seed, "data_sha256": tokens["sha256"], "val_fraction": args.val_fraction,
            "training": {"batch_x_processes": args.batch * world_size,
                         **{name: getattr(args, name) for name in TRAINING}}}


def main(argv: list[str] | None = None) -> None:
    """Pretrain, generate or export as the command line says."""
    args = parse_args(argv)
    if args.generate is not None or args.export is not None:
        return use_run(args)
    if not args.release_freed_memory:
        keep_freed_memory()  # fewer page faults per step (README, "Speed and scale")
    process = set_up_process(args.join_timeout)
    folder = RunFolder(args.out, args.resume, args.overwrite)
    try:  # until folder.begin, an error (bad text, too few tokens) leaves --out as it was
        with folder.claim(process.rank), StopSignals() as signals:
            tokens = load_tokens(args, process)
            model, optimizer = build(args, process)
            start_step = 0 if not args.resume else resume(
                args.out / "checkpoint.pt", model, optimizer, process, steps=args.steps,
                expect=run_settings(args, process.world_size))
            last = args.steps - 1 if args.stop_after is None else args.stop_after
            # else it would save and report as if it had trained
            check(start_step <= last, f"checkpoint at step {start_step - 1}: nothing left to train")
            folder.begin(start_step)
            run(args, process, model, optimizer, tokens, start_step, signals, folder)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def load_run(out: str | Path, device: str | torch.device = "cpu") -> GPTModel:
    """The model of the run in `out` (its folder, or its checkpoint.pt) on `device`, in eval
    mode; the caller's random numbers stay as they were."""
    path = Path(out)
    path = path if path.is_file() else path / "checkpoint.pt"  # none there: FileNotFoundError
    with torch.random.fork_rng(devices=[]):  # GPTModel draws initial weights, then replaced
        model = GPTModel(read_checkpoint(path)["config"])
    load_checkpoint(path, model, restore_rng=False)
    return model.to(device).eval()


def use_run(args: argparse.Namespace) -> None:
    """--export and --generate: the run's model for transformers, or a prompt's continuation."""
    if args.export:
        check_export_folder(args.export, args.out)  # --overwrite: an export alone
    model = load_run(args.out, get_device())
    if args.export:
        try:
            save_gpt2_safetensors(model, args.export, replace=args.overwrite)
        except FileExistsError as error:  # its words are Python's: replace=True
            raise FileExistsError(str(error).replace("pass replace=True", "add --overwrite")
                                  ) from None
        print(f"wrote {args.export / 'model.safetensors'} and config.json: transformers."
              f"GPT2LMHeadModel.from_pretrained({str(args.export)!r}) reads them", flush=True)
    if args.generate is not None:
        prepare_tiktoken_cache()  # GPT-2's tokenizer files from the data mirror, offline too
        tokenizer = tiktoken.get_encoding("gpt2")
        torch.manual_seed(args.seed)
        ids = text_to_token_ids(args.generate, tokenizer).to(model.pos_emb.weight.device)
        ids = generate(model, ids, args.new_tokens, temperature=args.temperature, top_k=args.top_k)
        print(token_ids_to_text(ids.cpu(), tokenizer), flush=True)


if __name__ == "__main__":
    warnings.formatwarning = lambda message, *_: f"pretrain.py: {message}\n"  # as one line
    try:  # a bad flag: status 2; bad data, checkpoint or folder: 1; Ctrl-C at once: 130
        run_main(main, "pretrain.py")
    except FloatingPointError as error:  # a loss that became nan: status 1, as bad data
        sys.exit(f"pretrain.py: {error}")
    except RunStoppedError as stopped:  # the status a shell gives a signal's end
        print(f"pretrain.py: {stopped}", file=sys.stderr)
        sys.exit(128 + stopped.signum)
