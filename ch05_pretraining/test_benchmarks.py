"""Section 5.12's measures (benchmarks.py): bits per byte, multiple-choice scoring against a
direct computation, the benchmark readers on files in the published formats, and the
Tiny Shakespeare next-line benchmark."""

import csv
import json
import math

import pytest
import torch

from ch05_pretraining.attention_variants import CharTokenizer
from ch05_pretraining.benchmarks import (
    CountingModel,
    Question,
    accuracy,
    bits_per_byte,
    choice_log_likelihoods,
    next_line_questions,
    pick,
    read_arc,
    read_hellaswag,
    read_mmlu,
    shuffled_line_questions,
    wilson_interval,
)
from ch05_pretraining.shakespeare import nats_per_character, ngram_loss
from conftest import tiny_gpt


ALPHABET = "abcdefghijklmnopqrstuvwxyz .,:\n'ABCDEFGHIJKLMNOPQRSTUVWXYZ?0123456789é"


@pytest.fixture
def chars():
    return CharTokenizer(ALPHABET)


def model_over(tokenizer, seed=0):
    return tiny_gpt(seed, vocab_size=tokenizer.n_vocab, context_length=32)


def direct_log_likelihood(model, tokenizer, context, choice):
    """log P(choice | context), one forward pass over context + choice alone, token by token."""
    ids = tokenizer.encode(context) + tokenizer.encode(choice)
    with torch.no_grad():
        log_probs = torch.log_softmax(model(torch.tensor([ids])), dim=-1)[0]
    start = len(tokenizer.encode(context))
    return sum(log_probs[p - 1, ids[p]].item() for p in range(start, len(ids)))


def test_choice_scores_equal_a_direct_computation_for_each_choice(chars):
    model = model_over(chars)
    question = Question("the cat sat on", [" the mat", " a", " the old red chair", "."], 0)
    scores = choice_log_likelihoods(model, chars, question)
    for (total, tokens), choice in zip(scores, question.choices):
        assert tokens == len(choice)
        # batched with padding after the shorter choices: causal attention keeps them apart
        assert total == pytest.approx(direct_log_likelihood(model, chars, question.context,
                                                            choice), abs=1e-5)


def test_a_long_context_loses_its_start_and_keeps_the_choices_whole(chars):
    model = model_over(chars)  # a window of 32 tokens
    question = Question("x" * 50 + " the end of a long passage", [" yes", " no, never"], 0)
    scores = choice_log_likelihoods(model, chars, question)
    kept = question.context[-(32 - len(" no, never")):]
    for (total, _), choice in zip(scores, question.choices):
        assert total == pytest.approx(direct_log_likelihood(model, chars, kept, choice),
                                      abs=1e-5)


def test_the_normalisations_pick_what_their_definitions_pick(chars):
    model = model_over(chars, seed=3)
    question = Question("to be or not", [" to be", " a", " to be, that is the question", "?"],
                        2)
    scores = choice_log_likelihoods(model, chars, question)
    by = {"sum": [total for total, _ in scores],
          "per token": [total / n for total, n in scores],
          "per byte": [total / len(c.encode()) for (total, _), c in zip(scores, question.choices)]}
    for normalisation, values in by.items():
        assert pick(scores, question, normalisation) == values.index(max(values))


def test_per_byte_counts_bytes_not_characters(chars):
    # unigram counts in which "é" and "e" are equally likely: the choices' summed log-probs
    # are equal, but "é" is two bytes of UTF-8, so per byte it scores higher (less negative/2)
    ids = chars.encode("ab e é")
    counts = CountingModel(ids, chars.n_vocab, order=1, add_k=1.0, context_length=8).eval()
    question = Question("ab", ["e", "é"], 1)
    (e_total, _), (accent_total, _) = choice_log_likelihoods(counts, chars, question)
    assert e_total == pytest.approx(accent_total)
    assert pick(choice_log_likelihoods(counts, chars, question), question, "per byte") == 1


