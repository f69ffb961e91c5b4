"""chat_page.py as a person uses it: the page started on localhost and driven in a headless
Chromium (Playwright): a message typed and its tokens arriving, a generation stopped, the model
switched to chapter 6's classifier, chapter 7's instruction model and an open model, and the
bad inputs (an empty message, a prompt past the context, a folder that is not a model) each
answered on the page while the server keeps running.

The models are the course's own, made small and fast here: a Tiny Shakespeare-format text
model, the chapter 6 and 7 lessons' models from their quick runs (LLM_COURSE_QUICK's few
batches), and a Qwen3 that transformers builds and saves. The README's screenshot is made by
the same steps on the models the notebooks saved (the other models' answers are printed, and
shot beside it as chat_page-spam.png and chat_page-instruction.png):

    python ch07_instructions/chat_page.py &       # after the notebooks that save the models
    python -m ch07_instructions.test_chat_page --url http://127.0.0.1:7860 \\
        --screenshot ch07_instructions/figures/chat_page.png

A machine without Chromium skips the test, saying how to install it, except where
LLM_COURSE_REQUIRE_BROWSER=1 (.ci/run sets it): there it fails.
"""

import argparse
import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch
import transformers
from playwright.sync_api import sync_playwright

from ch07_instructions.chat_page import INSTRUCTION, OPEN, SPAM, PageModel, stream_reply
from conftest import qwen3_style_tokenizer, tiny_gpt, tiny_qwen3
from shared import (
    BPETokenizer,
    GPTModel,
    finetuned_instruction_run,
    lesson_setup,
    read_text,
    save_text_model,
)
from shared import generate_text as generate


PAGE = Path(__file__).with_name("chat_page.py")


def chromium() -> str | None:
    """Debian's chromium, or None (Playwright's own download, if any, is used then)."""
    return next(filter(None, map(shutil.which, ("chromium", "chromium-browser"))), None)


def have_a_browser() -> bool:
    if chromium():
        return True
    with sync_playwright() as playwright:
        return Path(playwright.chromium.executable_path).exists()


