# Generated from ch05_pretraining/beyond_5_fast_paths.ipynb
# by `python -m shared.tooling.notebooks export`. Do not edit: change the notebook's cells
# marked `#| export fast_path`, then export again.
# Each `# %%` line names the cell the code below it came from.

# %% beyond_5_fast_paths.ipynb cell 11, 5.7.1 What limits decoding speed

"""Chapter 5, beyond the book, sections 5.7.1 and 5.8: the fast paths. FastDecoder generates
token by token with a copy of a model whose linear layers hold their weights as the products of
decoding read them; the chunked cross-entropy computes the training loss without the logits
tensor."""

import copy
import math
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from shared.checks import check, check_has_values, check_token_ids
from shared.utils import inputs_trusted


# %% beyond_5_fast_paths.ipynb cell 12, 5.7.1 What limits decoding speed

class BFloat16Linear(nn.Module):
    """An nn.Linear computed from a bfloat16 copy of its weight: half the bytes read per token.

    The input is rounded to bfloat16 for the product (F.linear), whose result, in bfloat16
    too, returns to float32; the bias, kept in float32, is added. The layer's hooks come along."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.weight = linear.weight.detach().to(torch.bfloat16)
        self.bias = None if linear.bias is None else linear.bias.detach().float()
        for hooks in _HOOKS:
            setattr(self, hooks, getattr(linear, hooks))

    def forward(self, x):
        # as rows (tokens, features): a strided view such as the last position's, x[:, -1:],
        # would send a 3-d bfloat16 product through bmm, which copies the whole weight first
        rows = x.reshape(-1, x.shape[-1]).to(torch.bfloat16)
        out = nn.functional.linear(rows, self.weight).float().reshape(*x.shape[:-1], -1)
        return out if self.bias is None else out + self.bias


class Int8Linear(nn.Module):
    """An nn.Linear computed in int8: a quarter of float32's bytes read per token.

    The weight is kept as int8 with one float32 scale per output channel, in -63..63 (its row's
    largest magnitude / 63): without VNNI, oneDNN sums pairs of (input + 128) x weight in 16 bits,
    which saturate past that, and the product would differ from processor to processor. When
    the layer runs, each input row is rounded to -127..127 by a scale of its own, and on the CPU
    the product runs in integers (torch._int_mm, summed in int32 exactly, on any processor); then
    both scales and the float32 bias are applied. On another device each
    call converts the int8 weight back to a float32 copy for the product, the input unrounded:
    less memory between calls, not more speed.
    The layer's hooks come along."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        weight = linear.weight.detach().float()
        self.scale = weight.abs().amax(dim=1).clamp(min=1e-30) / 63  # (out,)
        self.weight = torch.round(weight / self.scale[:, None]).to(torch.int8)  # (out, in)
        self.bias = None if linear.bias is None else linear.bias.detach().float()
        for hooks in _HOOKS:
            setattr(self, hooks, getattr(linear, hooks))

    def forward(self, x):
        rows = x.reshape(-1, x.shape[-1]).float()
        if rows.device.type == "cpu":
            row_scale = rows.abs().amax(dim=1, keepdim=True).clamp(min=1e-30) / 127
            rows_int8 = torch.round(rows / row_scale).to(torch.int8)
            out = torch._int_mm(rows_int8, self.weight.T) * (row_scale * self.scale)
        else:
            out = nn.functional.linear(rows, self.weight.float() * self.scale[:, None])
        out = out.reshape(*x.shape[:-1], -1)
        return out if self.bias is None else out + self.bias


_HOOKS = ("_forward_hooks", "_forward_hooks_with_kwargs", "_forward_hooks_always_called",
          "_forward_pre_hooks", "_forward_pre_hooks_with_kwargs")


