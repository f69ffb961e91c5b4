"""The GPU memory chapter 7's book profile holds, measured on a GPU, notebook by notebook.

    python ch07_instructions/benchmark_gpu_memory.py                  # GPT-2 medium, downloaded
    python ch07_instructions/benchmark_gpu_memory.py --size small
    python ch07_instructions/benchmark_gpu_memory.py --random-weights # no download: same memory
    python ch07_instructions/benchmark_gpu_memory.py --memory-limit 15.5  # as on a smaller card

README.md ("Which profile fits a free T4") quotes what this script measures; test_on_a_gpu.py
counts the same peaks tensor by tensor, and checks that count with PyTorch's MemTracker on fake
tensors. This script runs the notebooks' own steps on a real device, with the book profile's
models and settings, and prints what CUDA's caching allocator reports at the peak of each
stage. Chapter 7 is three notebooks that use the GPU, each run in a fresh kernel, so each
starts here with nothing on the GPU (everything the one before kept is deleted and the
allocator's cache emptied):

* instructions.ipynb, the lesson: 7.5 (`model` and `base_model`), 7.6 (finetuning), 7.7 (saving
  the weights and loading them into a copy of `base_model`), Solution 7.4 (LoRA on another
  copy), each stage keeping what the lesson keeps alive (`model` keeps its optimizer and
  gradients);
* beyond_1_measuring.ipynb: finetuned_instruction_run (`base_model`, and the lesson's saved
  weights loaded into a copy of it), then 7.6.1's masked run, which stays;
* beyond_3_dpo.ipynb: the same loading, then 7.10 (the policy a copy of the finetuned model,
  the reference the finetuned model itself; `run` keeps `base_model`).

Only the batches are fewer: each training stage runs three steps, the second on the longest
batch of the book's split. (A step of AdamW peaks in its update, with the batch's activations
gone; a DPO step peaks at the end of its forward pass, with the activations and the previous
step's gradients and averages, so its longest batch comes after a first step.)
beyond_2_judge.ipynb puts nothing on the GPU but Ollama's judge, which is not PyTorch's.

The weights' values change no memory figure, so --random-weights builds the model load_gpt2
builds, with random values, and downloads nothing. --memory-limit caps what PyTorch may take of
the GPU, to see where a smaller card runs out of memory (a notebook that runs out does not stop
the next one). It needs a CUDA GPU.
"""

from __future__ import annotations

import copy
import gc
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
)
from shared import (
    train_model_simple_hooked as train_model_simple,
)
from shared.tooling.command_line import CommandParser, number_arg, run_main


