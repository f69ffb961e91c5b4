"""The GPU memory chapter 7's book profile holds, measured on a GPU, stage by stage.

    python ch07_instructions/benchmark_gpu_memory.py                  # GPT-2 medium, downloaded
    python ch07_instructions/benchmark_gpu_memory.py --size small
    python ch07_instructions/benchmark_gpu_memory.py --random-weights # no download: same memory
    python ch07_instructions/benchmark_gpu_memory.py --memory-limit 15.5  # as on a smaller card

README.md ("Which profile fits a free T4") quotes what this script measures; test_on_a_gpu.py
counts the same peaks tensor by tensor, and checks that count with PyTorch's MemTracker on fake
tensors. This script runs the notebook's own steps on a real device, with the book profile's
models and settings, and prints what CUDA's caching allocator reports at the peak of each
stage: sections 7.6, 7.6.1, 7.7, 7.10 and Solution 7.4. Each stage keeps what the notebook
keeps alive at that point (`base_model`, earlier models, their optimizers and gradients). Only
the batches are fewer: each training stage runs three steps, the second on the longest batch of
the book's split. (A step of AdamW peaks in its update, with the batch's activations gone; a
DPO step peaks at the end of its forward pass, with the activations and the previous step's
gradients and averages, so its longest batch comes after a first step.)

The weights' values change no memory figure, so --random-weights builds the model load_gpt2
builds, with random values, and downloads nothing. --memory-limit caps what PyTorch may take of
the GPU, to see where a smaller card runs out of memory. It needs a CUDA GPU.
"""

from __future__ import annotations

import copy
import itertools
import json
import tempfile
from functools import partial
from pathlib import Path

import tiktoken
import torch

from ch07_instructions.dpo import (
    PreferenceDataset,
    dpo_loss_batch,
    evaluate_preferences,
    preference_collate_fn,
)
from ch07_instructions.instructions import (
    InstructionDataset,
    custom_collate_fn,
    load_instruction_data,
    split_instruction_data,
)
from shared import (
    GPTModel,
    fetch,
    gpt2_config,
    load_gpt2,
    replace_linear_with_lora,
    set_seed,
    train_model,
    train_model_simple,
)
from shared.command_line import CommandParser, number_arg, run_main


GB = 1e9  # as the README states memory, and as GPU makers do
SIZES = {"medium": "gpt2-medium (355M)", "small": "gpt2-small (124M)"}
# The notebook's stages, in the order main runs them and records their peaks
STAGES = ["7.5: model and base_model", "7.6: finetuning", "7.6.1: two more runs",
          "7.7: reloading", "7.10: DPO", "Solution 7.4: LoRA"]
BOOK = {"lr": 5e-5, "weight_decay": 0.1, "batch_size": 8, "context_length": 1024}


def longest_second(items, collate, batch_size, *lengths):
    """Three batches of `items`, the second of the longest ones: it takes the longest item by
    each of the `lengths` functions in turn."""
    orders = [sorted(range(len(items)), key=length, reverse=True) for length in lengths]
    first = []
    for index in itertools.chain.from_iterable(zip(*orders)):
        if len(first) < batch_size and index not in first:
            first.append(index)
    rest = [i for i in orders[0] if i not in first]
    batches = [rest[-batch_size:], first, rest[:batch_size]]
    return [collate([items[i] for i in batch]) for batch in batches]