@contextlib.contextmanager
def served(args: list[str], env: dict, log: Path):
    """chat_page.py on a free port of 127.0.0.1, until the block ends; yields its url and
    process. (The port is free when chosen; another process could take it before the page
    binds it, and the page's start would then fail, naming the port.)"""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with open(log, "w") as out:
        server = subprocess.Popen([sys.executable, str(PAGE), "--port", str(port), *args],
                                  env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while True:
            assert server.poll() is None, f"the page's server ended:\n{log.read_text()}"
            with contextlib.suppress(OSError):
                urllib.request.urlopen(url, timeout=5).close()
                break
            assert time.monotonic() < deadline, f"no page after 180 s:\n{log.read_text()}"
            time.sleep(0.5)
        yield url, server
    finally:
        server.terminate()
        server.wait(timeout=30)


def value_of(page, selector: str) -> str:
    return page.locator(f"{selector} textarea").first.input_value()


def set_slider(page, elem_id: str, value) -> None:
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Enter")


def choose_model(page, name: str) -> None:
    page.locator("#model input").click()
    page.get_by_role("option", name=name).click()


def send(page, message: str) -> None:
    page.locator("#prompt textarea").fill(message)
    page.locator("#go").click()


def wait_for(condition, seconds: float = 60, what: str = "") -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"waited {seconds} s for {what}"
        time.sleep(0.05)


def see_message(page, text: str) -> None:
    """`text` shown on the page (an error's message, in a toast or the status line)."""
    page.get_by_text(re.compile(re.escape(text))).first.wait_for(timeout=30_000)


def talk_to_shakespeare(page, max_tokens: int, screenshot: Path | None = None) -> None:
    """Type a beginning; see the continuation grow token by token, and finish."""
    set_slider(page, "max_tokens", max_tokens)
    page.evaluate("""() => {  // the reply's length, every 5 ms, as the page shows it
        const box = document.querySelector("#out textarea");
        window.replyLengths = [];
        window.recorder = setInterval(() => window.replyLengths.push(box.value.length), 5);
    }""")
    send(page, "ROMEO:\n")
    wait_for(lambda: page.locator("#status").inner_text().startswith("done"), what="the reply")
    growing = sorted(set(page.evaluate("clearInterval(window.recorder) || window.replyLengths"))
                     - {0})
    assert len(growing) >= 5, f"the reply arrived in {len(growing)} steps, not as it was made"
    assert value_of(page, "#out").startswith("ROMEO:\n")
    assert value_of(page, "#seen") == "ROMEO:\n"
    assert re.search(r"done: \d+ tokens in", page.locator("#status").inner_text())
    if screenshot:
        page.wait_for_timeout(500)  # the page's end-of-event restyling
        page.screenshot(path=str(screenshot), full_page=True)


def test_the_page_as_a_person_uses_it(tmp_path, monkeypatch):
    if not have_a_browser() and os.environ.get("LLM_COURSE_REQUIRE_BROWSER") != "1":
        pytest.skip("no Chromium to drive the page: `apt-get install chromium` (Debian, "
                    "Ubuntu) or `python -m playwright install chromium`")

    models, data = tmp_path / "models", tmp_path / "data"
    env = make_models(models, data, monkeypatch)
    with served(["--shakespeare", str(models / "shakespeare"), "--classifier",
                 str(models / "classifier.pth")], env, tmp_path / "server.log") as (url, server):
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium(),
                                                 args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.goto(url)
            page.locator("#about").get_by_text("Tiny Shakespeare").wait_for(timeout=60_000)

            talk_to_shakespeare(page, 1000, tmp_path / "page.png")
            assert (tmp_path / "page.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

            # Stop: a long generation stopped after its first tokens stays stopped.
            set_slider(page, "max_tokens", 2000)
            send(page, "JULIET:\n")
            wait_for(lambda: page.locator("#status").inner_text().startswith("generating")
                     and len(value_of(page, "#out")) > 20, what="the first tokens")
            assert value_of(page, "#out").startswith("JULIET:\n")
            page.locator("#stop").click()
            wait_for(lambda: page.locator("#status").inner_text().startswith("stopped"),
                     what="Stop")
            stopped, status = value_of(page, "#out"), page.locator("#status").inner_text()
            time.sleep(1.0)
            assert value_of(page, "#out") == stopped, "the reply still grows after Stop"
            assert page.locator("#status").inner_text() == status
            made = int(re.fullmatch(r"stopped: (\d+) tokens", status)[1])
            assert 0 < made < 2000

            # Bad inputs: each gets its message, and the server goes on; the last reply and the
            # text its model saw go, so that they cannot be taken for the answer to this one.
            assert value_of(page, "#out") and value_of(page, "#seen")
            send(page, "   ")
            see_message(page, "The message is empty")
            wait_for(lambda: page.locator("#status").inner_text().startswith(  # the busy mark goes
                "Not done: The message"), what="the empty message's status")
            assert value_of(page, "#out") == value_of(page, "#seen") == ""
            send(page, "To be or not to be " * 60)
            see_message(page, "longer than this model's context of 32")
            assert "generating" not in page.locator("#status").inner_text()  # none started

            choose_model(page, SPAM)
            page.locator("#about").get_by_text("Spam classifier").wait_for(timeout=60_000)
            send(page, "You have won a free prize! Reply WIN to claim it.")
            wait_for(lambda: page.locator("#status").inner_text().startswith("classified"),
                     what="the classifier's label")
            assert re.fullmatch(r"classified: (spam|not spam)",
                                page.locator("#status").inner_text())
            assert len(re.findall(r"\d+%", page.locator("#label").inner_text())) == 2
            assert value_of(page, "#seen").startswith("You have won a free prize!")
            send(page, "")  # refused: the last verdict goes with the text it was given
            wait_for(lambda: page.locator("#status").inner_text().startswith("Not done"),
                     what="the empty message's status")
            assert not re.findall(r"\d+%", page.locator("#label").inner_text())
            assert value_of(page, "#seen") == ""

            choose_model(page, INSTRUCTION)
            page.locator("#about").get_by_text("Instruction model").wait_for(timeout=60_000)
            set_slider(page, "max_tokens", 20)
            send(page, "Name a colour.")
            wait_for(lambda: page.locator("#status").inner_text().startswith("done"),
                     what="the instruction model's reply")
            assert value_of(page, "#seen").endswith("### Instruction:\nName a colour.\n\n"
                                                     "### Response:\n")

            choose_model(page, OPEN)
            page.locator("#load").click()
            see_message(page, "no model folder given")
            page.locator("#folder textarea, #folder input").first.fill(str(tmp_path))
            page.locator("#load").click()
            see_message(page, "Not loaded")
            see_message(page, "config.json")  # what the folder lacks
            page.locator("#folder textarea, #folder input").first.fill(str(models / "qwen3"))
            page.locator("#load").click()
            page.locator("#about").get_by_text("Open model (qwen3)").wait_for(timeout=60_000)
            send(page, "What is RoPE?")
            wait_for(lambda: page.locator("#status").inner_text().startswith("done"),
                     what="the open model's reply")
            assert value_of(page, "#seen") == ("<|im_start|>user\nWhat is RoPE?<|im_end|>\n"
                                               "<|im_start|>assistant\n<think>\n\n</think>\n\n")
            browser.close()
        assert server.poll() is None, "the server ended"


@pytest.mark.parametrize("made, named", [(False, "is not a folder"), (True, "has no config.json")])
def test_an_open_model_that_is_not_there_is_refused_at_start_up(tmp_path, capsys, monkeypatch,
                                                                made, named):
    from ch07_instructions import chat_page

    def build_page(*args):
        raise AssertionError("the page was built: the folder was not refused at start-up")

    monkeypatch.setattr(chat_page, "build_page", build_page)
    folder = tmp_path / "Qwen3-0.6B"
    if made:
        folder.mkdir()
    with pytest.raises(SystemExit) as caught:
        chat_page.main(["--open-model", str(folder)])
    assert caught.value.code == 2
    error = capsys.readouterr().err
    assert "--open-model" in error and f"{folder} {named}" in error


def as_page_model(model, **options) -> PageModel:
    """`model` behind a page whose tokens are written as numbers: "5 7 9"."""
    return PageModel("", model, torch.device("cpu"), prompt=lambda message: message,
                     encode=lambda text: [int(t) for t in text.split()],
                     decode=lambda ids: " ".join(map(str, ids)), **options)


@pytest.mark.parametrize("slides", [True, False])
def test_streamed_tokens_are_generates_in_one_call_each_new_token_run_once(slides):
    """One generate call per token through one KV cache gives generate's own tokens, sliding
    past the context (GPT-2's models) or stopping there (an open model's); until the window
    slides, each call runs the model on the one new token only."""
    model = tiny_gpt(vocab_size=60, context_length=12)
    lengths = []
    model.register_forward_pre_hook(lambda _m, args: lengths.append(args[0].shape[1]))
    *steps, (reply, count, ended) = stream_reply(as_page_model(model, slides=slides), "5 7 9",
                                                 1.0, 20, 0.9, 15, seed=3)
    # the prompt, then one token a call while the text fits the context of 12; past it (a text
    # model's 11th to 15th calls) the window is rerun whole
    assert lengths == ([3] + [1] * 9 + [12] * 5 if slides else [3] + [1] * 8)
    torch.manual_seed(3)
    whole = generate(model, torch.tensor([[5, 7, 9]]), 15 if slides else 9, temperature=1.0,
                     top_k=20, top_p=0.9)
    assert reply == " ".join(map(str, whole[0, 3:].tolist()))
    assert [(text, n) for text, n, _ in steps] == [
        (" ".join(reply.split()[:n]), n) for n in range(1, len(steps) + 1)]
    assert count == len(steps) and all(why is None for *_, why in steps)
    assert ended.endswith("stopped by max tokens; past 12 tokens it read only the last 12"
                          if slides else "stopped by the model's context")


def test_an_open_model_stops_at_its_end_of_turn_and_at_its_context():
    model = tiny_qwen3(context_length=10)
    greedy = generate(model, torch.tensor([[4, 2]]), 8)[0, 2:].tolist()
    first_new = next(i for i, token in enumerate(greedy) if i and token not in greedy[:i])
    *_, (reply, _, ended) = stream_reply(as_page_model(model, eos_id=greedy[first_new]), "4 2",
                                         0.0, 0, 1.0, 100, seed=0)
    assert reply.split() == list(map(str, greedy[:first_new]))  # without the end token
    assert ended.endswith(f"stopped by its end token {greedy[first_new]}")
    *_, (reply, _, ended) = stream_reply(as_page_model(model), "4 2", 0.0, 0, 1.0, 100, seed=0)
    assert reply.split() == list(map(str, greedy)) and ended.endswith("the model's context")


def test_a_prompt_past_the_context_or_filling_it_is_refused_naming_the_lengths():
    model = tiny_gpt()  # a context of 8
    with pytest.raises(ValueError, match="the prompt is 9 tokens, longer than this model's "
                       "context of 8: shorten the message"):
        stream_reply(as_page_model(model, slides=True), "1 " * 9, 0.0, 0, 1.0, 5, seed=0)
    with pytest.raises(ValueError, match="the prompt is 8 tokens, this model's whole context: "
                       "it leaves no room for a reply"):
        stream_reply(as_page_model(model), "1 " * 8, 0.0, 0, 1.0, 5, seed=0)
    *_, (reply, count, _) = stream_reply(as_page_model(model, slides=True), "1 " * 8, 0.0, 0,
                                         1.0, 2, seed=0)
    assert len(reply.split()) == count == 2  # a text model's window slides on


def make_models(models: Path, data: Path, monkeypatch) -> dict:
    """Small models of each kind the page serves, and the environment of its server."""
    monkeypatch.setenv("LLM_COURSE_DATA_DIR", str(data))
    monkeypatch.setenv("LLM_COURSE_QUICK", "1")  # the lessons' quick runs: a few batches
    text = read_text("tinyshakespeare")[:20_000]
    tokenizer = BPETokenizer.train(text, 300)
    torch.manual_seed(0)
    save_text_model(GPTModel({"vocab_size": tokenizer.n_vocab, "context_length": 32,
                              "emb_dim": 32, "n_heads": 2, "n_layers": 2, "drop_rate": 0.0,
                              "qkv_bias": False}), tokenizer, models / "shakespeare")
    lesson_setup(models / "classifier.pth")
    quick = finetuned_instruction_run("default", quick=True).model_path
    shutil.copy(quick, data / "gpt-instruction-finetuned-default.pth")  # as the full run names it
    qwen3 = qwen3_style_tokenizer(models / "qwen3")
    transformers.Qwen3ForCausalLM(transformers.Qwen3Config(
        vocab_size=qwen3.get_vocab_size(), hidden_size=32, intermediate_size=64,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=8,
        max_position_embeddings=256, tie_word_embeddings=True)).save_pretrained(models / "qwen3")
    env = {**os.environ, "LLM_COURSE_DATA_DIR": str(data)}
    env.pop("LLM_COURSE_QUICK")  # the page serves the lessons' full runs' files
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description="Drive a running page on the models the "
                                     "notebooks saved: save the README's screenshot, and print "
                                     "what the other models answered.")
    parser.add_argument("--url", default="http://127.0.0.1:7860")
    parser.add_argument("--screenshot", type=Path, required=True)
    args = parser.parse_args()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.goto(args.url)
        page.locator("#about").get_by_text("Tiny Shakespeare").wait_for(timeout=60_000)
        talk_to_shakespeare(page, 120, args.screenshot)
        print(page.locator("#about").inner_text(), page.locator("#status").inner_text(),
              value_of(page, "#out"), sep="\n", end="\n\n")
        for name, message in [(SPAM, "You have won a free prize! Reply WIN to claim it."),
                              (INSTRUCTION, "Rewrite the sentence in passive voice: The cat "
                               "chased the mouse.")]:
            choose_model(page, name)
            page.locator("#about").get_by_text(name.partition(" (")[0]).wait_for(timeout=60_000)
            send(page, message)
            wait_for(lambda: page.locator("#status").inner_text().startswith(("done", "class")),
                     what="the reply")
            shown = page.locator("#label").inner_text() if name == SPAM else value_of(
                page, "#out")
            print(page.locator("#about").inner_text(), page.locator("#status").inner_text(),
                  shown, sep="\n", end="\n\n")
            page.wait_for_timeout(500)
            page.screenshot(path=str(args.screenshot.with_name(
                f"{args.screenshot.stem}-{name.split()[0].lower()}.png")), full_page=True)
        browser.close()


if __name__ == "__main__":
    main()
