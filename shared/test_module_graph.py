"""What the chapter modules import from each other, read from the generated files.

A generated module imports each name from the module that defines it (the exporter turns a
cell's `from shared import X` into `from ch04_gpt_model.gpt_model import X`), so the files
show the real graph. A companion module (exported by a `beyond_N_*.ipynb`) is one topic past
the book; one that leans on another chapter's companion drags that topic into every copy of
it (`standalone`) and into its reader's path. Each such edge is allowed only with its reason
below.
"""

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import shared
from shared.data import PROJECT_ROOT


# (importer, imported): why the companion needs another chapter's companion.
ALLOWED_COMPANION_EDGES = {
    ("ch04_gpt_model.final_model", "ch03_attention.kv_cache"):
        "the final GPTModel's make_kv_caches makes chapter 3's KVCache, one per block",
    ("ch05_pretraining.open_weights", "ch04_gpt_model.modern"):
        "today's open models load into 4.8's ModernGPTModel: the companion's subject",
    ("ch05_pretraining.attention_variants", "ch04_gpt_model.modern"):
        "the variants are configurations of 4.8's ModernGPTModel: the companion compares them",
    ("ch05_pretraining.scaling", "ch04_gpt_model.modern"):
        "the sweep's models are 4.8's ModernGPTModel in Llama's shape, one rung of sizes each",
    ("ch05_pretraining.shakespeare", "ch02_text_data.bpe"):
        "the Shakespeare GPT reads its corpus through a BPE trained on it (BPETokenizer.train)",
    ("ch06_classification.mistakes", "ch05_pretraining.gpt2_weights"):
        "lesson_setup loads OpenAI's GPT-2 in the book profile with the checked load_gpt2",
    ("ch07_instructions.evaluation", "ch05_pretraining.gpt2_weights"):
        "the lesson's run is rebuilt from OpenAI's GPT-2 in the book profile (load_gpt2)",
    ("ch07_instructions.evaluation", "ch05_pretraining.training"):
        "the lesson's finetuning is redone silently: train_model(progress=False, no warmup, "
        "constant rate, no clipping) makes train_model_simple's updates without its printing",
    ("ch07_instructions.grpo", "ch05_pretraining.benchmarks"):
        "the held-out accuracies' 95% intervals are 5.12's wilson_interval",
    ("ch07_instructions.grpo", "ch05_pretraining.decoding"):
        "a group of answers is sampled with generate_text (5.7's KV cache), which runs the "
        "course's GPTModel and the open models alike: the loop's one sampler",
    ("ch07_instructions.grpo", "ch05_pretraining.training"):
        "the task's model is pretrained and finetuned with train_model (progress=False: silent, "
        "with warm-up and clipping), as the lesson's finetuning is redone in evaluation.py",
    ("ch07_instructions.evaluation", "ch05_pretraining.checkpoints"):
        "the redone finetuning is saved with save_weights, whole or not at all, so that a "
        "stopped run never leaves half a file for the next one to load",
}


def module_path(module_name: str) -> Path:
    return PROJECT_ROOT / Path(*module_name.split(".")).with_suffix(".py")


def is_companion(module_name: str) -> bool:
    """Exported by a companion notebook (`# Generated from chNN_.../beyond_N_*.ipynb`)."""
    first = module_path(module_name).read_text(encoding="utf-8").partition("\n")[0]
    match = re.match(r"# Generated from (\S+\.ipynb)$", first)
    assert match, f"{module_name}: not a generated module"
    return Path(match.group(1)).name.startswith("beyond_")


def imported_modules(module_name: str) -> dict[str, int]:
    """The chapter modules `module_name` imports, at any depth, with the first line of each."""
    tree = ast.parse(module_path(module_name).read_text(encoding="utf-8"))
    found: dict[str, int] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            assert node.module != "shared" or not (
                {alias.name for alias in node.names} & set(shared.chapter_exports())), (
                f"{module_name}, line {node.lineno}: a chapter name imported through `shared` "
                "hides the edge; export again (`python -m shared.tooling.notebooks export`)")
            targets = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            if target in shared.CHAPTER_MODULES and target != module_name:
                found.setdefault(target, node.lineno)
    return found


