# Generated from ch05_pretraining/beyond_5_fast_paths.ipynb
# by `python -m shared.tooling.notebooks export`. Do not edit: change the notebook's cells
# marked `#| export fast_path`, then export again.
# Each `# %%` line names the cell the code below it came from.

# %% beyond_5_fast_paths.ipynb cell 10, 5.7.1 What limits decoding speed

"""Chapter 5, beyond the book, sections 5.7.1 and 5.8: the fast paths. FastDecoder generates
token by token from a copy of a GPTModel's weights in GPT-2's layout (gpt2_weights); the chunked
cross-entropy computes the training loss without the logits tensor."""

import math
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from shared import (
    GPTModel,
    KVCache,
    attend,
    check,
    check_count,
    check_gpt2_architecture,
    check_token_ids,
    gpt2_tensors,
)


# %% beyond_5_fast_paths.ipynb cell 11, 5.7.1 What limits decoding speed

class FastDecoder:
    """An inference-only copy of a GPTModel's weights, laid out for generating token by token.

    Called like the model (`generate(FastDecoder(model), ...)`), it returns the same logits to
    float32 precision, as in evaluation mode (no dropout). It copies the weights: build it after
    training. weight_dtype=torch.bfloat16 stores the matrices in bfloat16, half the bytes read
    per token; activations are rounded to bfloat16 for each product.
    """

    def __init__(self, model: GPTModel, weight_dtype: torch.dtype = torch.float32):
        check(weight_dtype in (torch.float32, torch.bfloat16),
              f"weight_dtype must be torch.float32 or torch.bfloat16, got {weight_dtype}")
        check_gpt2_architecture(model, "FastDecoder", "generate with the model itself")
        self.cfg, self.weight_dtype = dict(model.cfg), weight_dtype
        self.eps = model.final_norm.eps
        # Built from GPT-2's layout of the weights (5.5), fresh float32 copies: the fused
        # query/key/value matrix and input-major (in, out) matrices are already its format.
        tensors = {name: tensor.float() for name, tensor in gpt2_tensors(model).items()}
        self.tok_emb, self.pos_emb = tensors["wte.weight"], tensors["wpe.weight"]
        self.blocks = [self._block(tensors, f"h.{i}.") for i in range(self.cfg["n_layers"])]
        self.final_norm = tensors["ln_f.weight"], tensors["ln_f.bias"]
        self.head = self._matrix(tensors.get("lm_head.weight", self.tok_emb).T), None

    def _block(self, tensors, prefix):
        def linear(name):
            return self._matrix(tensors[f"{prefix}{name}.weight"]), tensors[f"{prefix}{name}.bias"]
        qkv, qkv_bias = linear("attn.c_attn")  # GPT-2's bias is zeros where ours is absent
        return {"norm1": (tensors[prefix + "ln_1.weight"], tensors[prefix + "ln_1.bias"]),
                "norm2": (tensors[prefix + "ln_2.weight"], tensors[prefix + "ln_2.bias"]),
                "qkv": (qkv, qkv_bias if self.cfg["qkv_bias"] else None),
                "out": linear("attn.c_proj"), "fc1": linear("mlp.c_fc"),
                "fc2": linear("mlp.c_proj")}

    def _matrix(self, weight):
        """GPT-2's (in, out) matrix as the products below read it."""
        if self.weight_dtype == torch.float32:  # (in, out): a row times it streams it in order
            return weight.contiguous()
        return weight.T.to(self.weight_dtype).contiguous()  # (out, in), for torch.mv

    def _linear(self, x, weight_and_bias):
        weight, bias = weight_and_bias
        rows = x.reshape(-1, x.shape[-1])
        if self.weight_dtype == torch.float32:
            out = rows @ weight if bias is None else torch.addmm(bias, rows, weight)
        else:  # one row: torch.mv, PyTorch's bf16 matrix-vector kernel; more rows: F.linear
            out = (torch.mv(weight, rows[0].to(weight.dtype))[None] if rows.shape[0] == 1
                   else nn.functional.linear(rows.to(weight.dtype), weight)).float()
            out = out if bias is None else out + bias
        return out.view(*x.shape[:-1], out.shape[-1])

    def make_kv_caches(self, max_tokens: int | None = None) -> list[KVCache]:
        """One empty KVCache per block, with room for max_tokens (default: the context)."""
        context_length = self.cfg["context_length"]
        if max_tokens is not None:
            check_count("max_tokens", max_tokens, 1)
        return [KVCache(min(max_tokens or context_length, context_length)) for _ in self.blocks]

    def _check_input(self, in_idx, kv_caches) -> int:
        """Raise unless in_idx holds token ids that fit after the cached ones; return how many
        positions are cached."""
        check_token_ids(in_idx, "in_idx", self.cfg["vocab_size"])
        check(not kv_caches or len(kv_caches) == len(self.blocks), lambda: f"kv_caches: "
              f"{len(kv_caches)} given, {len(self.blocks)} needed (one per block): make them with "
              "this model's make_kv_caches")
        start = kv_caches[0].length if kv_caches else 0
        check(start + in_idx.shape[1] <= self.cfg["context_length"],
              f"the input has {in_idx.shape[1]} tokens after {start} cached tokens; "
              f"the model's context_length is {self.cfg['context_length']}")
        return start

    @torch.inference_mode()  # no autograd bookkeeping at all, not even no_grad's version counters
    def __call__(self, in_idx: torch.Tensor, kv_caches: list[KVCache] | None = None,
                 last_only: bool = False) -> torch.Tensor:
        """Logits as GPTModel.forward(in_idx, kv_caches, last_only) computes them (as inference
        tensors: autograd cannot record them, and only inference mode may change them in place).
        """
        start = self._check_input(in_idx, kv_caches)
        batch, num_tokens = in_idx.shape
        width, heads = self.cfg["emb_dim"], self.cfg["n_heads"]
        x = self.tok_emb[in_idx] + self.pos_emb[start:start + num_tokens]
        for i, block in enumerate(self.blocks):
            qkv = self._linear(nn.functional.layer_norm(x, (width,), *block["norm1"], self.eps),
                               block["qkv"])
            queries, keys, values = qkv.view(batch, num_tokens, 3, heads, -1).permute(2, 0, 3, 1, 4)
            if kv_caches:
                keys, values = kv_caches[i].update(keys, values)
            context = attend(queries, keys, values, start, dropout=None, use_sdpa=True,
                             training=False)  # 3.7's, fused
            x = x + self._linear(context.transpose(1, 2).reshape(batch, num_tokens, width),
                                 block["out"])
            hidden = self._linear(nn.functional.layer_norm(x, (width,), *block["norm2"], self.eps),
                                  block["fc1"])
            x = x + self._linear(nn.functional.gelu(hidden, approximate="tanh"), block["fc2"])
        if last_only:
            x = x[:, -1:]
        return self._linear(nn.functional.layer_norm(x, (width,), *self.final_norm, self.eps),
                            self.head)


