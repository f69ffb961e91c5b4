"""The validation-share script counts what its docstring says it counts."""

import ast
import textwrap

from shared.module_stats import validation_lines


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