def test_accuracy_counts_right_picks_and_gives_wilsons_interval(chars):
    model = model_over(chars)
    # the same question with either answer, three times: whichever the model picks, 3 of 6
    questions = [Question("the cat sat on", [" the mat", " a"], answer) for answer in (0, 1)] * 3
    for share, interval in accuracy(model, chars, questions).values():
        assert share == pytest.approx(0.5)
        assert interval == pytest.approx(wilson_interval(3, 6))


def test_wilson_interval_against_published_values():
    # 0 of 10: (0, 0.2775); 5 of 10: (0.2366, 0.7634) (Wilson, 1927; as tabulated by
    # Brown, Cai and DasGupta, 2001)
    low, high = wilson_interval(0, 10)
    assert low == pytest.approx(0, abs=1e-9) and high == pytest.approx(0.2775, abs=1e-4)
    assert wilson_interval(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)


def test_bits_per_byte_is_nats_per_character_in_bits_per_utf8_byte(chars):
    model = model_over(chars)
    text = "ab cd ef gh ij kl mn op qr st uv wx yz " * 3 + "é"  # one two-byte character
    nats = nats_per_character(model, chars, text) * (len(text) - 1)
    assert bits_per_byte(model, chars, text) == pytest.approx(
        nats / math.log(2) / (len(text.encode()) - 1))


def test_counting_models_compute_ngram_loss(chars):
    text = "the cat sat on the mat and the dog sat on the log\n" * 4
    train, held = chars.encode(text), chars.encode("the rat sat on the cat\n")
    for order in (1, 2):
        counts = CountingModel(train, chars.n_vocab, order, 0.1, context_length=64).eval()
        with torch.no_grad():
            logits = counts(torch.tensor([held[:-1]]))[0]
        loss = torch.nn.functional.cross_entropy(logits, torch.tensor(held[1:]))
        # ngram_loss's unigram also predicts the first token; compare the same positions
        expected = ngram_loss(train, held[1:] if order == 1 else held, chars.n_vocab, order, 0.1)
        assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_next_line_questions_hide_the_true_next_line_among_others():
    lines = ["ROMEO:" if i % 5 == 0 else f"line number {i} of the play, in verse"
             for i in range(200)]
    text = "\n".join(lines) + "\n"
    questions = next_line_questions(text, 20, context_chars=120, seed=7)
    assert len(questions) == 20
    for question in questions:
        true_line = question.choices[question.answer]
        assert text.startswith(question.context) or ("\n" + question.context) in text
        assert (question.context + true_line) in text  # the context, then that very line
        assert len(question.context) >= 120 and question.context.endswith("\n")
        assert len(set(question.choices)) == 4
        assert all(not choice.rstrip("\n").endswith(":") for choice in question.choices)
    assert next_line_questions(text, 20, context_chars=120, seed=7) == questions
    assert {question.answer for question in questions} == {0, 1, 2, 3}


def test_shuffled_line_questions_offer_the_line_and_its_words_reordered():
    lines = [f"line {i} of the play in verse here" for i in range(100)]
    text = "\n".join(lines) + "\n"
    questions = shuffled_line_questions(text, 30, context_chars=100)
    for question in questions:
        true_line = question.choices[question.answer]
        assert (question.context + true_line) in text
        assert len(set(question.choices)) == 4
        assert all(sorted(c.split()) == sorted(true_line.split()) for c in question.choices)


def test_next_line_questions_refuse_a_text_with_too_few_lines():
    with pytest.raises(ValueError, match="fewer than the 10 needed"):
        next_line_questions("short\n" * 50, 10)


def write_lines(path, items):
    path.write_text("".join(json.dumps(item) + "\n" for item in items), encoding="utf-8")
    return path


