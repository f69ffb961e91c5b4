# Generated from ch05_pretraining/pretraining.ipynb by `python -m shared.notebooks export`.
# Do not edit: change the notebook's cells marked `#| export open_weights`, then export again.
# Each `# %%` line names the cell the code below it came from.

# %% pretraining.ipynb cell 126, 5.9 Loading today's open models: Llama 3 and Qwen3 (beyond the ...

"""Chapter 5, section 5.9 (beyond the book): Llama 3 and Qwen3 checkpoints in their published
Hugging Face format (config.json, safetensors, one file or shards with an index) loaded into
chapter 4's ModernGPTModel without a second copy in memory."""

import json
from pathlib import Path

import safetensors
import tiktoken
import tiktoken.load
import tokenizers
import torch

from shared import (
    ModernGPTModel,
    check,
    check_choice,
    check_entries,
    mirror_dir,
    read_config_json,
)


# %% pretraining.ipynb cell 127, 5.9 Loading today's open models: Llama 3 and Qwen3 (beyond the ...

OPEN_MODEL_TYPES = ("llama", "qwen3", "qwen3_moe")  # config.json's model_type


def config_from_hf(hf: dict) -> dict:
    """ModernGPTModel's configuration for a Llama 3 or Qwen3 (dense or MoE) config.json;
    an option the model does not compute is refused by name, never dropped."""
    check_choice("model_type", hf.get("model_type"), OPEN_MODEL_TYPES)
    # transformers 5 names RoPE's settings rope_parameters (rope_theta among them); 4 named
    # them rope_scaling, with rope_theta beside
    rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    computed = {"attention_bias": False, "mlp_bias": False, "hidden_act": "silu",  # key: what
                "use_sliding_window": False, "mlp_only_layers": [], "decoder_sparse_step": 1,
                "quantization_config": None}  # ours computes, also a missing key's meaning
    unsupported = [f"{key}={hf[key]!r}" for key, value in computed.items()
                   if hf.get(key, value) != value]
    if rope_type not in ("default", "llama3"):
        unsupported.append(f"RoPE scaling {rope_type!r} (only Llama 3's)")
    check(not unsupported, f"ModernGPTModel does not compute {', '.join(unsupported)}")
    try:
        cfg = {"vocab_size": hf["vocab_size"], "context_length": hf["max_position_embeddings"],
               "emb_dim": hf["hidden_size"], "n_heads": hf["num_attention_heads"],
               "n_layers": hf["num_hidden_layers"],
               "n_kv_groups": hf.get("num_key_value_heads") or hf["num_attention_heads"],
               "rope_base": float(rope.get("rope_theta", hf.get("rope_theta", 10_000.0))),
               "head_dim": hf.get("head_dim"),
               "qk_norm": hf["model_type"] != "llama",  # Qwen3's QK-norm, dense and MoE
               "norm_eps": hf["rms_norm_eps"], "tie_weights": hf.get("tie_word_embeddings", False)}
        if rope_type == "llama3":
            names = ("factor", "low_freq_factor", "high_freq_factor")
            cfg["rope_freq"] = {**{key: rope[key] for key in names},
                                "original_context_length": rope["original_max_position_embeddings"]}
        if hf["model_type"] == "qwen3_moe":
            cfg.update(num_experts=hf.get("num_experts") or hf["num_local_experts"],
                       num_experts_per_tok=hf["num_experts_per_tok"],
                       moe_hidden_dim=hf["moe_intermediate_size"],
                       norm_topk_prob=hf["norm_topk_prob"])
        else:
            cfg["hidden_dim"] = hf["intermediate_size"]
    except KeyError as error:
        raise ValueError(f"config.json has no {error.args[0]!r}, which a "
                         f"{hf['model_type']} model needs") from None
    return cfg


# %% pretraining.ipynb cell 129, 5.9 Loading today's open models: Llama 3 and Qwen3 (beyond the ...

