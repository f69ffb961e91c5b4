"""Chapter 5's diagrams, drawn as SVG into figures/: `python ch05_pretraining/draw_figures.py`."""

import functools
import math
from pathlib import Path

from shared.tooling.command_line import run_main
from shared.tooling.diagrams import COLORS, Diagram, main, registry


FIGURES, figure = registry()
MUTED = COLORS["muted"]


@figure
def shift_inputs_targets():
    d = Diagram(30, 12.5, "Targets are the inputs shifted by one token")
    words = ['"Every"', '" effort"', '" moves"', '" you"']
    x0, w, gap = 7, 4.2, 0.4
    d.text(x0 - 0.5, 2.8, "text", ha="right", color=MUTED)
    text = d.row(x0, 2.2, words, w=w, h=1.2, gap=gap, fill=COLORS["text"], family="monospace")
    d.text(x0 - 0.5, 6.1, "inputs", ha="right", color=MUTED)
    inputs = d.row(x0, 5.5, words[:3], w=w, h=1.2, gap=gap, fill=COLORS["token"],
                   family="monospace")
    d.text(x0 - 0.5, 9.4, "targets", ha="right", color=MUTED)
    targets = d.row(x0, 8.8, words[1:], w=w, h=1.2, gap=gap, fill=COLORS["id"],
                    family="monospace")
    for (tx, ty), (ix, iy) in zip(text[:3], inputs):
        d.arrow((tx, ty + 0.65), (ix, iy - 0.65), color=MUTED)
    for (tx, ty), (gx, gy) in zip(text[1:], targets):
        d.arrow((tx - 0.6, ty + 0.65), (gx + 0.6, gy - 0.65), color=COLORS["accent"], curve=0.1)
    d.text(x0 + 3 * (w + gap) + 0.3, 6.1, "the model reads these", ha="left", size=8,
           color=MUTED)
    d.text(x0 + 3 * (w + gap) + 0.3, 9.4, "and must predict these", ha="left", size=8,
           color=MUTED)
    d.text(15, 11.6, "position i sees tokens 1..i (causal mask) and is scored on token i+1: "
           "three predictions from one text", size=8, color=MUTED)
    return d


@functools.cache
def book_model_numbers():
    """5.1.2's numbers, computed as the notebook computes them (not copied from its output):
    the book's untrained GPT-2 small (seed 123) on the two example texts. Returns the targets'
    probabilities and their logs (2 x 3 lists), the loss and the perplexity."""
    import torch

    from shared import GPTModel, gpt2_config, set_seed

    set_seed(123)
    model = GPTModel(gpt2_config("gpt2-small (124M)", context_length=256)).eval()
    inputs = torch.tensor([[16833, 3626, 6100], [40, 1107, 588]])
    targets = torch.tensor([[3626, 6100, 345], [1107, 588, 11311]])
    with torch.no_grad():
        probas = torch.softmax(model(inputs), dim=-1)
    target_probas = probas.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    log_probas = torch.log(target_probas)
    loss = -log_probas.mean().item()
    return target_probas.tolist(), log_probas.tolist(), loss, math.exp(loss)


@figure
def cross_entropy_steps():
    probs, logs, loss, perplexity = book_model_numbers()
    d = Diagram(40, 17, "From logits to the loss, one step at a time (the book's model)")
    steps = [("logits", "(2, 3, 50257)", COLORS["output"]),
             ("softmax", "probabilities", COLORS["output"]),
             ("pick the\ntarget's", "(2, 3)", COLORS["id"]),
             ("log", "(2, 3)", COLORS["id"]),
             ("mean", "one number", COLORS["id"]),
             ("negate", f"loss {loss:.3f}", COLORS["weight"]),
             ("exp", f"perplexity\n{perplexity:,.0f}", COLORS["weight"])]
    w, gap = 4.6, 1.0
    for i, (name, shape, fill) in enumerate(steps):
        x = 0.6 + i * (w + gap)
        d.box(x, 2.2, w, 2.2, name, fill=fill, weight="bold")
        d.text(x + w / 2, 5.3, shape, size=8, color=MUTED)
        if i:
            d.arrow((x - gap, 3.3), (x, 3.3))
    d.text(8.5, 7.6, "probability of each target token", size=8, color=MUTED)
    d.grid(3.5, 8.6, probs, cell=3.3, cell_h=1.1, fmt="{:.2e}", fill=COLORS["id"],
           row_labels=["text 1", "text 2"])
    d.text(8.5, 11.3, 'text 1 targets: " effort moves you"', size=7, color=MUTED)
    d.arrow((13.6, 9.7), (15.4, 9.7), "log", label_offset=(0, -0.6))
    d.grid(15.6, 8.6, logs, cell=3.0, cell_h=1.1, fmt="{:.3f}", fill=COLORS["id"])
    d.arrow((24.6, 9.7), (26.6, 9.7), "mean", label_offset=(0, -0.6))
    d.box(26.8, 9.1, 4.0, 1.2, f"{-loss:.3f}", fill=COLORS["id"])
    d.arrow((31.0, 9.7), (33.4, 9.7), "× -1", label_offset=(0, -0.6))
    d.box(33.6, 9.1, 4.6, 1.2, f"loss {loss:.3f}", fill=COLORS["weight"])
    d.box(0.6, 13.0, 38.6, 3.2, "", fill=COLORS["block"], dashed=True)
    d.text(19.9, 13.9, "in practice: flatten batch and positions, then one call does all five "
           "steps (softmax, pick, log, mean, negate)", size=8)
    d.text(19.9, 15.2, "cross_entropy(logits.flatten(0, 1) → (6, 50257),  "
           f"targets.flatten() → (6,))  =  {loss:.3f}", size=8, family="monospace",
           color=COLORS["accent"])
    return d


