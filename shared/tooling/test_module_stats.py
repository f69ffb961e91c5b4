"""The validation-share script counts what its docstring says it counts."""

import ast
import math
import textwrap

from shared.tooling import module_stats
from shared.tooling.module_stats import validation_lines


SOURCE = textwrap.dedent('''
    def _check_sizes(n):
        check_count("n", n, 1)

    def check_if_running(name) -> bool:
        return name == "python"

    def train(n, rate):
        check_count("n", n, 1)
        if rate < 0:
            raise ValueError("rate")
        try:
            total = n * rate
        except TypeError:
            raise TypeError("rate must be a number") from None
        return total
''')


def test_checks_raises_and_reraises_count_and_a_question_does_not():
    counted = validation_lines(ast.parse(SOURCE))
    lines = SOURCE.splitlines()
    assert sorted(lines[i - 1].strip() for i in counted) == sorted([
        "def _check_sizes(n):", 'check_count("n", n, 1)', 'check_count("n", n, 1)',
        "if rate < 0:", 'raise ValueError("rate")', "except TypeError:",
        'raise TypeError("rate must be a number") from None'])


# --- ceilings: checks stay a small share of each module, and the share only goes down ---

def test_every_module_is_within_its_ceiling():
    assert module_stats.over_ceiling(module_stats.all_rows()) == []


def test_a_ceiling_follows_its_module_down():
    # A module a point under its ceiling lowers the ceiling (a ratchet), and a module back under
    # its target leaves CEILINGS, so the entry never hides room to grow.
    shares = dict((name, module_stats.share(s)) for name, s in module_stats.all_rows())
    for name, ceiling in module_stats.CEILINGS.items():
        target = (module_stats.LESSON_TARGET if module_stats.is_lesson_module(name)
                  else module_stats.OTHER_TARGET)
        assert name in shares, f"CEILINGS names {name}, which is not a module module_stats reads"
        assert ceiling > target, f"{name} is at its target: remove it from CEILINGS"
        lower = max(math.ceil(shares[name] * 10) / 10, target)
        assert shares[name] > ceiling - 1, \
            f"{name} is at {shares[name]:.1f}%: lower its ceiling to {lower}"


def test_the_check_fails_on_a_module_over_its_ceiling(monkeypatch, capsys):
    name, stats = module_stats.all_rows()[0]
    monkeypatch.setitem(module_stats.CEILINGS, name, module_stats.share(stats) - 0.1)
    assert module_stats.main(["--check"]) == 1
    assert f"{name}: {module_stats.share(stats):.1f}% of its code lines are checks, over its " \
           "ceiling" in capsys.readouterr().out


def test_lesson_modules_are_told_apart():
    assert module_stats.is_lesson_module("ch05_pretraining.pretraining")
    assert not module_stats.is_lesson_module("ch05_pretraining.checkpoints")
