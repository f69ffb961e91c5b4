"""Checking a learner's answer to an exercise: says right, or what is still wrong."""

from __future__ import annotations

import math


def check_answer(exercise: str, answer, expected, *, rel_tol: float = 1e-4,
                 abs_tol: float = 1e-6) -> bool:
    """Print whether `answer` to `exercise` matches `expected`, and return it.

    Numbers match within `rel_tol`/`abs_tol`; tensors and arrays must have the expected shape
    and values; sequences, dicts and strings must be equal. `answer=None` means "not tried
    yet" and prints a reminder instead of a verdict.
    """
    if answer is None:
        print(f"Exercise {exercise}: no answer yet (replace the None above with yours).")
        return False
    problem = _difference(answer, expected, rel_tol, abs_tol)
    if problem is None:
        print(f"Exercise {exercise}: right.")
        return True
    print(f"Exercise {exercise}: not yet. {problem}")
    return False


def _difference(answer, expected, rel_tol: float, abs_tol: float) -> str | None:
    """None when `answer` matches `expected`, otherwise a sentence saying how it differs."""
    if hasattr(expected, "shape") and hasattr(expected, "tolist"):  # a tensor or an array
        if not hasattr(answer, "shape"):
            return (f"Expected a tensor of shape {tuple(expected.shape)}, "
                    f"got {type(answer).__name__}.")
        if tuple(answer.shape) != tuple(expected.shape):
            return f"Expected shape {tuple(expected.shape)}, got {tuple(answer.shape)}."
        return _difference(answer.tolist(), expected.tolist(), rel_tol, abs_tol) and (
            "The shape is right, but some values differ.")
    if isinstance(expected, bool) or isinstance(expected, str):
        return None if answer == expected else f"Expected {expected!r}, got {answer!r}."
    if isinstance(expected, (int, float)):
        if not isinstance(answer, (int, float)) or isinstance(answer, bool):
            return f"Expected a number, got {type(answer).__name__}."
        if isinstance(expected, int) and isinstance(answer, int):  # counts are exact
            return None if answer == expected else f"Expected {expected:,}, got {answer:,}."
        if math.isclose(answer, expected, rel_tol=rel_tol, abs_tol=abs_tol):
            return None
        return f"Expected about {expected:.4g}, got {answer:.4g}."
    if isinstance(expected, dict):
        if not isinstance(answer, dict) or set(answer) != set(expected):
            return f"Expected the keys {sorted(expected)}."
        for key in expected:
            problem = _difference(answer[key], expected[key], rel_tol, abs_tol)
            if problem:
                return f"For {key!r}: {problem}"
        return None
    if isinstance(expected, (list, tuple)):
        if not isinstance(answer, (list, tuple)) or len(answer) != len(expected):
            return f"Expected {len(expected)} items, got {answer!r}."
        for index, (a, e) in enumerate(zip(answer, expected)):
            problem = _difference(a, e, rel_tol, abs_tol)
            if problem:
                return f"Item {index}: {problem}"
        return None
    return None if answer == expected else f"Expected {expected!r}, got {answer!r}."
