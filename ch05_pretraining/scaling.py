# Generated from ch05_pretraining/beyond_10_scaling.ipynb
# by `python -m shared.tooling.notebooks export`. Do not edit: change the notebook's cells
# marked `#| export scaling`, then export again.
# Each `# %%` line names the cell the code below it came from.

# %% beyond_10_scaling.ipynb cell 4, 5.13 Scaling laws, fitted and tested

"""Chapter 5, section 5.13 (beyond the book): how the loss falls with model size and training
tokens, measured on a sweep of small models under fixed compute budgets, and the law fitted to it
as Chinchilla does (Hoffmann et al., 2022), tested on runs held back from the fit."""

import itertools
import math

import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler

from ch02_text_data.text_data import GPTDatasetV1
from ch04_gpt_model.gpt_model import count_parameters
from ch04_gpt_model.modern import ModernGPTModel
from ch05_pretraining.attention_variants import CharTokenizer
from ch05_pretraining.pretraining import calc_loss_loader
from ch05_pretraining.training import train_model
from shared.data import read_text
from shared.utils import set_seed


# %% beyond_10_scaling.ipynb cell 6, 5.13.1 A ladder of models, and a run on a budget

# (n_layers, emb_dim), smallest first, each 1.2 to 2.2 times the parameters of the one before;
# neither depth nor width ever shrinks from one rung to the next
LADDER = [(1, 16), (1, 24), (2, 24), (2, 32), (3, 32), (3, 40), (3, 48), (4, 48), (4, 64),
          (5, 64)]


def ladder_config(n_layers: int, emb_dim: int, vocab_size: int, context_length: int) -> dict:
    """A Llama-style ModernGPTModel configuration (RoPE, RMSNorm, SwiGLU) of one rung: 2 heads
    below width 64, 4 from it, a feed-forward about 8/3 as wide as the stream (4.8.3), rounded
    down to a multiple of 16."""
    heads = 4 if emb_dim >= 64 else 2
    return {"vocab_size": vocab_size, "context_length": context_length, "emb_dim": emb_dim,
            "n_heads": heads, "n_kv_groups": heads, "head_dim": emb_dim // heads,
            "n_layers": n_layers, "hidden_dim": 8 * emb_dim // 3 // 16 * 16,
            "rope_base": 10_000.0}


def shakespeare_windows(context_length: int) -> tuple:
    """Tiny Shakespeare split as 5.10.1 splits it, in characters (5.11.2's CharTokenizer):
    (tokenizer, the training text's windows side by side, a loader over the validation text's)."""
    text = read_text("tinyshakespeare")
    split = text.rindex("\n\n", 0, int(0.9 * len(text))) + 2
    tokenizer = CharTokenizer(text)
    train = GPTDatasetV1(text[:split], tokenizer, context_length, context_length)
    val = GPTDatasetV1(text[split:], tokenizer, context_length, context_length)
    return tokenizer, train, DataLoader(val, batch_size=32)


# %% beyond_10_scaling.ipynb cell 8, 5.13.1 A ladder of models, and a run on a budget