# %% beyond_5_fast_paths.ipynb cell 23, 5.8.2 Seven switches

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


# %% beyond_5_fast_paths.ipynb cell 31, 5.8.3 Less memory: the loss without the logits

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
    check_count("chunk_size", chunk_size, 1)
    check(not (targets.is_floating_point() or targets.dtype == torch.bool),
          f"targets must hold integer class ids, got {targets.dtype}", TypeError)
    check(hidden.shape[:-1] == targets.shape and hidden.shape[-1:] == weight.shape[1:],
          f"hidden {tuple(hidden.shape)}, weight {tuple(weight.shape)} and targets "
          f"{tuple(targets.shape)} do not fit: hidden must be (..., d), weight (vocab, d) and "
          "targets hidden's shape without d")
    targets = targets.reshape(-1)
    outside = (targets != ignore_index) & ((targets < 0) | (targets >= len(weight)))
    if outside.any():  # F.cross_entropy would fail with an opaque index error
        raise ValueError(f"target {targets[outside][0].item()} is outside the vocabulary: "
                         f"targets must be in 0..{len(weight) - 1}, or {ignore_index} to ignore")
    return ChunkedCrossEntropy.apply(hidden.reshape(-1, hidden.shape[-1]), weight,
                                     targets.long(), chunk_size, ignore_index)


def calc_loss_batch_chunked(input_batch: torch.Tensor, target_batch: torch.Tensor,
                            model: nn.Module, device: str | torch.device) -> torch.Tensor:
    """calc_loss_batch without the (batch, tokens, vocab) logits: `loss_batch=` for the loop.

    It calls model.hidden_states, not the model: model.compile(), which compiles forward, does
    not reach it.
    """
    check(model.out_head.bias is None,  # the chunks multiply by the weight alone
          "calc_loss_batch_chunked needs an output head without a bias")
    hidden = model.hidden_states(input_batch.to(device))
    return chunked_cross_entropy(hidden, model.out_head.weight, target_batch.to(device))


__all__ = [
    'FastDecoder',
    'supports_fast_bf16',
    'ChunkedCrossEntropy',
    'chunked_cross_entropy',
    'calc_loss_batch_chunked',
]
