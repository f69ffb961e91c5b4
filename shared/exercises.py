"""Exercise checks that say right or not yet, and give a hint, never the answer.

An exercise cell holds the question and the learner's slot, `answer = None`, then
`check_answer("2.2", answer)`. What the answer should be is worked out out of sight, in the
chapter's `exercise_checks.py`, where each exercise is registered with one of two decorators:

* `value_exercise`: a function that computes the right answer (from the learner's own
  objects, passed to `check_answer` by keyword, where the answer depends on them); the
  learner's answer is compared with it, numbers within a tolerance;
* `property_exercise`: a function that tests what the learner built (a function, a module)
  and returns None when it is right, or what is still wrong.

A wrong answer gets a hint: first one that names the recognised mistake, if it is one of
the exercise's `mistakes`, then the exercise's hints, one more with each wrong try. No
message prints the expected value; the Solutions section at the end of each notebook is
where the answers are.
"""

from __future__ import annotations

import importlib
import math
import numbers
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Exercise:
    """One exercise's check: its hints and either `expected` or `check` (see the module doc)."""

    number: str
    hints: tuple[str, ...]
    expected: Callable[..., Any] | None = None
    check: Callable[..., str | None] | None = None
    # (a function from the expected value and the given objects to a typical wrong answer,
    #  the hint that wrong answer gets)
    mistakes: tuple[tuple[Callable[..., Any], str], ...] = ()
    rel_tol: float = 1e-4
    abs_tol: float = 1e-6
    # For the tests: {"given": {...}} for a value exercise; {"given": ..., "right": [...],
    # "wrong": [...]} for a property exercise. Small stand-ins for the notebook's objects.
    examples: Callable[[], dict] | None = field(default=None, compare=False)


# A property check returns this when the learner's function or object is still the stub
# (it returns None, say): the same reminder as `answer = None`, and no try is counted.
NOT_TRIED = "not tried yet"

REGISTRY: dict[str, Exercise] = {}
_wrong_tries: Counter = Counter()


def value_exercise(number: str, *, hints: Sequence[str], mistakes=(), rel_tol: float = 1e-4,
                   abs_tol: float = 1e-6, examples: Callable[[], dict] | None = None):
    """Register the decorated function as what exercise `number`'s answer must equal."""
    def register(expected):
        _register(Exercise(number, tuple(hints), expected=expected, mistakes=tuple(mistakes),
                           rel_tol=rel_tol, abs_tol=abs_tol, examples=examples))
        return expected
    return register


def property_exercise(number: str, *, hints: Sequence[str],
                      examples: Callable[[], dict] | None = None):
    """Register the decorated function, (answer, **given) -> None or what is wrong, as the
    check of exercise `number`."""
    def register(check):
        _register(Exercise(number, tuple(hints), check=check, examples=examples))
        return check
    return register


def _register(exercise: Exercise) -> None:
    if not exercise.hints:
        raise ValueError(f"exercise {exercise.number} needs at least one hint")
    REGISTRY[exercise.number] = exercise


def exercise_spec(number: str) -> Exercise:
    """The registered check of exercise `number`, from its chapter's exercise_checks.py."""
    if number not in REGISTRY:
        importlib.import_module(f"{_chapter_package(number)}.exercise_checks")
    if number not in REGISTRY:
        raise KeyError(f"no check is registered for exercise {number}")
    return REGISTRY[number]


def _chapter_package(number: str) -> str:
    from shared import CHAPTER_MODULES  # here, not at the top: shared imports this module

    chapter = number.split(".")[0]
    prefix = f"ch{int(chapter):02d}_" if chapter.isdigit() else None
    for module in CHAPTER_MODULES:
        if prefix and module.startswith(prefix):
            return module.split(".")[0]
    raise KeyError(f"exercise {number!r} names no chapter of the course")


def check_answer(exercise: str, answer, **given) -> bool:
    """Print whether `answer` to `exercise` is right, with a hint if not; return True if right.

    `given`: the objects of the notebook that the right answer depends on (say `model=model`).
    `answer=None` means "not tried yet" and prints a reminder instead of a verdict.
    """
    if answer is None:
        print(f"Exercise {exercise}: no answer yet (replace the None above with yours).")
        return False
    spec = exercise_spec(exercise)
    problem = verdict(spec, answer, given)
    if problem is NOT_TRIED:
        print(f"Exercise {exercise}: no answer yet (fill in the code above).")
        return False
    if problem is None:
        print(f"Exercise {exercise}: right.")
        return True
    _wrong_tries[exercise] += 1
    tries = _wrong_tries[exercise]
    hint = spec.hints[min(tries, len(spec.hints)) - 1]
    more = (" The Solutions section at the end works it out." if tries > len(spec.hints)
            else "")
    print(f"Exercise {exercise}: not yet. {problem} Hint: {hint}{more}")
    return False


