import torch

from shared.exercises import check_answer


def test_right_answers_are_accepted(capsys):
    assert check_answer("4.1", 4_722_432, 4_722_432)
    assert check_answer("3.2", torch.ones(2, 6, 2), torch.ones(2, 6, 2))
    assert check_answer("x", {"a": [1, 2.00000001]}, {"a": [1, 2.0]})
    assert capsys.readouterr().out.count("right.") == 3


def test_wrong_answers_say_what_differs(capsys):
    assert not check_answer("4.1", 4_722_431, 4_722_432)
    assert "Expected 4,722,432, got 4,722,431." in capsys.readouterr().out
    assert not check_answer("3.2", torch.ones(2, 6, 4), torch.ones(2, 6, 2))
    assert "Expected shape (2, 6, 2), got (2, 6, 4)." in capsys.readouterr().out
    assert not check_answer("3.1", torch.zeros(2, 2), torch.ones(2, 2))
    assert "some values differ" in capsys.readouterr().out
    assert not check_answer("2.1", ["Ak", "w"], ["Ak", "wir"])
    assert "Item 1" in capsys.readouterr().out
    assert not check_answer("2.2", True, 1.0)


def test_none_means_not_tried_yet(capsys):
    assert not check_answer("2.2", None, 3)
    assert "no answer yet" in capsys.readouterr().out
