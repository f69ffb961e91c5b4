"""One refusal rule for code that recomputes a model from its weights or writes them in a fixed
layout: `check_architecture(model, family, ...)`.

A fast decoder (chapter 5's FastDecoder and FastModernDecoder) recomputes a model's forward pass
from its weights; a saver (GPT-2's files, 5.5.1; the open models' files, 5.9) writes them under
names that describe one architecture. Both would silently get a changed model wrong: a method
overridden, a block or norm swapped, a hook, an unmerged LoRA adapter, a classification head, a
configuration key they do not know. So they compare the model with `family(model.cfg)` built on
the meta device (shapes only: no memory, no random draws) and refuse, naming what differs.
"""

import torch
from torch import nn

from shared.checks import check, check_type


def check_architecture(model: nn.Module, family: type, user: str, config_keys,
                       options: dict | None = None, instead: str = "") -> None:
    """Raise, naming what differs, unless `model` computes exactly what `family` computes with
    the configuration keys `config_keys` (any other key must be one of `options`, a dict of
    option: default, left at its default). `user` recomputes the model from its weights (a fast
    decoder) or writes them in a layout (a saver), and would get anything else wrong: a changed
    method, block or norm, a hook, an unmerged adapter, a classification head, a key it does
    not know. Compared with family(model.cfg) built on the meta device (shapes only, no memory,
    no random draws). `instead`: what to do instead, added to every refusal."""
    def refuse_unless(ok, message, error=ValueError):
        check(ok, lambda: f"{user} does not support {message()}" + (f": {instead}" if instead
                                                                        else ""), error)

    family_name = family.__name__
    check_type("model", model, family, f"a {family_name}")
    head, vocab_size = getattr(model, "out_head", None), model.cfg["vocab_size"]
    outputs = model.cfg.get("num_classes") or (
        head.weight.shape[0] if isinstance(head, nn.Linear) else vocab_size)
    refuse_unless(outputs == vocab_size, lambda: f"a classification head ({outputs} outputs, "
                  f"the vocabulary has {vocab_size}), only a language model's head")
    options = options or {}
    odd = [f"{key}={model.cfg[key]!r}" for key in model.cfg if key not in config_keys
           and (key not in options or model.cfg[key] != options[key])]
    refuse_unless(not odd, lambda: f"the configuration {', '.join(odd)}; it computes "
                  f"{', '.join(config_keys)}" + (", the other options at their defaults"
                                                 if options else ""))
    own = family.__mro__[:family.__mro__.index(nn.Module)]  # family and its bases below Module
    methods = {name for cls in own for name, method in vars(cls).items()
               if callable(method) and not name.startswith("__")}
    overridden = sorted(name for name in methods
                        if getattr(type(model), name) is not getattr(family, name))
    refuse_unless(not overridden, lambda: f"{type(model).__name__}: it overrides "
                  f"{family_name}'s {' and '.join(overridden)}", TypeError)
    hooked = [name or "the model" for name, module in model.named_modules()
              if module._forward_hooks or module._forward_pre_hooks]
    refuse_unless(not hooked, lambda: f"hooks, and {hooked[0]} has one (remove it with the "
                  "handle register_forward_hook or register_forward_pre_hook returned)",
                  TypeError)
    everywhere = nn.modules.module  # hooks registered for every module at once
    refuse_unless(not (everywhere._global_forward_hooks or everywhere._global_forward_pre_hooks),
                  lambda: "hooks, and one is registered for every module (remove it with the "
                  "handle register_module_forward_hook or register_module_forward_pre_hook "
                  "returned, or leave the `with` block of the tool that registered it, such as "
                  "FlopCounterMode)", TypeError)
    with torch.device("meta"):
        reference = family(model.cfg)
    expected = dict(reference.named_modules())
    odd_modules = [(name, type(module), type(expected[name]))
                   for name, module in model.named_modules()
                   if name and name in expected and type(module) is not type(expected[name])]
    refuse_unless(not odd_modules, lambda: "; ".join(
        f"{name}: a {_class_name(kind, wanted)} where {family_name} has a "
        f"{_class_name(wanted, kind)}"
        for name, kind, wanted in odd_modules[:3]) + (
        " (adapters? merge them into the weights first: merge_lora, chapter 6)"
        if any(wanted is nn.Linear for *_, wanted in odd_modules) else ""), TypeError)
    extra = [name for name, _ in model.named_modules() if name and name not in expected]
    refuse_unless(not extra, lambda: f"modules {family_name}(model.cfg) does not have: "
                  f"{', '.join(extra[:3])}", TypeError)
    replaced = [f"{name or 'model'}.{attr}" for name, module in model.named_modules()
                for attr, value in vars(module).items()
                if callable(value) and callable(getattr(type(module), attr, None))]
    refuse_unless(not replaced, lambda: f"methods replaced on an instance: "
                  f"{', '.join(replaced[:3])}", TypeError)
    found, wanted = (dict(m.named_parameters(remove_duplicate=False)) for m in (model, reference))
    shapes = [f"{name} of shape {tuple(found[name].shape)}, {family_name}(model.cfg) has "
              f"{tuple(p.shape)}" if name in found else f"a model without {name}"
              for name, p in wanted.items()
              if name not in found or found[name].shape != p.shape]
    shapes += [f"{name}, a parameter {family_name} does not have" for name in found
               if name not in wanted]
    refuse_unless(not shapes, lambda: "; ".join(shapes[:3]))


def _class_name(cls, other) -> str:
    """cls's name, with its module where `other` has the same name (nn.LayerNorm, ours)."""
    same = cls.__name__ == other.__name__
    return f"{cls.__module__}.{cls.__qualname__}" if same else cls.__name__