class FastDecoder:
    """A float32 inference copy of a model, its nn.Linear weights laid out for decoding.

    Called like the model (`generate_text(FastDecoder(model), ...)`), it runs the model's own
    forward on the copy, under torch.inference_mode and in evaluation mode (no dropout): the
    same logits, to float32 rounding, whatever the model's blocks, norms, heads, forward
    methods or hooks compute. Only layers of type nn.Linear are changed (a subclass of it runs as
    it is; a wrapper such as a LoRA layer runs as it is over the nn.Linear inside it, which is
    changed). The model passed in
    is not changed, and changing it afterwards leaves the copy alone: build the decoder after
    training. weight_dtype=torch.bfloat16 gives those layers bfloat16 weights (BFloat16Linear):
    half the bytes read per token, each product's input and output rounded to bfloat16;
    torch.int8 gives them int8 weights (Int8Linear): a quarter of the bytes, inputs and weights
    rounded to 8 bits. compile=True compiles the copy (torch.compile, through model.compile()):
    the small operations between the products (norms, activations, residual adds) run fused,
    without Python's work per operation (with float32 weights, the same logits up to float32
    rounding). In generate_text, its first call compiles the prompt's pass and the one-token step;
    a call with another prompt length or number of new tokens compiles both once more, for sizes
    in general but 0 and 1, so later calls seldom compile (on a CPU this needs a C++ compiler).
    """

    def __init__(self, model: nn.Module, weight_dtype: torch.dtype = torch.float32, *,
                 compile: bool = False):
        lower = {torch.bfloat16: BFloat16Linear, torch.int8: Int8Linear}
        check(weight_dtype == torch.float32 or weight_dtype in lower,
              "weight_dtype: torch.float32, torch.bfloat16 or torch.int8")
        check_has_values("model", model, "build it on a real device")
        self.model, self.weight_dtype = copy.deepcopy(model).float().eval(), weight_dtype
        linears = [(module, name, layer) for module in self.model.modules()
                   for name, layer in module.named_children()
                   if type(layer) is nn.Linear and "forward" not in vars(layer)]
        if weight_dtype in lower:
            while linears:  # popped, so that each float32 layer is freed once replaced
                module, name, layer = linears.pop()
                setattr(module, name, lower[weight_dtype](layer))
        else:
            # The same values and shape (out, in), stored transposed: F.linear's product (addmm,
            # or mm without a bias) then reads the matrix input-major, as it lies. One matrix at
            # a time, and a tied matrix stays tied: every module holding it gets it.
            holders = {}
            for module in self.model.modules():
                for name, parameter in module.named_parameters(recurse=False):
                    holders.setdefault(id(parameter), []).append((module, name))
            for *_, layer in linears:
                relaid = nn.Parameter(layer.weight.detach().T.contiguous().T, requires_grad=False)
                for module, name in holders.pop(id(layer.weight), []):
                    setattr(module, name, relaid)
        self.compiled = compile
        if compile:
            self.model.compile()

    @torch.inference_mode()  # no autograd bookkeeping at all, not even no_grad's version counters
    def __call__(self, *args, **kwargs) -> torch.Tensor:
        """The copy's forward (as inference tensors: autograd cannot record them)."""
        if self.compiled and not inputs_trusted():  # compiled code does not read the ids' values
            check_token_ids(args[0] if args else kwargs["in_idx"],
                            vocab_size=self.model.cfg["vocab_size"])
        return self.model(*args, **kwargs)

    def __getattr__(self, name):
        """The copy's attributes: its cfg, its make_kv_caches (generate_text looks for both)."""
        if name == "model":  # not set yet: no copy to ask
            raise AttributeError(name)
        return getattr(self.model, name)


# %% beyond_5_fast_paths.ipynb cell 33, 5.8.2 Seven switches

_CPUINFO = Path("/proc/cpuinfo")  # Linux lists the processor's instruction sets here


