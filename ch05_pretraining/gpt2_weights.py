# Generated from ch05_pretraining/beyond_2_gpt2_files.ipynb
# by `python -m shared.tooling.notebooks export`. Do not edit: change the notebook's cells
# marked `#| export gpt2_weights`, then export again.
# Each `# %%` line names the cell the code below it came from.

# %% beyond_2_gpt2_files.ipynb cell 10, 5.5.1 The checked loader, and GPT-2's files both ways

"""Chapter 5, section 5.5: GPT-2's weights: read OpenAI's files, load them into a GPTModel,
save a GPTModel in their format, and the book's names for the same steps.

One table, `_gpt2_layout`, maps GPT-2's tensors to our parameters, for loading and saving
alike.
"""

import json
import re
from pathlib import Path

import numpy as np
import safetensors.torch
import torch
from torch import nn

from ch04_gpt_model.gpt_model import (
    GPT2_SIZES,
    GPTModel,
    gpt2_config,
)
from ch04_gpt_model.modern import ModernGPTModel
from shared.architecture import check_architecture
from shared.checks import (
    check,
    check_choice,
    check_same_shape,
)
from shared.data import (
    check_safetensors,
    fetch,
)
from shared.safe_files import (
    SAVED_BY,
    write_model_folder,
)
from shared.utils import write_atomically


# %% beyond_2_gpt2_files.ipynb cell 11, 5.5.1 The checked loader, and GPT-2's files both ways

_MASK_BUFFER = re.compile(r"h\.\d+\.attn\.(masked_)?bias")


def download_gpt2_weights(size: str = "gpt2-small (124M)", progress: bool = True) -> Path:
    """Path of OpenAI's GPT-2 weights of `size`, one of GPT2_SIZES (safetensors), downloaded on
    first use. shared.data registers them as "gpt2-small-weights" and so on."""
    check_choice("size", size, GPT2_SIZES)  # "gpt2-small" gets: did you mean "gpt2-small (124M)"?
    return fetch(size.split()[0] + "-weights", progress=progress)