def test_read_hellaswag_reads_the_published_jsonl(tmp_path):
    # fields as in hellaswag_val.jsonl (github.com/rowanz/hellaswag, data/)
    item = {"ind": 24, "activity_label": "Roof shingle removal",
            "ctx_a": "A man is sitting on a roof.", "ctx_b": "he",
            "ctx": "A man is sitting on a roof. he", "split": "val", "split_type": "indomain",
            "label": 3, "endings": ["is using wrap to wrap a pair of skis.",
                                    "is ripping level tiles off.",
                                    "is holding a rubik's cube.",
                                    "starts pulling up roofing on a roof."],
            "source_id": "activitynet~v_-JhWjGDPHMY"}
    wikihow = {**item, "ind": 25, "activity_label": "Home and Garden",
               "ctx_a": "[header] How to clean a roof [title] Use a broom.", "ctx_b": "",
               "label": 0, "endings": ["[step] Sweep the leaves off.", "b", "c", "d"]}
    questions = read_hellaswag(write_lines(tmp_path / "hellaswag_val.jsonl", [item, wikihow]))
    assert questions[0] == Question(
        "Roof shingle removal: A man is sitting on a roof. He",
        [" is using wrap to wrap a pair of skis.", " is ripping level tiles off.",
         " is holding a rubik's cube.", " starts pulling up roofing on a roof."], 3)
    assert questions[1].context == "Home and Garden: How to clean a roof. Use a broom."
    assert questions[1].choices[0] == " Sweep the leaves off."


def test_read_hellaswag_refuses_the_unlabelled_test_split(tmp_path):
    item = {"activity_label": "a", "ctx_a": "b", "ctx_b": "c", "endings": ["d"] * 4}
    with pytest.raises(ValueError, match="test split"):
        read_hellaswag(write_lines(tmp_path / "hellaswag_test.jsonl", [item]))


def test_read_arc_reads_ai2s_jsonl(tmp_path):
    # as in ARC-V1-Feb2018's ARC-Easy/ARC-Easy-Test.jsonl; some questions label 1-4
    items = [{"id": "Mercury_1", "question": {
        "stem": "Which is a source of light?",
        "choices": [{"text": "the Moon", "label": "A"}, {"text": "the Sun", "label": "B"},
                    {"text": "a mirror", "label": "C"}]}, "answerKey": "B"},
             {"id": "NYSEDREGENTS_2", "question": {
                 "stem": "How many legs has an insect?",
                 "choices": [{"text": str(n), "label": str(i)}
                             for i, n in enumerate((4, 6, 8, 10), 1)]}, "answerKey": "2"}]
    questions = read_arc(write_lines(tmp_path / "ARC-Easy-Test.jsonl", items))
    assert questions[0] == Question("Question: Which is a source of light?\nAnswer:",
                                    [" the Moon", " the Sun", " a mirror"], 1)
    assert questions[1].answer == 1 and questions[1].choices[1] == " 6"
    bad = [{**items[0], "answerKey": "E"}]
    with pytest.raises(ValueError, match="answer key 'E'"):
        read_arc(write_lines(tmp_path / "bad.jsonl", bad))


def test_read_mmlu_reads_a_subjects_csv(tmp_path):
    # as data/test/high_school_physics_test.csv of MMLU's data.tar: no header, six fields
    path = tmp_path / "high_school_physics_test.csv"
    with open(path, "w", newline="", encoding="utf-8") as file:
        csv.writer(file).writerows([
            ["What is the SI unit of force?", "joule", "newton", "watt", "pascal", "B"],
            ['A "quoted", comma question?', "1", "2", "3", "4", "D"]])
    questions = read_mmlu(path)
    assert questions[0] == Question(
        "The following are multiple choice questions (with answers) about high school "
        "physics.\n\nWhat is the SI unit of force?\nA. joule\nB. newton\nC. watt\nD. pascal"
        "\nAnswer:", [" A", " B", " C", " D"], 1)
    assert questions[1].answer == 3 and 'A "quoted", comma question?' in questions[1].context
    for letter in ("E", "", "AB"):  # "" and "AB" are in "ABCD" as substrings: not letters
        path.write_text(f"a question,1,2,3,4,{letter}\n", encoding="utf-8")
        with pytest.raises(ValueError, match=f"row 1: .* ending in '{letter}'"):
            read_mmlu(path)