def supports_fast_bf16(device: str | torch.device) -> bool:
    """Whether `device` multiplies bfloat16 matrices natively (so autocast pays off).

    True for CUDA GPUs of compute capability 8.0 or above (A100, the RTX 30 series, H100 and
    newer) and for CPUs with AVX512_BF16 or AMX instructions. A T4 (7.5), a V100 (7.0) and a
    CPU with AVX2 only emulate bf16, usually slower than float32: False, as for a Mac's GPU
    (MPS) and any other device, which this does not vouch for.
    """
    device = torch.device(device)
    if device.type == "cuda":  # is_bf16_supported() alone also counts a T4's emulation
        return (torch.cuda.is_bf16_supported(including_emulation=False)
                and torch.cuda.get_device_capability(device) >= (8, 0))
    if device.type != "cpu":
        return False
    try:
        flags = _CPUINFO.read_text()
    except OSError:  # not Linux (macOS, Windows): no list to read, so no claim
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


# %% beyond_5_fast_paths.ipynb cell 43, 5.8.3 Less memory: the loss without the logits

class ChunkedCrossEntropy(torch.autograd.Function):
    """F.cross_entropy(hidden @ weight.T, targets, ignore_index=...) computed `chunk_size` rows
    at a time: forward keeps one number per row (its log-sum-exp), backward recomputes each
    chunk's logits. Under autocast the products run in its dtype, the softmax in float32."""

    @staticmethod
    def forward(ctx, hidden, weight, targets, chunk_size, ignore_index):
        device = hidden.device.type
        autocast = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None
        product_dtype = autocast if autocast and hidden.dtype != torch.float64 else hidden.dtype
        sum_dtype = torch.promote_types(product_dtype, torch.float32)
        valid = targets != ignore_index
        safe_targets = targets.where(valid, 0)  # any class: ignored rows are masked out below
        weight_cast = weight.to(product_dtype)  # once, not once per chunk
        log_sum_exp = torch.empty(len(hidden), dtype=sum_dtype, device=hidden.device)
        total = torch.zeros((), dtype=sum_dtype, device=hidden.device)
        with torch.autocast(device, enabled=False):  # the casts above are autocast's own
            for rows in _chunks(len(hidden), chunk_size):
                logits = (hidden[rows].to(product_dtype) @ weight_cast.T).to(sum_dtype)
                target_logits = logits.gather(1, safe_targets[rows, None]).squeeze(1)
                largest = logits.amax(dim=1, keepdim=True)
                sum_exp = _flushed_exp_(logits.sub_(largest)).sum(dim=1)
                log_sum_exp[rows] = largest.squeeze(1) + sum_exp.log()
                total += ((log_sum_exp[rows] - target_logits) * valid[rows]).sum()
        count = valid.sum()
        ctx.save_for_backward(hidden, weight, safe_targets, valid, count, log_sum_exp)
        ctx.chunk_size, ctx.product_dtype = chunk_size, product_dtype
        loss = total / count  # nan when every target is ignored, as in F.cross_entropy
        return loss.float() if autocast else loss.to(hidden.dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_loss):
        hidden, weight, safe_targets, valid, count, log_sum_exp = ctx.saved_tensors
        # d loss / d logits = (softmax - one_hot(target)) * grad_loss / count, 0 where ignored
        scale = (grad_loss.to(log_sum_exp.dtype) / count.clamp(min=1)) * valid
        weight_cast = weight.to(ctx.product_dtype)
        grad_hidden = torch.empty_like(hidden)
        grad_weight = torch.zeros(weight.shape, dtype=log_sum_exp.dtype, device=weight.device)
        with torch.autocast(hidden.device.type, enabled=False):
            for rows in _chunks(len(hidden), ctx.chunk_size):
                hidden_cast = hidden[rows].to(ctx.product_dtype)
                logits = (hidden_cast @ weight_cast.T).to(log_sum_exp.dtype)
                grad_logits = _flushed_exp_(logits.sub_(log_sum_exp[rows, None]))  # softmax
                grad_logits[torch.arange(len(grad_logits), device=grad_logits.device),
                            safe_targets[rows]] -= 1
                grad_logits = (grad_logits * scale[rows, None]).to(ctx.product_dtype)
                grad_hidden[rows] = grad_logits @ weight_cast
                # bf16 products are summed in float32, a block of the vocabulary at a time,
                # so that the float32 copy `add_` makes of each stays small
                for vocab in _chunks(len(weight), 8192) if ctx.needs_input_grad[1] else ():
                    grad_weight[vocab] += grad_logits[:, vocab].T @ hidden_cast
        return grad_hidden, grad_weight.to(weight.dtype), None, None, None


