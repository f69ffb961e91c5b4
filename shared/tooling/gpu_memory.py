"""How much GPU memory the book profile's training steps take: counted, and measured on a GPU.

    python -m shared.tooling.gpu_memory

For each training step of chapters 5-7 in the book profile (the model, batch and tokens of the
notebook's own settings), PyTorch's MemTracker counts the tensors alive at the step's peak:
weights, gradients, AdamW's two averages (with the temporaries of its multi-tensor update, the
default for CUDA tensors), activations kept for the backward pass. The tensors are fake
(FakeTensorMode: shapes and dtypes, no values, no computation), so the count runs in seconds
on a CPU. The count is arithmetic, not a measurement: a real GPU adds CUDA's own context and
its caching allocator's rounding, and a notebook keeps on its device whatever else it holds at
the time (earlier models, their optimizers). On a machine with a CUDA GPU the script also runs
each step there and prints what CUDA's allocator held at its peak ("measured"). README.md,
"Which profile fits a free T4", quotes both.
"""

from __future__ import annotations

import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.distributed._tools.mem_tracker import MemTracker

from shared import GPTModel, gpt2_config


GB = 1e9  # as the README states GPU memory, and as GPU makers do


def run_first_blocks_without_autograd(model: GPTModel, frozen_blocks: int) -> None:
    """Make the model's own forward run its embeddings and first `frozen_blocks` blocks without
    autograd, as frozen layers run (they keep no activations). Their weights keep
    requires_grad: MemTracker hooks every weight a forward uses, and refuses one without it."""
    def autograd_off(*_):
        torch.set_grad_enabled(False)

    def autograd_on(*_):  # returns None: a pre-hook's result would replace the block's input
        torch.set_grad_enabled(True)

    model.tok_emb.register_forward_pre_hook(autograd_off)
    model.trf_blocks[frozen_blocks].register_forward_pre_hook(autograd_on)  # the first trained


def _step_parts(cfg: dict, batch: int, tokens: int, num_classes: int | None,
                last_block_only: bool, device: str | torch.device = "cpu") -> tuple:
    """What one training step needs: the model (all but its last block, final norm and head
    frozen if last_block_only), its AdamW (foreach: CUDA's default) over the trained
    parameters, and a batch of random token ids and targets on `device`."""
    with torch.device(device):  # made there: under FakeTensorMode a .to() cannot swap tensors
        model = GPTModel(cfg)
        if num_classes:
            model.out_head = torch.nn.Linear(cfg["emb_dim"], num_classes)
    if last_block_only:
        run_first_blocks_without_autograd(model, cfg["n_layers"] - 1)
    trained = ([p for m in (model.trf_blocks[-1], model.final_norm, model.out_head)
                for p in m.parameters()] if last_block_only else list(model.parameters()))
    optimizer = torch.optim.AdamW(trained, lr=1e-4, foreach=True)
    inputs = torch.randint(0, cfg["vocab_size"], (batch, tokens), device=device)
    targets = torch.randint(0, num_classes or cfg["vocab_size"],
                            (batch,) if num_classes else (batch, tokens), device=device)
    return model, optimizer, inputs, targets


def _train_step(model, optimizer, inputs, targets) -> None:
    optimizer.zero_grad()
    logits = model(inputs)  # the model's own forward; it leaves fake ids' values unchecked
    classify = targets.dim() == 1  # chapter 6: one label per sequence, from its last token
    logits = logits[:, -1] if classify else logits.flatten(0, 1)
    loss = torch.nn.functional.cross_entropy(logits, targets.flatten())
    del logits  # as in the course's loops, which keep only the loss
    loss.backward()
    optimizer.step()


def training_step_peak(cfg: dict, batch: int, tokens: int, num_classes: int | None = None,
                       last_block_only: bool = False) -> dict[str, float]:
    """GB alive at the peak of one AdamW training step (the second: the first creates AdamW's
    averages), by kind, and "Total". num_classes: chapter 6's classification head and its loss
    on the last token; last_block_only: only the last block, final norm and head train."""
    with FakeTensorMode():
        parts = _step_parts(cfg, batch, tokens, num_classes, last_block_only)
        _train_step(*parts)
        tracker = MemTracker()
        tracker.track_external(*parts)
        with tracker:
            _train_step(*parts)
    peak = {}
    for by_kind in tracker.get_tracker_snapshot("peak").values():
        for kind, nbytes in by_kind.items():
            name = str(kind).rsplit(".", 1)[-1].lower()
            peak[name] = peak.get(name, 0) + nbytes / GB
    return peak


def measured_step_peak(cfg: dict, batch: int, tokens: int, num_classes: int | None = None,
                       last_block_only: bool = False) -> float:
    """GB that CUDA's allocator holds at the peak of the same step on a GPU, with real tensors
    (random values change no size) and nothing else on the device."""
    parts = _step_parts(cfg, batch, tokens, num_classes, last_block_only, "cuda")
    _train_step(*parts)
    torch.cuda.reset_peak_memory_stats()
    _train_step(*parts)
    del parts
    torch.cuda.empty_cache()
    return torch.cuda.max_memory_allocated() / GB


def book_profile_steps() -> dict[str, tuple]:
    """The training steps of the book profile, with the notebooks' settings: the arguments
    of training_step_peak."""
    small_from_scratch = gpt2_config("gpt2-small (124M)", context_length=256)  # 5.2
    openai_small = gpt2_config("gpt2-small (124M)", qkv_bias=True, drop_rate=0.0)  # load_gpt2
    openai_medium = gpt2_config("gpt2-medium (355M)", qkv_bias=True, drop_rate=0.0)
    return {
        "5.2 GPT-2 small from scratch, batch 2 x 256 tokens": (small_from_scratch, 2, 256),
        "6.7 GPT-2 small, last block and head, batch 8 x 120":
            (openai_small, 8, 120, 2, True),
        "6.9 GPT-2 small, all layers, batch 8 x 120": (openai_small, 8, 120, 2),
        "exercise 6.1, last block, batch 8 x 1,024": (openai_small, 8, 1024, 2, True),
        "7.6 GPT-2 medium, all layers, batch 8 x 91": (openai_medium, 8, 91),
    }


def main() -> int:
    on_gpu = torch.cuda.is_available()  # then each step is also run, and measured
    if on_gpu:
        print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}")
    kinds = ["param", "grad", "opt", "act", "temp", "buffer"]
    print(f"{'training step (book profile), GB at its peak':54} "
          + " ".join(f"{k:>6}" for k in kinds) + "  total" + (" measured" if on_gpu else ""))
    for name, arguments in book_profile_steps().items():
        peak = training_step_peak(*arguments)
        print(f"{name:54} " + " ".join(f"{peak.get(k, 0):6.2f}" for k in kinds)
              + f"  {peak['total']:5.2f}"
              + (f" {measured_step_peak(*arguments):8.2f}" if on_gpu else ""))
    return 0


if __name__ == "__main__":
    from shared.tooling.command_line import run_main

    run_main(main)