def read_gpt2_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a GPT-2 safetensors file, or of a folder's model.safetensors (or of the
    shards its model.safetensors.index.json lists, as transformers saves a large model).

    Names are normalised to those of OpenAI's release: a `transformer.` prefix (transformers'
    GPT2LMHeadModel) is removed and the causal-mask buffers `h.N.attn.bias` are dropped.
    """
    path, files = Path(path), [Path(path)]
    if path.is_dir():
        index = path / "model.safetensors.index.json"
        files = [path / "model.safetensors"]
        if index.is_file() and not files[0].exists():
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            files = [path / name for name in sorted(set(weight_map.values()))]
    params = {}
    for file in files:
        check(file.is_file(), f"no GPT-2 weights at {file}", FileNotFoundError)
        try:
            check_safetensors(file)
        except ValueError as error:
            raise ValueError(f"{file} is not a safetensors file, or is cut short ({error}); "
                             "PyTorch's pytorch_model.bin is not read: use the model.safetensors "
                             "published beside it") from None
        for name, tensor in safetensors.torch.load_file(file).items():
            name = name.removeprefix("transformer.")
            if not _MASK_BUFFER.fullmatch(name):
                params[name] = tensor
    return params


# %% beyond_2_gpt2_files.ipynb cell 14, 5.5.1 The checked loader, and GPT-2's files both ways

def _gpt2_layout(gpt) -> list[tuple[str, list]]:
    """(name in a GPT-2 file, our parameters that make up that tensor), in file order."""
    check_gpt2_architecture(gpt)  # another layout would be read or written as GPT-2's
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


# %% beyond_2_gpt2_files.ipynb cell 16, 5.5.1 The checked loader, and GPT-2's files both ways

# The configuration keys the layout describes (chapter 4's GPTModel with its options
# `tie_weights` and `sdpa`); an architecture option added to GPTModel must be added here,
# with its tensors, to be used.
GPT2_LAYOUT_CONFIG_KEYS = ("vocab_size", "context_length", "emb_dim", "n_heads", "n_layers",
                           "drop_rate", "qkv_bias", "tie_weights", "sdpa")


def check_gpt2_architecture(model: nn.Module, user: str = "the GPT-2 layout",
                            instead: str = "") -> None:
    """Raise unless `model` is what the GPT-2 layout describes: chapter 4's GPTModel with the
    configuration keys GPT2_LAYOUT_CONFIG_KEYS (check_architecture says what else is refused)."""
    check("rope_base" not in getattr(model, "cfg", {}), f"{user} describes GPT-2's block, and "
          "this is a model of 4.8's modern family (it has rope_base): save_open_model saves it",
          TypeError)
    check_architecture(model, GPTModel, user, GPT2_LAYOUT_CONFIG_KEYS, instead=instead)


# %% beyond_2_gpt2_files.ipynb cell 18, 5.5.1 The checked loader, and GPT-2's files both ways

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
    return {name: _to_gpt2(name, parts) for name, parts in _gpt2_layout(gpt)}


# %% beyond_2_gpt2_files.ipynb cell 20, 5.5.1 The checked loader, and GPT-2's files both ways

def load_weights_into_gpt(gpt: GPTModel, params: dict) -> None:
    """Copy GPT-2 weights `params` into `gpt`: names as read_gpt2_weights returns them, or the
    book's nested layout (as download_and_load_gpt2 returns it).

    Every name and shape is checked first; on any mismatch nothing is copied and ValueError
    lists the problems. Without `lm_head.weight` (OpenAI's files) the output head gets the
    token embedding, as GPT-2 ties the two.
    """
    if "blocks" in params:  # the book's nested layout
        params = _from_book_layout(params)
    layout = _gpt2_layout(gpt)
    head_from_wte = layout[-1][0] == "lm_head.weight" and "lm_head.weight" not in params
    if head_from_wte:
        layout = layout[:-1]
    problems = [f"unexpected tensor {name}"
                for name in sorted(set(params) - {name for name, _ in layout})]
    for name, parts in layout:
        if name not in params:
            problems.append(f"missing tensor {name}")
            continue
        expected = tuple(_to_gpt2(name, parts).shape)
        if tuple(params[name].shape) != expected:
            problems.append(f"{name} has shape {tuple(params[name].shape)}, the model "
                            f"needs {expected}")
        elif not _is_parameters(parts) and params[name].any():
            problems.append(f"{name} holds query/key/value biases: build the model with "
                            f"qkv_bias=True")
    check(not problems, "these weights do not fit the model:\n  " + "\n  ".join(problems))

    with torch.no_grad():
        for name, parts in layout:
            if not _is_parameters(parts):
                continue
            conv1d = _is_conv1d(name)
            pieces = params[name].split([p.shape[0] for p in parts], dim=1 if conv1d else 0)
            for param, piece in zip(parts, pieces):
                param.copy_(piece.T if conv1d else piece)
        if head_from_wte:
            gpt.out_head.weight.copy_(gpt.tok_emb.weight)


def _from_book_layout(nested: dict) -> dict[str, torch.Tensor]:
    """The book's nested params (see book_gpt2_params, below) -> tensors under GPT-2's names."""
    def flatten(prefix, tree):
        for key, value in tree.items():
            if isinstance(value, dict):
                yield from flatten(f"{prefix}{key}.", value)
            else:
                yield prefix + {"w": "weight", "g": "weight", "b": "bias"}[key], value

    flat = {"wte.weight": nested["wte"], "wpe.weight": nested["wpe"],
            "ln_f.weight": nested["g"], "ln_f.bias": nested["b"]}
    for i, block in enumerate(nested["blocks"]):
        flat.update(flatten(f"h.{i}.", block))
    return {name: torch.as_tensor(np.asarray(value)) for name, value in flat.items()}


# %% beyond_2_gpt2_files.ipynb cell 22, 5.5.1 The checked loader, and GPT-2's files both ways

def save_gpt2_safetensors(gpt: GPTModel, folder: str | Path, *, replace: bool = False) -> Path:
    """Write `gpt` as a Hugging Face GPT-2 checkpoint: folder/model.safetensors, config.json.

    transformers' GPT2LMHeadModel.from_pretrained(folder) loads it. A model whose output head
    is not tied to the token embedding also writes lm_head.weight. The folder is written whole
    or not at all (write_model_folder): a model of the same architecture that this function
    saved there before is replaced, another model's save (of the names this writes) only with
    replace=True, and a folder holding any other file or folder never.
    """
    check(not isinstance(gpt, ModernGPTModel), "gpt is a ModernGPTModel (4.8's block: Llama 3's, "
          "Qwen3's, Gemma 3's), which GPT-2's format cannot describe: save it with save_open_model "
          "(5.9)", TypeError)
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


# %% beyond_2_gpt2_files.ipynb cell 24, 5.5.1 The checked loader, and GPT-2's files both ways

def load_gpt2(source: str | Path = "gpt2-small (124M)", **overrides) -> GPTModel:
    """A GPTModel holding GPT-2 weights, with qkv_bias=True and then `overrides` (for example
    drop_rate=0.0).

    `source` is a size of GPT2_SIZES (OpenAI's weights, downloaded once; the configuration is
    that size's) or a GPT-2 safetensors file or folder, configured by the config.json beside
    it. A bare file without one (as OpenAI's are cached) is configured from its tensors'
    shapes, with the number of heads of the GPT-2 size of that width.
    """
    if source in GPT2_SIZES:
        path, cfg = download_gpt2_weights(source), gpt2_config(source)
    else:
        path = Path(source)
        check(path.exists(), lambda: f"{str(source)!r} is not a file or folder, nor a GPT-2 size "
              f"({', '.join(GPT2_SIZES)})", FileNotFoundError)
        cfg = _config_beside(path)
    params = read_gpt2_weights(path)
    gpt = GPTModel({**(cfg or _config_from_shapes(params, overrides)), "qkv_bias": True,
                    **overrides})
    load_weights_into_gpt(gpt, params)  # checks every name and shape first
    return gpt


def read_config_json(config_file: Path, model_types: tuple[str, ...]) -> dict:
    """A Hugging Face config.json, refused naming the file if it is not a JSON object of one
    of `model_types`: a damaged download, or a folder of another architecture."""
    try:
        hf = json.loads(config_file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:  # JSONDecodeError is a ValueError
        raise ValueError(f"{config_file} is not valid JSON ({error}): damaged or cut short? "
                         "download it again") from None
    check(isinstance(hf, dict), f"{config_file} holds a JSON {type(hf).__name__}, not an "
          "object of settings")
    check(hf.get("model_type") in model_types, lambda: f"{config_file} describes a "
          f"{hf.get('model_type')!r} model, not {' or '.join(map(repr, model_types))} "
          "(load_gpt2 loads GPT-2 folders, load_open_model Llama 3, Qwen3 and Gemma 3 ones)")
    return hf


def _config_beside(path: Path) -> dict | None:
    """Our configuration from the transformers config.json beside a checkpoint, if there is one."""
    config_file = (path if path.is_dir() else path.parent) / "config.json"
    if not config_file.is_file():
        return None
    hf = read_config_json(config_file, ("gpt2",))
    missing = [key for key in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head")
               if key not in hf]
    check(not missing, f"{config_file} has no {', '.join(missing)}: damaged? save it again")
    return gpt2_config(vocab_size=hf["vocab_size"], context_length=hf["n_positions"],
                       emb_dim=hf["n_embd"], n_layers=hf["n_layer"], n_heads=hf["n_head"])


def _config_from_shapes(params: dict, overrides: dict) -> dict:
    vocab_size, emb_dim = params["wte.weight"].shape
    widths = {dims["emb_dim"]: dims["n_heads"] for dims in GPT2_SIZES.values()}
    check(emb_dim in widths or "n_heads" in overrides,
          f"no config.json gives the number of heads for width {emb_dim}; pass n_heads=...")
    return gpt2_config(vocab_size=vocab_size, emb_dim=emb_dim, n_heads=widths.get(emb_dim),
                       context_length=params["wpe.weight"].shape[0],
                       n_layers=len({name.split(".")[1] for name in params if name[:2] == "h."}))


# %% beyond_2_gpt2_files.ipynb cell 37, The book's names

BOOK_GPT2_SIZES = {"124M": "gpt2-small (124M)", "355M": "gpt2-medium (355M)",
                   "774M": "gpt2-large (774M)", "1558M": "gpt2-xl (1558M)"}


def download_and_load_gpt2(model_size: str, models_dir: str | Path) -> tuple[dict, dict]:
    """The book's (settings, params) of OpenAI's GPT-2 of `model_size` ("124M" ... "1558M").

    Read from the safetensors file of download_gpt2_weights (data/, or the local mirror when
    one is configured), not from TensorFlow files; models_dir/model_size gets hparams.json.
    """
    check_choice("model_size", model_size, BOOK_GPT2_SIZES)
    cfg = gpt2_config(BOOK_GPT2_SIZES[model_size])
    settings = {"n_vocab": cfg["vocab_size"], "n_ctx": cfg["context_length"],
                "n_embd": cfg["emb_dim"], "n_head": cfg["n_heads"], "n_layer": cfg["n_layers"]}
    params = read_gpt2_weights(download_gpt2_weights(BOOK_GPT2_SIZES[model_size]))
    folder = Path(models_dir) / model_size  # only now: a failed download leaves no folder
    folder.mkdir(parents=True, exist_ok=True)
    write_atomically(folder / "hparams.json",
                     lambda tmp: tmp.write_text(json.dumps(settings, indent=2) + "\n"))
    return settings, book_gpt2_params(params)


def book_gpt2_params(params: dict[str, torch.Tensor]) -> dict:
    """GPT-2 tensors under their file names -> the book's nested layout of NumPy arrays:
    {"wte", "wpe", "g", "b" (the final norm), "blocks": [{"ln_1": {"g", "b"}, "attn":
    {"c_attn": {"w", "b"}, "c_proj": {...}}, "mlp": {"c_fc", "c_proj"}, "ln_2"}, ...]}."""
    head = params.get("lm_head.weight")
    check(head is None or torch.equal(head, params["wte.weight"]), "the book's layout has no "
          "output head of its own (GPT-2 ties it to wte): save a model with tie_weights=True")
    n_blocks = len({name.split(".")[1] for name in params if name.startswith("h.")})
    nested = {"blocks": [{} for _ in range(n_blocks)]}
    for name, tensor in params.items():
        array = tensor.detach().cpu().float().numpy()
        module, leaf = name.rsplit(".", 1)  # "h.0.attn.c_attn", "weight"
        if module in ("wte", "wpe"):
            nested[module] = array
        elif module != "lm_head":
            place, scopes = nested, module.split(".")[1:]  # ln_f: the top level
            if module.startswith("h."):
                place, scopes = nested["blocks"][int(scopes[0])], module.split(".")[2:]
            for scope in scopes:
                place = place.setdefault(scope, {})
            norm = module.split(".")[-1].startswith("ln_")
            place[{"weight": "g" if norm else "w", "bias": "b"}[leaf]] = array
    return nested


def assign(left: torch.Tensor, right) -> nn.Parameter:
    """The book's helper: `right` (a tensor or an array) as a new parameter of `left`'s shape."""
    right = torch.as_tensor(right)
    check_same_shape("right", right, "left", left, "the parameter it replaces")
    return nn.Parameter(right.detach().clone().to(left.dtype))


def load_gpt2_params_from_tf_ckpt(ckpt_path: str | Path, settings: dict) -> dict:
    """The book's reader of OpenAI's TensorFlow checkpoint: params in the book's nested layout.
    It needs TensorFlow; download_and_load_gpt2 reads the same weights without it."""
    try:
        import tensorflow as tf
    except ImportError:
        raise ImportError("load_gpt2_params_from_tf_ckpt reads TensorFlow checkpoints and needs "
                          "the tensorflow package (pip install tensorflow); "
                          "download_and_load_gpt2 reads the same weights from safetensors "
                          "without it") from None
    params = {}
    for tf_name, _ in tf.train.list_variables(str(ckpt_path)):  # "model/h0/attn/c_attn/w"
        scopes = tf_name.split("/")[1:]
        if re.fullmatch(r"h\d+", scopes[0]):
            scopes = ["h", scopes[0][1:], *scopes[1:]]
        leaf = {"w": "weight", "g": "weight", "b": "bias"}.get(scopes[-1])
        name = ".".join(scopes[:-1] + [leaf]) if leaf else f"{scopes[0]}.weight"  # wte, wpe
        params[name] = torch.from_numpy(np.squeeze(tf.train.load_variable(str(ckpt_path),
                                                                          tf_name)))
    nested = book_gpt2_params(params)
    check(len(nested["blocks"]) == settings["n_layer"],
          f"{ckpt_path} holds {len(nested['blocks'])} blocks, settings say {settings['n_layer']}")
    return nested


__all__ = [
    'download_gpt2_weights',
    'read_gpt2_weights',
    'GPT2_LAYOUT_CONFIG_KEYS',
    'check_gpt2_architecture',
    'gpt2_tensors',
    'load_weights_into_gpt',
    'save_gpt2_safetensors',
    'load_gpt2',
    'read_config_json',
    'BOOK_GPT2_SIZES',
    'download_and_load_gpt2',
    'book_gpt2_params',
    'assign',
    'load_gpt2_params_from_tf_ckpt',
]