def train_on_budget(cfg: dict, train_windows: Dataset, val_loader: DataLoader, flops: float, *,
                    batch_size: int = 32, peak_lr: float = 1e-2, seed: int = 123,
                    device: str | torch.device = "cpu") -> dict:
    """A fresh ModernGPTModel(cfg) trained on as many tokens as `flops` buys at 6 FLOPs per
    parameter per token (C = 6ND), with appendix D's loop, and its validation loss after.

    The windows are drawn without replacement, a new order each pass over them, for as many
    steps as the budget buys: a budget beyond one pass repeats the text."""
    set_seed(seed)
    model = ModernGPTModel(cfg).to(device)
    params = count_parameters(model)
    tokens_per_step = batch_size * cfg["context_length"]
    steps = round(flops / (6 * params * tokens_per_step))
    if steps < 1:
        raise ValueError(f"{flops:.3g} FLOPs buy no step of a {params:,}-parameter model")
    order = torch.Generator().manual_seed(seed)
    train_loader = DataLoader(train_windows, batch_size=batch_size, drop_last=True,
                              sampler=RandomSampler(train_windows, num_samples=steps * batch_size,
                                                    generator=order))
    optimizer = torch.optim.AdamW(model.parameters(), lr=peak_lr, weight_decay=0.1)
    train_model(model, train_loader, val_loader, optimizer, device, n_epochs=1, eval_freq=None,
                eval_iter=1, start_context=None, tokenizer=None,
                warmup_steps=max(1, steps // 20), initial_lr=peak_lr / 10, min_lr=peak_lr / 10,
                progress=False)
    model.eval()
    with torch.no_grad():
        val_loss = calc_loss_loader(val_loader, model, device)
    tokens = steps * tokens_per_step
    return {"n_layers": cfg["n_layers"], "emb_dim": cfg["emb_dim"], "params": params,
            "tokens": tokens, "flops": 6 * params * tokens, "val_loss": val_loss}


# %% beyond_10_scaling.ipynb cell 13, 5.13.3 The lowest point of each budget

def isoflop_minimum(params: list[int], losses: list[float]) -> tuple[float, float]:
    """Chinchilla's second approach for one budget: a parabola through the losses against
    log(parameters), and its lowest point, (parameters, loss)."""
    x = torch.tensor(params, dtype=torch.float64).log()
    a, b, c = torch.linalg.lstsq(torch.stack([x**2, x, torch.ones_like(x)], 1),
                                 torch.tensor(losses, dtype=torch.float64)[:, None]).solution[:, 0]
    if a <= 0:
        raise ValueError("the losses do not curve upwards: they have no lowest point")
    best = -b / (2 * a)
    # a parabola read beyond its points says nothing; and losses on a line leave a curvature of
    # rounding error (about 1e-16, either sign), whose "lowest point" lies absurdly far out
    if not x.min() <= best <= x.max():
        raise ValueError(f"the parabola's lowest point, log N = {best:.3g}, lies outside the "
                         f"sizes measured ({min(params):,} to {max(params):,})")
    return math.exp(best), float(a * best**2 + b * best + c)


def fit_power_law(x: list[float], y: list[float]) -> tuple[float, float]:
    """(k, a) of y = k * x**a, fitted as a straight line in log-log."""
    logx = torch.tensor(x, dtype=torch.float64).log()
    logy = torch.tensor(y, dtype=torch.float64).log()
    a, logk = torch.linalg.lstsq(torch.stack([logx, torch.ones_like(logx)], 1),
                                 logy[:, None]).solution[:, 0]
    return math.exp(logk), float(a)


# %% beyond_10_scaling.ipynb cell 18, 5.13.4 The law

def fit_loss_law(params: list[int], tokens: list[int], losses: list[float]) -> dict:
    """Chinchilla's third approach: L(N, D) = E + A / N**alpha + B / D**beta fitted to every
    run, by minimising the Huber loss (delta 1e-3) between log L and the law's log, with L-BFGS
    from a grid of starting points, keeping the best fit (Hoffmann et al., 2022, appendix D.2)."""
    N = torch.tensor(params, dtype=torch.float64).log()
    D = torch.tensor(tokens, dtype=torch.float64).log()
    logL = torch.tensor(losses, dtype=torch.float64).log()

    def objective(theta):  # theta: log A, log B, log E, alpha, beta
        a, b, e, alpha, beta = theta
        law = torch.logsumexp(torch.stack([a - alpha * N, b - beta * D, e.expand_as(N)]), 0)
        return torch.nn.functional.huber_loss(law, logL, delta=1e-3, reduction="sum")

    best = None
    # starting points: log A, log B, log E, alpha, beta (108 of them)
    for start in itertools.product((0.0, 5.0, 10.0), (0.0, 5.0, 10.0), (-1.0, 0.0, 0.5),
                                   (0.2, 0.5), (0.2, 0.5)):
        theta = torch.tensor(start, dtype=torch.float64, requires_grad=True)
        lbfgs = torch.optim.LBFGS([theta], max_iter=200, line_search_fn="strong_wolfe")

        def closure(lbfgs=lbfgs, theta=theta):
            lbfgs.zero_grad()
            value = objective(theta)
            value.backward()
            return value
        lbfgs.step(closure)
        value = float(objective(theta).detach())
        if math.isfinite(value) and (best is None or value < best[0]):
            best = (value, theta.detach().clone())
    a, b, e, alpha, beta = best[1].tolist()
    return {"E": math.exp(e), "A": math.exp(a), "alpha": alpha, "B": math.exp(b), "beta": beta}


def law_loss(law: dict, params: float, tokens: float) -> float:
    """The fitted law's loss for a model of `params` parameters trained on `tokens` tokens."""
    return law["E"] + law["A"] / params ** law["alpha"] + law["B"] / tokens ** law["beta"]


def compute_optimal(law: dict, flops: float) -> tuple[float, float]:
    """The (parameters, tokens) with C = 6ND at which the fitted law's loss is lowest: setting
    the derivative along 6ND = C to zero gives N = G (C/6)**(beta/(alpha+beta)), with
    G = (alpha A / (beta B))**(1/(alpha+beta))."""
    alpha, beta = law["alpha"], law["beta"]
    g = (alpha * law["A"] / (beta * law["B"])) ** (1 / (alpha + beta))
    params = g * (flops / 6) ** (beta / (alpha + beta))
    return params, flops / (6 * params)


__all__ = [
    'LADDER',
    'ladder_config',
    'shakespeare_windows',
    'train_on_budget',
    'isoflop_minimum',
    'fit_power_law',
    'fit_loss_law',
    'law_loss',
    'compute_optimal',
]