def verdict(spec: Exercise, answer, given: dict) -> str | None:
    """None when `answer` is right, otherwise what is wrong with it, without the answer."""
    if spec.check is not None:
        return spec.check(answer, **given)
    expected = spec.expected(**given)
    problem = difference(answer, expected, spec.rel_tol, spec.abs_tol)
    if problem is None:  # right: no mistake to name (and some cost a pass over a dataset)
        return None
    for make_mistake, message in spec.mistakes:
        try:
            mistaken = make_mistake(expected, **given)
        except Exception:  # noqa: BLE001 - a mistake that does not apply to these objects
            continue
        if difference(answer, mistaken, spec.rel_tol, spec.abs_tol) is None:
            return message
    return problem


def plain(value):
    """numpy and 0-d torch numbers as Python numbers; everything else unchanged."""
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if getattr(value, "ndim", None) == 0 and hasattr(value, "item"):  # np.int64, tensor(3.)
        return value.item()
    return value


def difference(answer, expected, rel_tol: float = 1e-4, abs_tol: float = 1e-6) -> str | None:
    """None when `answer` matches `expected`, otherwise a sentence on how it differs.

    The sentence describes the answer (its kind, length, keys, shape, or whether a number is
    too large or too small), never the expected value.
    """
    answer, expected = plain(answer), plain(expected)
    if hasattr(expected, "shape") and hasattr(expected, "tolist"):  # a tensor or an array
        if not hasattr(answer, "shape") or not hasattr(answer, "tolist"):
            return f"The answer should be a tensor, not a {type(answer).__name__}."
        if tuple(answer.shape) != tuple(expected.shape):
            return f"Your tensor's shape, {tuple(answer.shape)}, is not the right one."
        if difference(answer.tolist(), expected.tolist(), rel_tol, abs_tol) is None:
            return None
        return "The shape is right, but some values differ."
    if isinstance(expected, bool):
        if not isinstance(answer, bool):
            return f"The answer should be True or False, not a {type(answer).__name__}."
        return None if answer == expected else "Not this one."
    if isinstance(expected, str):
        if not isinstance(answer, str):
            return f"The answer should be a string, not a {type(answer).__name__}."
        return None if answer == expected else "Not this one."
    if isinstance(expected, numbers.Real):
        if not isinstance(answer, numbers.Real) or isinstance(answer, bool):
            return f"The answer should be a number, not a {type(answer).__name__}."
        if not math.isfinite(answer):
            return f"The answer is {answer}, not a finite number."
        if isinstance(expected, int) and answer != int(answer):
            return "The answer is a count: a whole number."
        if isinstance(expected, int) and answer == expected:  # counts are exact
            return None
        if not isinstance(expected, int) and math.isclose(answer, expected, rel_tol=rel_tol,
                                                          abs_tol=abs_tol):
            return None
        return "It is too large." if answer > expected else "It is too small."
    if isinstance(expected, dict):
        if not isinstance(answer, dict):
            return f"The answer should be a dict, not a {type(answer).__name__}."
        if set(answer) != set(expected):
            return f"The answer should have exactly the keys {sorted(expected, key=str)}."
        for key in expected:
            problem = difference(answer[key], expected[key], rel_tol, abs_tol)
            if problem:
                return f"For {key!r}: {problem}"
        return None
    if isinstance(expected, (list, tuple)):
        if not isinstance(answer, (list, tuple)):
            return f"The answer should be a list or tuple, not a {type(answer).__name__}."
        if len(answer) != len(expected):
            return (f"The answer should have {len(expected)} items; "
                    f"yours has {len(answer)}.")
        for index, (a, e) in enumerate(zip(answer, expected)):
            problem = difference(a, e, rel_tol, abs_tol)
            if problem:  # a nested list's item: one path, "At [3][2] (counting from 0): ..."
                if problem.startswith("At ["):
                    return f"At [{index}]{problem[3:]}"
                return f"At [{index}] (counting from 0): {problem}"
        return None
    return None if answer == expected else "Not this one."
