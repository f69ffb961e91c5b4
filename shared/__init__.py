"""The course's one import surface: `from shared import X` for every chapter's exports.

Each chapter's notebook exports its final classes and functions to a module beside it
(see shared/notebooks.py). This package re-exports all of them, plus the infrastructure
every chapter uses: data fetching, seeding, device choice and plotting helpers.

Chapter modules are imported lazily, on first use of one of their names. That keeps
`import shared` cheap and lets a chapter module use `shared.data` without an import cycle;
chapter modules import earlier chapters' modules directly, never through `shared`.
"""

import ast
import importlib
import importlib.util
from pathlib import Path

from shared.data import (
    DATASETS,
    DataFetchError,
    Dataset,
    data_dir,
    fetch,
    mirror_dir,
    prepare_tiktoken_cache,
    read_text,
    sha256_of,
)
from shared.plotting import heatmap
from shared.utils import get_device, keep_freed_memory, set_seed


# In reading order. A new chapter module is added here and nowhere else.
CHAPTER_MODULES = (
    "ch02_text_data.text_data",
    "ch03_attention.attention",
    "ch04_gpt_model.gpt_model",
    "ch05_pretraining.pretraining",
    "ch06_classification.classification",
    "ch07_instructions.instructions",
)

INFRASTRUCTURE = [
    "DATASETS", "DataFetchError", "Dataset", "data_dir", "fetch", "mirror_dir", "sha256_of",
    "prepare_tiktoken_cache", "read_text", "heatmap", "get_device", "set_seed",
    "keep_freed_memory",
]

_chapter_names: dict[str, str] | None = None  # exported name -> module name


def chapter_exports() -> dict[str, str]:
    """Map every name the chapters export to its module; names must be unique.

    Read from each module's literal `__all__` (written by the exporter) without importing
    the module, so asking `shared` for an unknown name costs nothing.
    """
    global _chapter_names
    if _chapter_names is None:
        names: dict[str, str] = {}
        for module_name in CHAPTER_MODULES:
            for name in _literal_all(module_name):
                if name in names or name in INFRASTRUCTURE:
                    raise ImportError(
                        f"{name!r} is exported by both {module_name} and "
                        f"{names.get(name, 'shared')}; rename one of them"
                    )
                names[name] = module_name
        _chapter_names = names
    return _chapter_names


def _literal_all(module_name: str) -> list[str]:
    spec = importlib.util.find_spec(module_name)
    if spec is None or spec.origin is None:
        raise ImportError(f"no module {module_name}: run `python -m shared.notebooks export`")
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            return list(ast.literal_eval(node.value))
    raise ImportError(f"{spec.origin} has no literal __all__")


def __getattr__(name: str):
    if name == "__all__":
        return INFRASTRUCTURE + list(chapter_exports())
    module_name = chapter_exports().get(name)
    if module_name is None:
        raise AttributeError(f"module 'shared' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__getattr__("__all__")))


# tiktoken.get_encoding("gpt2") works offline once GPT-2's BPE files are local or mirrored.
prepare_tiktoken_cache()