def companion_edges() -> dict[tuple[str, str], int]:
    """(companion, another chapter's companion) -> the line that imports it."""
    modules = shared.present_chapter_modules()
    edges = {}
    for importer in modules:
        if not is_companion(importer):
            continue
        for imported, line in imported_modules(importer).items():
            if imported.split(".")[0] != importer.split(".")[0] and is_companion(imported):
                edges[importer, imported] = line
    return edges


# Companion modules that any later companion may import, with the reason.
COMPANIONS_EVERY_CHAPTER_BUILDS = {
    "ch04_gpt_model.final_model":
        "the final GPTModel, the book's model with its checks, weight tying and KV caches: the "
        "class chapters 5 to 7 build (`shared.GPTModel`), kept out of the lesson's module so "
        "that chapter 4's copy is the book's code",
}


def test_no_companion_imports_another_chapters_companion_without_a_reason():
    unexplained = [f"{importer} imports {imported} (line {line})"
                   for (importer, imported), line in companion_edges().items()
                   if (importer, imported) not in ALLOWED_COMPANION_EDGES
                   and imported not in COMPANIONS_EVERY_CHAPTER_BUILDS]
    assert not unexplained, (
        "a companion module leans on another chapter's companion: import the lesson's code "
        "instead, or add the edge with its reason to ALLOWED_COMPANION_EDGES:\n"
        + "\n".join(unexplained))


def test_every_allowed_edge_still_exists():
    """An allowance that outlives its edge would let the next one in unexamined."""
    present = set(shared.present_chapter_modules())
    stale = [edge for edge in ALLOWED_COMPANION_EDGES
             if set(edge) <= present and edge not in companion_edges()]
    assert not stale, f"remove these from ALLOWED_COMPANION_EDGES: {stale}"


def test_the_edges_are_read_from_every_import_form(tmp_path, monkeypatch):
    """The reader sees nested imports and `from package import module` too."""
    monkeypatch.setattr(shared, "CHAPTER_MODULES", ("ch00_x.a", "ch00_x.b", "ch00_x.c"))
    monkeypatch.setattr(shared, "chapter_exports", lambda: {"Model": "ch00_x.b"})
    monkeypatch.setattr(f"{__name__}.PROJECT_ROOT", tmp_path)
    folder = tmp_path / "ch00_x"
    folder.mkdir()
    (folder / "a.py").write_text(
        "# Generated from ch00_x/beyond_1_a.ipynb\nfrom ch00_x import b\n\n"
        "def f():\n    from ch00_x.c import g\n    return g\n")
    assert imported_modules("ch00_x.a") == {"ch00_x.b": 2, "ch00_x.c": 5}
    (folder / "a.py").write_text("# Generated from ch00_x/a.ipynb\nfrom shared import Model\n")
    with pytest.raises(AssertionError, match="line 2: a chapter name imported through"):
        imported_modules("ch00_x.a")


def test_import_shared_loads_no_plotting_distributed_or_safetensors_module():
    """`import shared` loads what every chapter needs, not what one use needs: matplotlib when
    a figure is drawn, safetensors when a model's file is read or checked, torch.distributed
    under pretrain.py. (torch imports torch.distributed itself: the test counts what `shared`
    adds to what `import torch` loaded.)"""
    code = ("import json, sys, torch; before = set(sys.modules); import shared; "
            "print(json.dumps(sorted(set(sys.modules) - before)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=PROJECT_ROOT, check=True)
    added = json.loads(result.stdout)
    assert "shared" in added  # what it reports is what `import shared` loaded
    heavy = [name for name in added
             if name.split(".")[0] in ("matplotlib", "safetensors")
             or name.startswith("torch.distributed")]
    assert not heavy, f"`import shared` loads {heavy}: import them where they are used"
