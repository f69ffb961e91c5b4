"""Chapter 5's other modules copy out on their own too (`python -m shared.tooling.notebooks
standalone ch05_pretraining.<module>`): each standalone file runs outside the repository and
passes ruff."""

import subprocess
import sys
import textwrap

import pytest

from shared.data import PROJECT_ROOT
from shared.tooling.standalone import standalone_source
from shared.tooling.test_standalone import (
    ALL_PACKAGES,
    imports_only_what_the_header_names,
    refuse_imports_of,
    run_python,
    third_party_of,
)


USES = {
    "ch05_pretraining.checkpoints": """
        import torch
        model = torch.nn.Linear(3, 2)
        save_checkpoint("c.pth", model, step=7)
        assert load_checkpoint("c.pth", torch.nn.Linear(3, 2))["step"] == 7
    """,
    "ch05_pretraining.gpt2_weights": """
        import torch
        torch.manual_seed(0)
        cfg = gpt2_config(vocab_size=50, context_length=8, emb_dim=16, n_heads=2, n_layers=1,
                          qkv_bias=True, tie_weights=True)
        model = GPTModel(cfg).eval()
        save_gpt2_safetensors(model, "out")
        ids = torch.tensor([[1, 2, 3]])
        assert torch.equal(load_gpt2("out").eval()(ids), model(ids))
        loaded = GPTModel(cfg).eval()
        load_gpt2_weights(loaded, gpt2_tensors(model))
        assert torch.equal(loaded(ids), model(ids))
    """,
    "ch05_pretraining.fast_path": """
        import torch
        from torch import nn
        torch.manual_seed(0)
        model = nn.Sequential(nn.Embedding(100, 32), nn.Linear(32, 32), nn.GELU(),
                              nn.Dropout(0.1), nn.Linear(32, 100, bias=False))
        ids = torch.randint(0, 100, (2, 9))
        with torch.no_grad():
            torch.testing.assert_close(FastDecoder(model)(ids), model.eval()(ids))
        loss = chunked_cross_entropy(torch.randn(2, 9, 32), model[-1].weight, ids)
        assert 3.0 < loss.item() < 20.0
    """,
}


@pytest.mark.parametrize("module", sorted(USES))
def test_the_module_works_alone_outside_the_repository(module, tmp_path):
    source = standalone_source(module)
    path = tmp_path / f"{module.split('.')[1]}_standalone.py"
    path.write_text(source, encoding="utf-8")
    code = (refuse_imports_of(ALL_PACKAGES) + imports_only_what_the_header_names(path.stem, source)
            + f"from {path.stem} import *\n" + textwrap.dedent(USES[module]))
    result = run_python(code, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    header, optional, imports, guarded = third_party_of(source)
    assert header == imports and optional == guarded
    lint = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache",
                           "--config", str(PROJECT_ROOT / "pyproject.toml"),
                           "--select", "F,I,E", "--ignore", "E501", str(path)],
                          text=True, capture_output=True)
    assert lint.returncode == 0, lint.stdout[-3000:]
