"""Tests of exercises 6.1, 6.2 and 6.5's checks: each refuses the answers that skip the
exercise (a number worked out from the text, the chapter's model frozen afterwards, a share
read off section 6.7) and accepts what doing the exercise yields."""

import copy
from types import SimpleNamespace

import pytest
import torch

from ch06_classification import exercise_checks as checks
from shared.exercises import exercise_spec, verdict


def problem(number, answer, **given):
    return verdict(exercise_spec(number), answer, given)


# Exercise 6.1: the learner's training set, padded to the context --------------------------

GIVEN_61 = {"model": SimpleNamespace(cfg={"context_length": 16}), "train_df": checks._TRAIN}


def test_6_1_accepts_the_training_set_padded_to_the_context():
    assert problem("6.1", checks._tiny_dataset(checks._TRAIN, 16), **GIVEN_61) is None


@pytest.mark.parametrize("fake", [0.7628, 0.7624, "0.76", None.__class__])
def test_6_1_refuses_a_number_worked_out_from_the_text(fake):
    assert "training dataset itself" in problem("6.1", fake, **GIVEN_61)


def test_6_1_refuses_the_chapters_padding_and_other_splits():
    longest = max(len(checks._gpt2().encode(text)) for text in checks._TRAIN["Text"])
    assert "context length" in problem("6.1", checks._tiny_dataset(checks._TRAIN, longest),
                                       **GIVEN_61)
    assert "training split" in problem("6.1", checks._tiny_dataset(checks._VALIDATION, 16),
                                       **GIVEN_61)
    assert "label" in problem("6.1", checks._tiny_dataset(checks._TRAIN, 16, flip_labels=True),
                              **GIVEN_61)
    assert "50256" in problem("6.1", checks._tiny_dataset(checks._TRAIN, 16, pad_token_id=0),
                              **GIVEN_61)


# Exercise 6.2: a fresh classifier, trained with its token embedding frozen -----------------

def given_62(main):
    return {"val_loader": checks._tiny_setup()[1], "model": main,
            "build_classifier": lambda: copy.deepcopy(checks._tiny_setup()[0])}


def test_6_2_accepts_a_fresh_classifier_trained_with_a_frozen_embedding():
    right = checks._tiny_variant(freeze_embedding=True)
    assert problem("6.2", right, **given_62(checks._tiny_main())) is None


def test_6_2_refuses_the_chapters_model_frozen_afterwards():
    # default profile: every layer of the chapter's model trained, its embedding too
    main = checks._tiny_main()
    fake = checks._frozen_afterwards(copy.deepcopy(main))
    assert "not the one a fresh classifier" in problem("6.2", fake, **given_62(main))
    # the same model with the fresh embedding put back
    fake = checks._frozen_afterwards(copy.deepcopy(main), embedding_of=checks._tiny_setup()[0])
    assert "chapter's finetuned model" in problem("6.2", fake, **given_62(main))


def test_6_2_refuses_the_book_profiles_model_frozen_afterwards():
    # book profile: only the last block of the chapter's model trained; its embedding is the
    # pretrained one, as a fresh classifier's
    main = checks._nudged(checks._tiny_setup()[0], lambda name: name.startswith("trf_blocks.1."))
    fake = checks._frozen_afterwards(copy.deepcopy(main))
    assert "chapter's finetuned model" in problem("6.2", fake, **given_62(main))


def test_6_2_refuses_an_untrained_fresh_classifier():
    fresh = checks._tiny_variant(freeze_embedding=True, trained=False)
    assert "not been trained" in problem("6.2", fresh, **given_62(checks._tiny_main()))


def test_6_2s_fresh_classifier_leaves_the_learners_random_state_alone():
    import random

    import numpy as np

    def build():  # seeds, as build_classifier does
        random.seed(123)
        np.random.seed(123)
        torch.manual_seed(123)
        return copy.deepcopy(checks._tiny_setup()[0])

    states = torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy()
    checks._built_quietly(build)
    assert torch.equal(torch.get_rng_state(), states[0])
    assert random.getstate() == states[1]
    assert (np.random.get_state()[1] == states[2]).all()


# Exercise 6.5: the left-out ham messages, classified by the learner ------------------------

GIVEN_65 = {"model": checks._tiny_spam_model(), "df": checks._COLLECTION,
            "balanced_df": checks._COLLECTION.iloc[:4],
            "train_dataset": SimpleNamespace(max_length=5)}


def flagged(max_length):
    return checks._flagged_share(GIVEN_65["model"], checks._left_out(
        GIVEN_65["df"], GIVEN_65["balanced_df"]), max_length)


def test_6_5_accepts_the_share_counted_with_classify_review():
    from ch06_classification.classification import classify_review

    texts = checks._left_out(GIVEN_65["df"], GIVEN_65["balanced_df"])
    answers = [classify_review(text, GIVEN_65["model"], checks._gpt2(), "cpu", max_length=5)
               for text in texts]
    share = answers.count("spam") / len(answers)
    assert share == flagged(5)
    assert problem("6.5", share, **GIVEN_65) is None


def test_6_5_refuses_the_test_splits_numbers_and_the_unpadded_answers():
    # what sections before the exercise print: the balanced baseline (149 of 300) and the
    # test ham flagged as spam (9 of 149)
    for fake in (149 / 300, 9 / 149, 1 - 9 / 149):
        assert problem("6.5", fake, **GIVEN_65) is not None
    assert "padding" in problem("6.5", flagged(None), **GIVEN_65)
    assert "classified as ham" in problem("6.5", 1 - flagged(5), **GIVEN_65)


def test_6_5_puts_the_model_back_in_its_mode():
    model = checks._tiny_spam_model().train()
    checks._flagged_share(model, ["Ok lar"], 5)
    assert model.training
