# Generated from ch05_pretraining/beyond_2_gpt2_files.ipynb
# by `python -m shared.tooling.notebooks export`. Do not edit: change the notebook's cells
# marked `#| export gpt2_weights`, then export again.
# Each `# %%` line names the cell the code below it came from.

# %% beyond_2_gpt2_files.ipynb cell 10, 5.5.1 The checked loader, and GPT-2's files both ways

"""Chapter 5, section 5.5: GPT-2's weights: read OpenAI's files, load them into a GPTModel,
save a GPTModel in their format. The book's functions (load_weights_into_gpt,
download_and_load_gpt2, ...) are the lesson's, in pretraining.py; this module checks around them.

One table, `_gpt2_layout`, maps our parameters to GPT-2's tensors: saving writes through it,
loading checks names and shapes against it before the lesson's loader copies with its own
mapping.
"""

import json
from pathlib import Path

import safetensors.torch
import torch
from torch import nn

from ch04_gpt_model.final_model import (
    GPT2_SIZES,
    GPTModel,
    gpt2_config,
)
from ch05_pretraining.pretraining import (
    load_weights_into_gpt,
    read_gpt2_weights,
)
from shared.architecture import check_architecture
from shared.checks import check
from shared.data import (
    check_safetensors,
    fetch,
)
from shared.safe_files import (
    SAVED_BY,
    write_model_folder,
)


# %% beyond_2_gpt2_files.ipynb cell 11, 5.5.1 The checked loader, and GPT-2's files both ways

def download_gpt2_weights(size: str = "gpt2-small (124M)", progress: bool = True) -> Path:
    """Path of OpenAI's GPT-2 weights of `size`, one of GPT2_SIZES (safetensors), downloaded on
    first use. shared.data registers them as "gpt2-small-weights" and so on."""
    return fetch(size.split()[0] + "-weights", progress=progress)


def read_gpt2_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """read_gpt2_weights (the lesson's) of a GPT-2 safetensors file, of a folder's
    model.safetensors, or of the shards its model.safetensors.index.json lists (as transformers
    saves a large model), each file checked first: a missing or cut-short file is named."""
    path, files = Path(path), [Path(path)]
    if path.is_dir():
        index = path / "model.safetensors.index.json"
        files = [path / "model.safetensors"]
        if index.is_file() and not files[0].exists():
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            files = [path / name for name in sorted(set(weight_map.values()))]
    params = {}
    for file in files:
        try:  # none there: FileNotFoundError, naming it
            check_safetensors(file)
        except ValueError as error:  # a download cut short, or PyTorch's pytorch_model.bin
            raise ValueError(f"{file} is not a safetensors file or is cut short: {error}") from None
        params.update(read_gpt2_weights(file))
    return params


# %% beyond_2_gpt2_files.ipynb cell 13, 5.5.1 The checked loader, and GPT-2's files both ways

def _gpt2_layout(gpt) -> list[tuple[str, list]]:
    """(name in a GPT-2 file, our parameters that make up that tensor), in file order: for a
    model of chapter 4's GPTModel layout (check_gpt2_architecture, below, refuses any other)."""
    layout = [("wte.weight", [gpt.tok_emb.weight]), ("wpe.weight", [gpt.pos_emb.weight])]
    for i, block in enumerate(gpt.trf_blocks):
        att, fc, proj = block.att, block.ff.layers[0], block.ff.layers[2]
        qkv_bias = [att.W_query.bias, att.W_key.bias, att.W_value.bias]
        if att.W_query.bias is None:  # GPT-2 always has these biases: zeros stand in for them
            qkv_bias = [att.W_query.weight.new_zeros(att.d_out)] * 3
        layout += [
            (f"h.{i}.ln_1.weight", [block.norm1.scale]),
            (f"h.{i}.ln_1.bias", [block.norm1.shift]),
            (f"h.{i}.attn.c_attn.weight", [att.W_query.weight, att.W_key.weight,
                                           att.W_value.weight]),
            (f"h.{i}.attn.c_attn.bias", qkv_bias),
            (f"h.{i}.attn.c_proj.weight", [att.out_proj.weight]),
            (f"h.{i}.attn.c_proj.bias", [att.out_proj.bias]),
            (f"h.{i}.ln_2.weight", [block.norm2.scale]),
            (f"h.{i}.ln_2.bias", [block.norm2.shift]),
            (f"h.{i}.mlp.c_fc.weight", [fc.weight]),
            (f"h.{i}.mlp.c_fc.bias", [fc.bias]),
            (f"h.{i}.mlp.c_proj.weight", [proj.weight]),
            (f"h.{i}.mlp.c_proj.bias", [proj.bias]),
        ]
    layout += [("ln_f.weight", [gpt.final_norm.scale]), ("ln_f.bias", [gpt.final_norm.shift])]
    if gpt.out_head.weight is not gpt.tok_emb.weight:
        layout.append(("lm_head.weight", [gpt.out_head.weight]))
    return layout