def main() -> int:
    parser = CommandParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", choices=SIZES, default="medium")
    parser.add_argument("--memory-limit", type=number_arg(float, low=0), metavar="GB",
                        help="let PyTorch use at most this much of the GPU, as a smaller card")
    parser.add_argument("--random-weights", action="store_true",
                        help="random values in load_gpt2's model: the same memory, no download")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        parser.error("this measures CUDA's allocator: it needs an NVIDIA GPU")
    device = torch.device("cuda")

    def model_as_the_notebook_loads_it():
        if args.random_weights:
            return GPTModel({**gpt2_config(SIZES[args.size]), "qkv_bias": True, "drop_rate": 0.0})
        return load_gpt2(SIZES[args.size], drop_rate=0.0)

    torch.zeros(1, device=device)  # CUDA's context
    if args.memory_limit is not None:
        total = torch.cuda.mem_get_info()[1]
        if not 0 < args.memory_limit * GB <= total:
            parser.error(f"--memory-limit must be above 0 and at most this GPU's "
                         f"{total / GB:.1f} GB, got {args.memory_limit}")
        torch.cuda.set_per_process_memory_fraction(args.memory_limit * GB / total)
    free, total = torch.cuda.mem_get_info()
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}: {total / GB:.1f} GB in "
          f"all, {(total - free - torch.cuda.memory_reserved()) / GB:.2f} GB taken before "
          f"any tensor (CUDA's context)")

    tokenizer = tiktoken.get_encoding("gpt2")
    train_data, val_data, _ = split_instruction_data(load_instruction_data(), seed=None)
    collate = partial(custom_collate_fn, allowed_max_length=BOOK["context_length"], device=device)
    texts = InstructionDataset(train_data, tokenizer).encoded_texts
    train_batches = longest_second(texts, collate, BOOK["batch_size"], lambda i: len(texts[i]))
    masked = InstructionDataset(train_data, tokenizer, mask_instruction=True)
    masked_batches = longest_second([masked[i] for i in range(len(masked))], collate,
                                   BOOK["batch_size"], lambda i: len(masked.encoded_texts[i]))
    val_texts = InstructionDataset(val_data, tokenizer).encoded_texts
    val_batches = [collate(val_texts[i:i + BOOK["batch_size"]])
                   for i in range(0, 5 * BOOK["batch_size"], BOOK["batch_size"])]
    preferences = json.loads(fetch("instruction-data-with-preference").read_text(encoding="utf-8"))
    pref_train, pref_val, _ = split_instruction_data(preferences, seed=None)
    pref_collate = partial(preference_collate_fn, allowed_max_length=BOOK["context_length"],
                           device=device)
    pairs = PreferenceDataset(pref_train, tokenizer, keep_identical=True).items
    pref_batches = longest_second(pairs, pref_collate, BOOK["batch_size"],
                                  lambda i: len(pairs[i]["chosen"][0]),
                                  lambda i: len(pairs[i]["rejected"][0]))
    pref_val_items = PreferenceDataset(pref_val[:2 * BOOK["batch_size"]], tokenizer,
                                       keep_identical=True).items
    pref_val_batches = [pref_collate(pref_val_items[i:i + BOOK["batch_size"]])
                        for i in (0, BOOK["batch_size"])]
    longest = {"text": train_batches[1][0].shape[1],
               "chosen": pref_batches[1]["chosen"][0].shape[1],
               "rejected": pref_batches[1]["rejected"][0].shape[1]}
    print(f"GPT-2 {args.size}; the longest batches: {longest} tokens, 8 sequences each")

    peaks = {}

    def stage():  # the next stage's peak, and what it leaves alive for the one after
        peaks[STAGES[len(peaks)]] = (torch.cuda.max_memory_allocated() / GB,
                                     torch.cuda.memory_allocated() / GB,
                                     torch.cuda.max_memory_reserved() / GB)
        torch.cuda.reset_peak_memory_stats()

    def adamw(model, **settings):
        return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], **settings)

    try:
        # 7.5: the model and its copy before finetuning
        model = model_as_the_notebook_loads_it().to(device)
        base_model = copy.deepcopy(model).eval()
        stage()
        # 7.6: train_model_simple, as the notebook calls it
        set_seed(123)
        optimizer = adamw(model, lr=BOOK["lr"], weight_decay=BOOK["weight_decay"])
        train_model_simple(model, train_batches, val_batches, optimizer, device, num_epochs=1,
                           eval_freq=1, eval_iter=2, start_context=None, tokenizer=tokenizer)
        stage()
        # 7.6.1: a rerun from base_model, deleted after it, then the masked run, which stays;
        # `model` keeps its optimizer and gradients all the while
        def train(trained, batches):
            trained_optimizer = adamw(trained, lr=BOOK["lr"], weight_decay=BOOK["weight_decay"])
            train_model(trained, batches, val_batches, trained_optimizer, device, n_epochs=1,
                        eval_freq=None, eval_iter=1, start_context=None, tokenizer=tokenizer,
                        warmup_steps=0, lr_schedule=lambda step: BOOK["lr"], max_grad_norm=None,
                        progress=False)
            return trained_optimizer

        rerun = copy.deepcopy(base_model)
        rerun_optimizer = train(rerun, train_batches)
        del rerun, rerun_optimizer
        masked_model = model_as_the_notebook_loads_it().to(device)
        masked_optimizer = train(masked_model, masked_batches)  # noqa: F841 (kept, as there)
        stage()
        # 7.7: the finetuned weights saved and loaded into a copy of base_model
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "finetuned.pth"
            torch.save(model.state_dict(), path)
            reloaded = copy.deepcopy(base_model)
            reloaded.load_state_dict(torch.load(path, map_location=device, weights_only=True))
        stage()
        # 7.10: DPO, the policy a copy of `model`, the reference the reloaded model
        reference = reloaded.eval().requires_grad_(False)
        policy = copy.deepcopy(model)
        evaluate_preferences(pref_val_batches, policy, reference, beta=0.1)
        set_seed(123)
        dpo_optimizer = torch.optim.AdamW(policy.parameters(), lr=5e-6, weight_decay=0.0)
        for batch in pref_batches:
            policy.train()
            loss, _, _ = dpo_loss_batch(batch, policy, reference, beta=0.1)
            dpo_optimizer.zero_grad()
            loss.backward()
            dpo_optimizer.step()
        stage()
        # Solution 7.4: LoRA on a frozen copy of base_model
        lora_model = copy.deepcopy(base_model).requires_grad_(False)
        set_seed(123)
        replace_linear_with_lora(lora_model, rank=8, alpha=16)
        lora_optimizer = adamw(lora_model, lr=BOOK["lr"], weight_decay=BOOK["weight_decay"])
        lora_model.train()
        for inputs, targets in train_batches:
            loss = torch.nn.functional.cross_entropy(lora_model(inputs).flatten(0, 1),
                                                     targets.flatten())
            lora_optimizer.zero_grad()
            loss.backward()
            lora_optimizer.step()
        stage()
    except torch.OutOfMemoryError:  # a card too small: say where it ran out
        print(f"out of memory in {STAGES[len(peaks)]}"
              + (f", under the limit of {args.memory_limit} GB" if args.memory_limit else ""))

    # reserved: what the caching allocator took from the GPU, its tensors and the free blocks it
    # keeps for reuse; the GPU must hold that, plus CUDA's context
    print(f"{'stage of the notebook':28} {'peak, GB':>9} {'held after':>11} {'reserved':>9}")
    for name, (peak, held, reserved) in peaks.items():
        print(f"{name:28} {peak:9.2f} {held:11.2f} {reserved:9.2f}")
    return 0


if __name__ == "__main__":
    run_main(main)