def hf_layout(model: ModernGPTModel) -> dict[str, str]:
    """Each tensor name of a Hugging Face Llama/Qwen3 checkpoint -> our parameter's name."""
    layout = {"model.embed_tokens.weight": "tok_emb.weight",
              "model.norm.weight": "final_norm.weight"}
    if not model.cfg["tie_weights"]:
        layout["lm_head.weight"] = "out_head.weight"
    attention = {"q_proj": "W_query", "k_proj": "W_key", "v_proj": "W_value", "o_proj": "out_proj"}
    if model.cfg["qk_norm"]:
        attention.update(q_norm="q_norm", k_norm="k_norm")
    # the feed-forward's name prefixes: one per expert, or one empty prefix for a dense model
    experts = ({f"experts.{e}.": f"experts.{e}." for e in range(model.cfg["num_experts"])}
               if model.cfg["num_experts"] else {"": ""})
    for i in range(model.cfg["n_layers"]):
        hf, ours = f"model.layers.{i}.", f"trf_blocks.{i}."
        layout[hf + "input_layernorm.weight"] = ours + "norm1.weight"
        layout[hf + "post_attention_layernorm.weight"] = ours + "norm2.weight"
        for theirs, mine in attention.items():
            layout[f"{hf}self_attn.{theirs}.weight"] = f"{ours}att.{mine}.weight"
        if model.cfg["num_experts"]:
            layout[hf + "mlp.gate.weight"] = ours + "ff.router.weight"
        for theirs, mine in experts.items():
            for part in ("gate", "up", "down"):
                layout[f"{hf}mlp.{theirs}{part}_proj.weight"] = f"{ours}ff.{mine}{part}.weight"
    return layout


# %% pretraining.ipynb cell 130, 5.9 Loading today's open models: Llama 3 and Qwen3 (beyond the ...

def tensor_files(folder: Path) -> dict[str, Path]:
    """Each tensor name of a model folder -> the safetensors file that holds it."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():  # shards: the index says where each tensor is
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        return {name: folder / file for name, file in weight_map.items()}
    single = folder / "model.safetensors"
    check(single.is_file(), f"{folder} has neither model.safetensors nor "
          "model.safetensors.index.json", FileNotFoundError)
    with safetensors.safe_open(single, framework="pt") as f:
        return dict.fromkeys(f.keys(), single)


def load_open_model(folder: str | Path, dtype: torch.dtype | None = None) -> ModernGPTModel:
    """A ModernGPTModel with the weights of a Hugging Face Llama 3 or Qwen3 folder, in eval
    mode; dtype None keeps the stored one (bfloat16 for the published models). All names and
    shapes are checked before any tensor is read."""
    folder = Path(folder)
    check(dtype is None or isinstance(dtype, torch.dtype) and dtype.is_floating_point,
          f"dtype must be None or a floating-point torch.dtype, got {dtype!r}", TypeError)
    check((folder / "config.json").is_file(), f"no config.json in {folder}: expected a Hugging "
          "Face model folder (download_open_model makes one)", FileNotFoundError)
    cfg = config_from_hf(read_config_json(folder / "config.json", OPEN_MODEL_TYPES))
    with torch.device("meta"):  # shapes only: the parameters will be the tensors read
        model = ModernGPTModel(cfg)
    layout, files = hf_layout(model), tensor_files(folder)
    if cfg["tie_weights"]:  # some tied checkpoints store a copy of the head: it is not read
        files.pop("lm_head.weight", None)
    missing, unknown = sorted(set(layout) - set(files)), sorted(set(files) - set(layout))
    check(not missing and not unknown, f"the tensors in {folder} are not those its config.json "
          f"describes: missing {missing[:3] or 'none'}, unexpected {unknown[:3] or 'none'}")
    expected, by_file = model.state_dict(), {}
    for name, path in files.items():
        by_file.setdefault(path, []).append(name)
    for path, names in by_file.items():  # every shape first, from the files' headers
        with safetensors.safe_open(path, framework="pt") as f:
            for name in names:
                shape, wanted = tuple(f.get_slice(name).get_shape()), tuple(
                    expected[layout[name]].shape)
                check(shape == wanted, f"{name} in {path.name} has shape {shape}; config.json "
                      f"implies {wanted}")
    state = {}
    for path, names in by_file.items():
        with safetensors.safe_open(path, framework="pt") as f:  # memory-mapped
            for name in names:
                tensor = f.get_tensor(name)
                state[layout[name]] = tensor if dtype is None else tensor.to(dtype)
    if cfg["tie_weights"]:
        state["out_head.weight"] = state["tok_emb.weight"]
    model.load_state_dict(state, assign=True)  # the tensors become the parameters: no copy
    if cfg["tie_weights"]:
        model.out_head.weight = model.tok_emb.weight  # one Parameter again, as in training
    return model.eval()


# %% pretraining.ipynb cell 132, 5.9 Loading today's open models: Llama 3 and Qwen3 (beyond the ...

def download_open_model(repo_id: str, local_dir: str | Path | None = None,
                        token: str | None = None) -> Path:
    """The folder of a Hub model ("Qwen/Qwen3-0.6B", "meta-llama/Llama-3.2-1B"): from the
    course's data mirror if it holds one, else downloaded (config, weights, tokenizer files)."""
    mirror = mirror_dir()
    if mirror is not None and (mirror / repo_id / "config.json").is_file():
        return mirror / repo_id
    from huggingface_hub import snapshot_download  # only needed here, and it is slow to import
    return Path(snapshot_download(repo_id, local_dir=local_dir, token=token, allow_patterns=[
        "*.json", "*.safetensors", "original/tokenizer.model"]))