# %% beyond_2_gpt2_files.ipynb cell 15, 5.5.1 The checked loader, and GPT-2's files both ways

# The configuration keys the layout describes (chapter 4's GPTModel with its options
# `tie_weights` and `sdpa`); an architecture option added to GPTModel must be added here,
# with its tensors, to be used.
GPT2_LAYOUT_CONFIG_KEYS = ("vocab_size", "context_length", "emb_dim", "n_heads", "n_layers",
                           "drop_rate", "qkv_bias", "tie_weights", "sdpa")


def check_gpt2_architecture(model: nn.Module, user: str = "the GPT-2 layout",
                            instead: str = "") -> None:
    """Raise unless `model` is what the GPT-2 layout describes: chapter 4's GPTModel with the
    configuration keys GPT2_LAYOUT_CONFIG_KEYS (check_architecture says what else is refused)."""
    check("rope_base" not in getattr(model, "cfg", {}), f"{user} describes GPT-2's block, not "
          "4.8's modern family (rope_base): save_open_model saves it", TypeError)
    check_architecture(model, GPTModel, user, GPT2_LAYOUT_CONFIG_KEYS, instead=instead)


# %% beyond_2_gpt2_files.ipynb cell 17, 5.5.1 The checked loader, and GPT-2's files both ways

def _is_conv1d(name: str) -> bool:
    """GPT-2's Conv1D weights are stored (in, out); nn.Linear's are (out, in)."""
    return name.endswith("weight") and any(f".{m}." in name for m in ("c_attn", "c_proj", "c_fc"))


def _is_parameters(parts: list) -> bool:
    return all(isinstance(p, nn.Parameter) for p in parts)


def _to_gpt2(name: str, parts: list) -> torch.Tensor:
    """Our parameters -> the tensor GPT-2 stores under `name`."""
    if _is_conv1d(name):
        return torch.cat([p.detach().T for p in parts], dim=1)
    return torch.cat([p.detach() for p in parts], dim=0)


def gpt2_tensors(gpt: GPTModel) -> dict[str, torch.Tensor]:
    """`gpt`'s weights as GPT-2 stores them (its names, Conv1D matrices (in, out), q/k/v fused):
    what save_gpt2_safetensors writes. Fresh copies."""
    check_gpt2_architecture(gpt)  # another layout would be written as GPT-2's
    return {name: _to_gpt2(name, parts) for name, parts in _gpt2_layout(gpt)}


# %% beyond_2_gpt2_files.ipynb cell 19, 5.5.1 The checked loader, and GPT-2's files both ways

def load_gpt2_weights(gpt: GPTModel, params: dict) -> None:
    """The lesson's load_weights_into_gpt(gpt, params), after checking every name and shape:
    on any mismatch nothing is copied and ValueError lists the problems. Without
    `lm_head.weight` (OpenAI's files) the output head gets the token embedding, as GPT-2 ties
    the two."""
    check_gpt2_architecture(gpt)  # another layout would be read as GPT-2's
    _load_checked(gpt, params)


def _load_checked(gpt: GPTModel, params: dict) -> None:
    """load_gpt2_weights for a model of the GPT-2 layout: names and shapes compared, then
    copied by the lesson's loader."""
    layout = _gpt2_layout(gpt)
    if layout[-1][0] == "lm_head.weight" and "lm_head.weight" not in params:
        layout = layout[:-1]
    problems = [f"unexpected tensor {name}"
                for name in sorted(set(params) - {name for name, _ in layout})]
    for name, parts in layout:
        if name not in params:
            problems.append(f"missing tensor {name}")
        elif not _is_parameters(parts):
            problems.append(f"{name}: GPT-2 has query/key/value biases, this model none: build "
                            "it with qkv_bias=True")
        elif tuple(params[name].shape) != (expected := tuple(_to_gpt2(name, parts).shape)):
            problems.append(f"{name} has shape {tuple(params[name].shape)}, the model "
                            f"needs {expected}")
    check(not problems, "these weights do not fit the model:\n  " + "\n  ".join(problems))
    load_weights_into_gpt(gpt, params)


# %% beyond_2_gpt2_files.ipynb cell 21, 5.5.1 The checked loader, and GPT-2's files both ways