@figure
def training_loop():
    d = Diagram(36, 18, "One training step, repeated for every batch of every epoch")
    d.box(0.5, 1.8, 35, 15.6, "", fill=COLORS["block"], dashed=True)
    d.text(1.0, 2.5, "for each epoch: for each batch", ha="left", size=8, color=MUTED)
    d.box(1.5, 4.0, 6.5, 2.4, "batch\ninputs, targets", fill=COLORS["token"])
    d.box(10.0, 4.0, 6.0, 2.4, "model(inputs)\n→ logits", fill=COLORS["output"])
    d.box(18.0, 4.0, 6.5, 2.4, "cross-entropy\nwith targets → loss", fill=COLORS["id"])
    d.box(18.0, 9.0, 6.5, 2.4, "loss.backward()\n→ gradients", fill=COLORS["weight"])
    d.box(10.0, 9.0, 6.0, 2.4, "optimizer.step()\nupdate weights", fill=COLORS["weight"])
    d.box(1.5, 9.0, 6.5, 2.4, "optimizer\n.zero_grad()", fill=COLORS["weight"])
    d.arrow((8.0, 5.2), (10.0, 5.2))
    d.arrow((16.0, 5.2), (18.0, 5.2))
    d.arrow((21.25, 6.4), (21.25, 9.0))
    d.arrow((18.0, 10.2), (16.0, 10.2))
    d.arrow((10.0, 10.2), (8.0, 10.2))
    d.arrow((4.75, 9.0), (4.75, 6.4), "next batch", label_offset=(0.3, 0.0))
    d.box(27.0, 4.0, 7.8, 3.0, "every eval_freq steps:\ntrain and validation\nloss (eval mode)",
          fill=COLORS["output"], size=8)
    d.box(27.0, 8.6, 7.8, 3.0, "after each epoch:\ngenerate a sample\nfrom a fixed prompt",
          fill=COLORS["text"], size=8)
    d.arrow((24.5, 10.2), (27.0, 10.2), dashed=True)
    d.arrow((24.5, 5.2), (27.0, 5.5), dashed=True)
    d.text(18.0, 13.6, "the weights move a little downhill on this batch's loss; "
           "repeated, the model learns to predict the next token", size=8, color=MUTED)
    d.text(18.0, 15.2, "watch the validation loss: when it stops falling while the training "
           "loss keeps falling, the model memorises", size=8, color=COLORS["accent"])
    return d


@figure
def top_k_filtering():
    d = Diagram(32, 15.5, "Top-k (k = 3): keep the three largest logits, then softmax")
    words = ["closer", "every", "effort", "forward", "inches", "moves", "pizza", "toward",
             "you"]
    logits = [4.51, 0.89, -1.90, 6.75, 1.63, -1.62, -1.89, 6.28, 1.79]
    top = sorted(logits)[-3:]
    masked = [[f"{z:.2f}"] if z in top else [None] for z in logits]
    probs = [0.061, 0, 0, 0.578, 0, 0, 0, 0.361, 0]
    keep = {(i, 0) for i, z in enumerate(logits) if z in top}
    d.text(7.5, 2.3, "logits", size=8, color=MUTED)
    d.grid(6, 3, [[z] for z in logits], cell=3.0, cell_h=1.2, fmt="{:.2f}",
           fill=COLORS["output"], row_labels=words, highlight=keep)
    d.arrow((9.4, 8.4), (13.4, 8.4), "mask the rest", label_offset=(0, -0.6))
    d.text(15.0, 2.3, "-inf outside the top 3", size=8, color=MUTED)
    d.grid(13.5, 3, masked, cell=3.0, cell_h=1.2, fill=COLORS["output"], highlight=keep)
    d.arrow((16.9, 8.4), (20.9, 8.4), "softmax", label_offset=(0, -0.6))
    d.text(22.5, 2.3, "probabilities", size=8, color=MUTED)
    d.grid(21, 3, [[p] if p else [None] for p in probs], cell=3.0, cell_h=1.2, fmt="{:.3f}",
           fill=COLORS["id"], shade=True, highlight=keep)
    d.text(25.0, 8.4, "sample\nfrom these", size=8, color=MUTED, ha="left")
    d.text(16, 14.6, "grey = never sampled: e^(-inf) = 0, so the kept three share all the "
           "probability", size=8, color=MUTED)
    return d