GB = 1e9  # as the README states memory, and as GPU makers do
SIZES = {"medium": "gpt2-medium (355M)", "small": "gpt2-small (124M)"}
# Each notebook's stages, in the order it runs them
NOTEBOOKS = {
    "instructions": ["7.5: model and base_model", "7.6: finetuning", "7.7: saving, reloading",
                     "Solution 7.4: LoRA"],
    "beyond_1_measuring": ["loading the lesson's model", "7.6.1: the masked run"],
    "beyond_3_dpo": ["loading the lesson's model", "7.10: a DPO step"],
}
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

    def gpt2_as_loaded():  # on the CPU, as load_gpt2 returns it
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
    masked = InstructionDataset(train_data, tokenizer, mask_instruction=True)
    val_texts = InstructionDataset(val_data, tokenizer).encoded_texts
    preferences = json.loads(fetch("instruction-data-with-preference").read_text(encoding="utf-8"))
    pref_train, pref_val, _ = split_instruction_data(preferences, seed=None)
    pref_collate = partial(preference_collate_fn, allowed_max_length=BOOK["context_length"],
                           device=device)
    pairs = PreferenceDataset(pref_train, tokenizer, keep_identical=True).items
    pref_val_items = PreferenceDataset(pref_val[:2 * BOOK["batch_size"]], tokenizer,
                                       keep_identical=True).items
    longest = {"text": max(map(len, texts)),
               "chosen": max(len(pair["chosen"][0]) for pair in pairs),
               "rejected": max(len(pair["rejected"][0]) for pair in pairs)}
    print(f"GPT-2 {args.size}; the longest sequences: {longest} tokens, 8 to a batch")

    def adamw(model, **settings):
        return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], **settings)

    def batches():  # made in each notebook, on the device, as its loaders make them
        return {"train": longest_second(texts, collate, BOOK["batch_size"],
                                        lambda i: len(texts[i])),
                "masked": longest_second([masked[i] for i in range(len(masked))], collate,
                                         BOOK["batch_size"],
                                         lambda i: len(masked.encoded_texts[i])),
                "val": [collate(val_texts[i:i + BOOK["batch_size"]])
                        for i in range(0, 5 * BOOK["batch_size"], BOOK["batch_size"])]}

    def train(model, train_batches, val_batches):  # train_model, as 7.6.1 calls it
        optimizer = adamw(model, lr=BOOK["lr"], weight_decay=BOOK["weight_decay"])
        train_model(model, train_batches, val_batches, optimizer, device, n_epochs=1,
                    eval_freq=None, eval_iter=1, start_context=None, tokenizer=tokenizer,
                    warmup_steps=0, lr_schedule=lambda step: BOOK["lr"], max_grad_norm=None,
                    progress=False)
        return optimizer

    def lesson(stage, saved):
        data = batches()
        model = gpt2_as_loaded().to(device)  # 7.5
        base_model = copy.deepcopy(model).eval()
        stage()
        set_seed(123)  # 7.6: train_model_simple, as the lesson calls it
        optimizer = adamw(model, lr=BOOK["lr"], weight_decay=BOOK["weight_decay"])  # noqa: F841
        train_model_simple(model, data["train"], data["val"], optimizer, device, num_epochs=1,
                           eval_freq=1, eval_iter=2, start_context=None, tokenizer=tokenizer)
        stage()
        torch.save(model.state_dict(), saved)  # 7.7: saved, and loaded into a copy of base_model
        reloaded = copy.deepcopy(base_model)
        reloaded.load_state_dict(torch.load(saved, map_location=device, weights_only=True))
        stage()
        lora_model = copy.deepcopy(base_model).requires_grad_(False)  # Solution 7.4
        set_seed(123)
        replace_linear_with_lora(lora_model, rank=8, alpha=16)
        lora_optimizer = adamw(lora_model, lr=BOOK["lr"], weight_decay=BOOK["weight_decay"])
        lora_model.train()
        for inputs, targets in data["train"]:
            loss = torch.nn.functional.cross_entropy(lora_model(inputs).flatten(0, 1),
                                                     targets.flatten())
            lora_optimizer.zero_grad()
            loss.backward()
            lora_optimizer.step()
        stage()

    def finetuned_instruction_run(saved):  # the companions' loading, of the lesson's file
        base_model = gpt2_as_loaded().to(device).eval()
        model = copy.deepcopy(base_model)
        model.load_state_dict(torch.load(saved, map_location=device, weights_only=True))
        return base_model, model.eval()

    def measuring(stage, saved):
        base_model, model = finetuned_instruction_run(saved)  # noqa: F841 (kept, as there)
        data = batches()
        stage()
        masked_model = copy.deepcopy(base_model)  # 7.6.1: the masked run, which stays
        masked_optimizer = train(masked_model, data["masked"], data["val"])  # noqa: F841
        stage()

    def dpo(stage, saved):
        base_model, model = finetuned_instruction_run(saved)  # noqa: F841 (`run` keeps both)
        pref_batches = longest_second(pairs, pref_collate, BOOK["batch_size"],
                                      lambda i: len(pairs[i]["chosen"][0]),
                                      lambda i: len(pairs[i]["rejected"][0]))
        pref_val_batches = [pref_collate(pref_val_items[i:i + BOOK["batch_size"]])
                            for i in (0, BOOK["batch_size"])]
        stage()
        policy = copy.deepcopy(model)
        reference = model.eval().requires_grad_(False)
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

    peaks = {}
    with tempfile.TemporaryDirectory() as folder:
        saved = Path(folder) / "gpt-instruction-finetuned.pth"  # the lesson's section 7.7 file
        for notebook, run in [("instructions", lesson), ("beyond_1_measuring", measuring),
                              ("beyond_3_dpo", dpo)]:
            if not saved.exists():  # the lesson ran out of memory before saving: its weights
                torch.save(gpt2_as_loaded().state_dict(), saved)  # take the same room
            # a fresh kernel: nothing of the notebook before on the GPU
            gc.collect()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            # what is left is cuBLAS's workspace, which a fresh kernel makes at its first product
            left = torch.cuda.memory_allocated() / GB
            assert left < 0.1, f"{left:.2f} GB of the notebook before is left"
            print(f"{notebook}: {left:.3f} GB left on the GPU before it")
            stages = NOTEBOOKS[notebook]

            def stage(notebook=notebook, stages=stages):  # the next stage's peak, and what
                # it leaves alive for the one after
                peaks[notebook, stages[sum(key[0] == notebook for key in peaks)]] = (
                    torch.cuda.max_memory_allocated() / GB, torch.cuda.memory_allocated() / GB,
                    torch.cuda.max_memory_reserved() / GB)
                torch.cuda.reset_peak_memory_stats()

            try:
                run(stage, saved)
            except torch.OutOfMemoryError:  # a card too small: say where it ran out
                where = stages[sum(key[0] == notebook for key in peaks)]
                print(f"{notebook}: out of memory in {where}"
                      + (f", under the limit of {args.memory_limit} GB" if args.memory_limit
                         else ""))

    # reserved: what the caching allocator took from the GPU, its tensors and the free blocks it
    # keeps for reuse; the GPU must hold that, plus CUDA's context
    print(f"{'notebook':19} {'stage':27} {'peak, GB':>9} {'held after':>11} {'reserved':>9}")
    for (notebook, name), (peak, held, reserved) in peaks.items():
        print(f"{notebook:19} {name:27} {peak:9.2f} {held:11.2f} {reserved:9.2f}")
    return 0


if __name__ == "__main__":
    run_main(main)