def save_gpt2_safetensors(gpt: GPTModel, folder: str | Path, *, replace: bool = False) -> Path:
    """Write `gpt` as a Hugging Face GPT-2 checkpoint: folder/model.safetensors, config.json.

    transformers' GPT2LMHeadModel.from_pretrained(folder) loads it. A model whose output head
    is not tied to the token embedding also writes lm_head.weight. The folder is written whole
    or not at all (write_model_folder): a model of the same architecture that this function
    saved there before is replaced, another model's save (of the names this writes) only with
    replace=True, and a folder holding any other file or folder never.
    """
    tensors = gpt2_tensors(gpt)  # refuses a model the layout does not describe
    cfg = gpt.cfg
    config = {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": cfg["vocab_size"],
        "n_positions": cfg["context_length"],
        "n_embd": cfg["emb_dim"],
        "n_layer": cfg["n_layers"],
        "n_head": cfg["n_heads"],
        "activation_function": "gelu_new",  # the tanh approximation, as our GELU
        "layer_norm_epsilon": gpt.final_norm.eps,
        "embd_pdrop": cfg["drop_rate"],
        "attn_pdrop": cfg["drop_rate"],
        "resid_pdrop": cfg["drop_rate"],
        "tie_word_embeddings": "lm_head.weight" not in tensors,
    }
    if cfg["vocab_size"] > 50256:  # GPT-2's <|endoftext|> exists in this vocabulary
        config["bos_token_id"] = config["eos_token_id"] = 50256

    def write(tmp: Path) -> None:
        safetensors.torch.save_file(tensors, tmp / "model.safetensors",
                                    metadata={"format": "pt", SAVED_BY: "save_gpt2_safetensors"})
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")

    # dropout is a training setting, not the architecture: a save with another drop_rate
    # computes the same logits, so it is replaced like any save of the same model
    same = {key: value for key, value in config.items() if not key.endswith("_pdrop")}
    write_model_folder(folder, write, "save_gpt2_safetensors", r"config\.json|model\.safetensors",
                       same, replace)
    return Path(folder)


# %% beyond_2_gpt2_files.ipynb cell 23, 5.5.1 The checked loader, and GPT-2's files both ways

def load_gpt2(source: str | Path = "gpt2-small (124M)", **overrides) -> GPTModel:
    """A GPTModel holding GPT-2 weights, with qkv_bias=True and then `overrides` (for example
    drop_rate=0.0).

    `source` is a size of GPT2_SIZES (OpenAI's weights, downloaded once; the configuration is
    that size's) or a GPT-2 safetensors file or folder, configured by the config.json beside
    it (its sizes only: a tied model comes back untied, unless tie_weights=True). A bare file
    without one (as OpenAI's are cached) is configured from its tensors' shapes, with the number
    of heads of the GPT-2 size of that width.
    """
    if source in GPT2_SIZES:
        path, cfg = download_gpt2_weights(source), gpt2_config(source)
    else:
        path = Path(source)
        cfg = _config_beside(path)
    params = read_gpt2_checkpoint(path)
    gpt = GPTModel({**(cfg or _config_from_shapes(params, overrides)), "qkv_bias": True,
                    **overrides})
    _load_checked(gpt, params)  # every name and shape compared first; the layout is GPTModel's
    return gpt


def read_config_json(config_file: Path, model_types: tuple[str, ...]) -> dict:
    """A Hugging Face config.json, refused naming the file if it is not a JSON object of one
    of `model_types`: a damaged download, or a folder of another architecture."""
    try:
        hf = json.loads(config_file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:  # JSONDecodeError is a ValueError
        raise ValueError(f"{config_file} is not valid JSON ({error}): download it again") from None
    kind = hf.get("model_type")  # another architecture would be read as this one, silently
    check(kind in model_types, f"{config_file}: model_type {kind!r} not in {model_types}")
    return hf


def _config_beside(path: Path) -> dict | None:
    """Our configuration from the transformers config.json beside a checkpoint, if there is one."""
    config_file = (path if path.is_dir() else path.parent) / "config.json"
    if not config_file.is_file():
        return None
    hf = read_config_json(config_file, ("gpt2",))
    return gpt2_config(vocab_size=hf["vocab_size"], context_length=hf["n_positions"],
                       emb_dim=hf["n_embd"], n_layers=hf["n_layer"], n_heads=hf["n_head"])


def _config_from_shapes(params: dict, overrides: dict) -> dict:
    vocab_size, emb_dim = params["wte.weight"].shape
    widths = {dims["emb_dim"]: dims["n_heads"] for dims in GPT2_SIZES.values()}
    check(emb_dim in widths or "n_heads" in overrides, lambda: f"the file's width, {emb_dim}, is "
          "no GPT-2 size's, so its number of heads is unknown: pass n_heads=..., or put its "
          "config.json beside the file")  # else attention's num_heads=None, far from the cause
    return gpt2_config(vocab_size=vocab_size, emb_dim=emb_dim, n_heads=widths.get(emb_dim),
                       context_length=params["wpe.weight"].shape[0],
                       n_layers=len({name.split(".")[1] for name in params if name[:2] == "h."}))


__all__ = [
    'download_gpt2_weights',
    'read_gpt2_checkpoint',
    'GPT2_LAYOUT_CONFIG_KEYS',
    'check_gpt2_architecture',
    'gpt2_tensors',
    'load_gpt2_weights',
    'save_gpt2_safetensors',
    'load_gpt2',
    'read_config_json',
]
