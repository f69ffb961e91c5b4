"""Tests of what chapter 6's companion module mistakes.py gives the companion notebooks
(beyond_2_mistakes.ipynb): `lesson_setup`."""

import torch

from ch06_classification.mistakes import lesson_setup


def test_lesson_setup_trains_the_classifier_once_then_reads_it_back(tmp_path, monkeypatch):
    monkeypatch.setenv("LLM_COURSE_QUICK", "1")  # the lesson's quick run: 48 training messages
    monkeypatch.delenv("LLM_COURSE_PROFILE", raising=False)
    path = tmp_path / "review_classifier.pth"
    trained = lesson_setup(path)  # no file yet: trained as the lesson's 6.7, then saved
    assert path.is_file()
    assert (len(trained.train_df), len(trained.validation_df), len(trained.test_df)) == (48, 16, 16)
    assert trained.model.out_head.out_features == 2 and not trained.model.training
    fresh = trained.build_classifier()
    assert not torch.equal(fresh.out_head.weight, trained.model.out_head.weight)  # it trained
    read = lesson_setup(path)  # the file is there: read, not trained again
    assert all(torch.equal(a, b) for a, b in zip(read.model.state_dict().values(),
                                                 trained.model.state_dict().values()))
    assert read.train_dataset.encoded_texts == trained.train_dataset.encoded_texts
