"""Tests of final_model.py (beyond_2_final_model.ipynb): parameter_groups splits a model's count
(the final GPTModel's own tests are in test_gpt_model.py and test_bad_inputs.py)."""

import pytest
import torch

from ch04_gpt_model.final_model import GPT2_SIZES, GPTModel, gpt2_config, parameter_groups
from ch04_gpt_model.gpt_model import count_parameters


@pytest.mark.parametrize("size", list(GPT2_SIZES))
def test_the_groups_of_an_untied_model_add_up_to_its_count(size):
    with torch.device("meta"):  # shapes only: XL would take over 6 GiB
        model = GPTModel(gpt2_config(size))
    groups = parameter_groups(model)
    assert list(groups) == ["token embedding", "position embedding", "attention + feed-forward",
                            "layer norms", "output head"]
    assert sum(groups.values()) == count_parameters(model)
    assert groups["token embedding"] == groups["output head"] == 50257 * model.cfg["emb_dim"]
    assert groups["layer norms"] == (2 * model.cfg["n_layers"] + 1) * 2 * model.cfg["emb_dim"]