@figure
def checkpoint_contents():
    d = Diagram(36, 15, "What a checkpoint holds, and what each part makes possible")
    d.box(0.5, 1.8, 15, 12.4, "", fill=COLORS["block"], dashed=True)
    d.text(8, 2.6, "a checkpoint saved during a run", size=8, family="monospace")
    d.box(1.2, 3.5, 13.6, 2.2, '"model": weights (state_dict)', fill=COLORS["weight"], size=8)
    d.box(1.2, 6.3, 13.6, 2.6, '"optimizer": AdamW step count,\n2 running averages per weight',
          fill=COLORS["weight"], size=8)
    d.box(1.2, 9.5, 13.6, 2.0, '"torch_rng": random generator', fill=COLORS["position"], size=8)
    d.box(1.2, 12.0, 13.6, 1.6, '"epoch", "step": where it stopped', fill=COLORS["text"], size=8)
    d.box(21, 3.5, 14, 2.2, "generate, evaluate, finetune", fill=COLORS["output"], size=8)
    d.box(21, 6.5, 14, 2.2, "continue training smoothly", fill=COLORS["output"], size=8)
    d.box(21, 9.2, 14, 2.4, "continue bit for bit, as if\nnever stopped (5.4.2)",
          fill=COLORS["output"], size=8)
    d.box(21, 12.0, 14, 1.6, "where to go on; a schedule's step", fill=COLORS["output"], size=8)
    d.arrow((14.8, 4.6), (21, 4.6), "weights only", label_offset=(0, -0.5))
    d.arrow((14.8, 7.6), (21, 7.6), "+ optimizer", label_offset=(0, -0.5))
    d.arrow((14.8, 10.5), (21, 10.4), "+ generator state", label_offset=(0, -0.6))
    d.arrow((14.8, 12.8), (21, 12.8), "+ epoch, step", label_offset=(0, -0.5))
    return d


@figure
def gpt2_weight_mapping():
    d = Diagram(40, 18, "GPT-2's tensors (Hugging Face file) → our GPTModel, block N")
    rows = [("wte.weight, wpe.weight", "tok_emb.weight, pos_emb.weight", "copy"),
            ("h.N.ln_1 / ln_2 .weight, .bias", "norm1 / norm2 .scale, .shift", "copy"),
            ("h.N.attn.c_attn .weight, .bias", "W_query, W_key, W_value .weight, .bias",
             "split in 3 + weight.T"),
            ("h.N.attn.c_proj, mlp.c_fc, mlp.c_proj", "out_proj, ff.layers[0], ff.layers[2]",
             "weight.T (Conv1D)"),
            ("ln_f.weight, .bias", "final_norm.scale, .shift", "copy"),
            ("(no lm_head in the file)", "out_head.weight", "copy of wte (tied)"),
            ("h.N.attn.bias (causal mask)", "(not a weight: skipped)", "dropped")]
    d.text(7.5, 2.2, "GPT-2 file", size=9, weight="bold")
    d.text(32, 2.2, "our GPTModel", size=9, weight="bold")
    for i, (theirs, ours, how) in enumerate(rows):
        y = 3.0 + i * 1.95
        dropped = how == "dropped"
        d.box(0.5, y, 14.5, 1.5, theirs, fill=COLORS["masked"] if dropped else COLORS["id"],
              size=7.5, family="monospace")
        d.box(24.5, y, 15, 1.5, ours, fill=COLORS["masked"] if dropped else COLORS["weight"],
              size=7.5, family="monospace")
        d.arrow((15.0, y + 0.75), (24.5, y + 0.75), dashed=dropped,
                color=COLORS["accent"] if ".T" in how else COLORS["edge"])
        d.text(19.75, y + 0.35, how, size=7.5, color=MUTED)
    d.text(20, 17.2, "the mask buffer is in the file because transformers saved it with "
           "the weights; OpenAI's TensorFlow checkpoints have no such tensor", size=7.5,
           color=MUTED)
    return d


if __name__ == "__main__":
    run_main(lambda: main(FIGURES, Path(__file__).parent / "figures"))