def _chunks(length: int, size: int) -> Iterator[slice]:
    return (slice(start, start + size) for start in range(0, length, size))


def _flushed_exp_(x: torch.Tensor) -> torch.Tensor:
    """exp(x) in place, exactly 0 where it would be below 2**24 x the dtype's least normal number.

    Such terms (below 2e-31 in float32) change a log-sum-exp, a sum of at least 1, by nothing
    float32 can hold. Kept, many would be denormal numbers, which x86 processors handle many
    times slower than normal ones: a head whose logits spread very widely (a tied head started
    from N(0, 1) draws, for one) makes nearly all of its probabilities that small, and the
    chunk's weight-gradient product many times slower.
    """
    floor = math.log(torch.finfo(x.dtype).tiny) + 24 * math.log(2)  # -70.7 in float32
    return torch.threshold_(x, floor, -math.inf).exp_()  # exp(-inf) is exactly 0


def chunked_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                          chunk_size: int = 256, ignore_index: int = -100) -> torch.Tensor:
    """Mean cross-entropy of the logits hidden @ weight.T, never all of them at once.

    hidden (..., d); weight (vocab, d), as nn.Linear stores it; targets (...) class ids, or
    ignore_index for positions left out of the mean. Memory for logits: chunk_size x vocab.
    256 rows hold 51 MB of logits at GPT-2's vocabulary, in products still large enough to run
    fast; far fewer rows make thin, slow products.
    """
    # Without these, a negative chunk_size gives an empty loop (a loss of 0; 0 is range()'s
    # error), .long() truncates float targets, and targets of another count would be averaged
    # wrongly (one shape, hidden's without its last axis, keeps the rows aligned).
    check(chunk_size >= 1, lambda: f"chunk_size must be >= 1, got {chunk_size!r}")
    if targets.is_floating_point() or targets.dtype == torch.bool:
        raise TypeError(f"targets must hold integer class ids, got {targets.dtype}")
    check(hidden.shape[:-1] == targets.shape, lambda: f"targets must have shape "
          f"{tuple(hidden.shape[:-1])}, hidden's without its last axis, got {tuple(targets.shape)}")
    targets = targets.reshape(-1)
    outside = (targets != ignore_index) & ((targets < 0) | (targets >= len(weight)))
    if outside.any():  # gather's index error; on a GPU an assert that surfaces at a later call
        raise ValueError(f"target {targets[outside][0].item()} is outside the vocabulary")
    return ChunkedCrossEntropy.apply(hidden.reshape(-1, hidden.shape[-1]), weight,
                                     targets.long(), chunk_size, ignore_index)


def calc_loss_batch_chunked(input_batch: torch.Tensor, target_batch: torch.Tensor,
                            model: nn.Module, device: str | torch.device) -> torch.Tensor:
    """calc_loss_batch without the (batch, tokens, vocab) logits: `loss_batch=` for the loop.

    It calls model.hidden_states, not the model: model.compile(), which compiles forward, does
    not reach it.
    """
    # the chunks multiply by the weight alone: a bias, or Gemma 4's cap (4.8.13), left out
    check(model.out_head.bias is None and not model.cfg.get("final_logit_softcap"),
          "calc_loss_batch_chunked needs an output head without a bias or a cap")
    hidden = model.hidden_states(input_batch.to(device))
    return chunked_cross_entropy(hidden, model.out_head.weight, target_batch.to(device))


__all__ = [
    'BFloat16Linear',
    'Int8Linear',
    'FastDecoder',
    'supports_fast_bf16',
    'ChunkedCrossEntropy',
    'chunked_cross_entropy',
    'calc_loss_batch_chunked',
]