# %% pretraining.ipynb cell 137, 5.9.1 Their tokenizers and chat templates

LLAMA3_SPLIT_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                        r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
LLAMA3_SPECIAL_TOKENS = (  # ids 128000 onwards; the rest of the 256 are reserved
    "<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
    "<|reserved_special_token_1|>", "<|finetune_right_pad_id|>", "<|step_id|>",
    "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>", "<|python_tag|>")


def load_llama3_tokenizer(path: str | Path) -> tiktoken.Encoding:
    """Llama 3's tokenizer from its tiktoken-format file (original/tokenizer.model): the ranks,
    Meta's split pattern, and 256 special tokens numbered after the ranks."""
    path = Path(path)
    check(path.is_file(), f"no tokenizer file at {path}", FileNotFoundError)
    ranks = tiktoken.load.load_tiktoken_bpe(str(path))
    reserved = range(2, 2 + 256 - len(LLAMA3_SPECIAL_TOKENS))  # 256 special tokens in all
    names = [*LLAMA3_SPECIAL_TOKENS, *(f"<|reserved_special_token_{i}|>" for i in reserved)]
    return tiktoken.Encoding(path.stem, pat_str=LLAMA3_SPLIT_PATTERN, mergeable_ranks=ranks,
                             special_tokens={name: len(ranks) + i for i, name in enumerate(names)})


class HFTokenizer:
    """A Hugging Face tokenizer.json (Qwen3's), read by the `tokenizers` library, behind an
    encode(text) and a decode(ids) like chapter 2's. Special tokens written in the text become
    those tokens (tiktoken's allowed_special="all"), as in transformers."""

    def __init__(self, path: str | Path):
        path = Path(path)
        path = path / "tokenizer.json" if path.is_dir() else path
        check(path.is_file(), f"no tokenizer.json at {path}", FileNotFoundError)
        self.tokenizer = tokenizers.Tokenizer.from_file(str(path))

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=False)


# %% pretraining.ipynb cell 139, 5.9.1 Their tokenizers and chat templates

def chat_prompt(messages: list[dict], style: str, thinking: bool = True) -> str:
    """The text a chat model continues: each {"role", "content"} message in the markers of
    `style` ("llama3" or "qwen3"), then the opening of the assistant's turn. thinking=False
    gives Qwen3 the empty reasoning block that asks it to answer directly (Llama 3 has none)."""
    check_choice("style", style, ("llama3", "qwen3"))
    check_entries(messages, ("role", "content"))
    if style == "llama3":
        turns = "".join(f"<|start_header_id|>{m['role']}<|end_header_id|>\n\n"  # stripped,
                        f"{m['content'].strip()}<|eot_id|>" for m in messages)  # as Meta's is
        return f"<|begin_of_text|>{turns}<|start_header_id|>assistant<|end_header_id|>\n\n"
    turns = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return f"{turns}<|im_start|>assistant\n" + ("" if thinking else "<think>\n\n</think>\n\n")


__all__ = [
    'OPEN_MODEL_TYPES',
    'config_from_hf',
    'hf_layout',
    'tensor_files',
    'load_open_model',
    'download_open_model',
    'LLAMA3_SPLIT_PATTERN',
    'LLAMA3_SPECIAL_TOKENS',
    'load_llama3_tokenizer',
    'HFTokenizer',
    'chat_prompt',
]
