"""A page to talk to the course's models, in the browser: one command, on your own machine.

    python ch07_instructions/chat_page.py            # then open http://127.0.0.1:7860
    python ch07_instructions/chat_page.py --open-model ~/models/Qwen3-0.6B --port 7861

It serves the models the course makes or loads, each through the course's own code:
chapter 5's Tiny Shakespeare model (section 5.10; it continues a text), chapter 6's spam
classifier (a label and its probability, from classify_review), chapter 7's instruction model
(the Alpaca prompt of format_input) and an open model in its published format, loaded as in
section 5.9 and prompted in its own chat template (chat_prompt). Text models stream their tokens
as `generate` picks them, one call per token through a KV cache (KVCachedModel), with the page's
sampling settings; Stop ends a generation between two tokens. The page shows the exact text
the model saw. Each message is a conversation of its own: nothing earlier is sent again.

Why Gradio: a page of inputs, sliders and streamed outputs is what it is made for, a Python
generator streams to the page as it yields, its queue runs the events that share a
concurrency_id one at a time, and a handler can put up a message (gr.Warning) and go on: every
error here is shown so, and in the status line, while the server keeps running. Chainlit,
which the book's bonus apps use, is a chat window: a classifier's probability and the
sampling sliders fit it less well.

A model not yet made says which notebook makes it (chapter 5's beyond_7_shakespeare.ipynb,
chapter 6's and chapter 7's lessons, in the default profile; LLM_COURSE_PROFILE=book builds
chapter 6's classifier as the book profile does). The page listens on 127.0.0.1 only.
"""

import contextlib
import json
import os
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from shared import (
    RESPONSE_HEADER,
    HFTokenizer,
    KVCachedModel,
    chat_prompt,
    check,
    classify_review,
    data_dir,
    finetuned_instruction_run,
    format_input,
    get_device,
    lesson_setup,
    load_llama3_tokenizer,
    load_open_model,
    load_text_model,
    prepare_tiktoken_cache,
)
from shared import generate_text as generate
from shared.tooling.command_line import CommandParser, HelpFormatter, number_arg, path_arg, run_main


PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHAKESPEARE = "Tiny Shakespeare (chapter 5, 5.10): continues a text"
SPAM = "Spam classifier (chapter 6): label and probability"
INSTRUCTION = "Instruction model (chapter 7): answers an instruction"
OPEN = "Open model (chapter 5, 5.9): a folder in its published format"
EXAMPLES = {SHAKESPEARE: "ROMEO:\n", SPAM: "You have won a free prize! Reply WIN to claim it.",
            INSTRUCTION: "Give three tips for staying healthy.", OPEN: "What is RoPE?"}
CHAT_STYLES = {"llama": "llama3", "qwen3": "qwen3", "gemma3": "gemma3", "gemma3_text": "gemma3"}
END_OF_TURN = {"llama3": "<|eot_id|>", "qwen3": "<|im_end|>", "gemma3": "<end_of_turn>"}


@dataclass
class PageModel:
    """A loaded model and what the page needs to talk to it."""
    about: str  # one line for the page: what it is, its size, where it came from
    model: torch.nn.Module
    device: torch.device
    prompt: Callable[[str], str]  # the message -> the exact text the model sees
    encode: Callable[[str], list[int]]
    decode: Callable[[list[int]], str]
    eos_id: int | None = None  # generation ends at this token
    slides: bool = False  # past its context the window slides (as the book's generate), or stops
    continues: bool = False  # the reply continues the message, shown after it
    classify: Callable | None = None  # message -> ({label: probability}, text seen, a note)

    @property
    def context(self) -> int:
        return self.model.cfg["context_length"]


def _about(title, model, device, source) -> str:
    params = sum(p.numel() for p in model.parameters())
    return (f"**{title}**: {params:,} parameters, a context of {model.cfg['context_length']:,} "
            f"tokens, on {device}; from `{source}`")


def load_shakespeare(folder: Path) -> PageModel:
    check((folder / "config.json").is_file(), f"{folder} holds no saved model: run "
          "ch05_pretraining/beyond_7_shakespeare.ipynb (about 3 minutes on a CPU), whose "
          "section 5.10.5 saves it there", FileNotFoundError)
    device = get_device()
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    tied = config.get("tie_word_embeddings", True)  # the file says if the head is the embedding
    model, tokenizer = load_text_model(folder, device, tie_weights=tied)
    return PageModel(_about("Tiny Shakespeare", model, device, folder), model, device,
                     prompt=lambda message: message,
                     encode=lambda text: tokenizer.encode(text, allowed_special="all"),
                     decode=tokenizer.decode, slides=True, continues=True)


def load_spam_classifier(path: Path) -> PageModel:
    check(path.is_file(), f"{path} holds no classifier: run ch06_classification/"
          "classification.ipynb, whose section 6.8 saves it there", FileNotFoundError)
    lesson = lesson_setup(path)  # the lesson's profile, data and model, read from `path`
    model, device, max_length = lesson.model, lesson.device, lesson.train_dataset.max_length

    def probabilities(message):
        # classify_review gives the label; hooks read the ids it fed the model (the message
        # padded as in training) and the head's logits, so that nothing is computed twice
        inputs, logits = [], []
        hooks = [model.register_forward_pre_hook(lambda _m, args: inputs.append(args[0])),
                 model.out_head.register_forward_hook(lambda _m, _i, out: logits.append(out))]
        try:
            classify_review(message, model, lesson.tokenizer, device, max_length)
        finally:
            for hook in hooks:
                hook.remove()
        probs = torch.softmax(logits[-1][0, -1].float(), dim=-1).tolist()
        result = dict(zip(("not spam", "spam"), probs))  # classify_review's label, the larger
        seen = inputs[-1][0].tolist()
        cut = len(lesson.tokenizer.encode(message, disallowed_special=())) > len(seen)
        note = f" (the message cut to its first {len(seen)} tokens, as in training)" * cut
        return result, lesson.tokenizer.decode(seen), note

    return PageModel(_about(f"Spam classifier ({lesson.profile} profile; messages padded to "
                            f"{max_length} tokens, as in training)", model, device, path),
                     model, device, prompt=lambda message: message,
                     encode=lesson.tokenizer.encode, decode=lesson.tokenizer.decode,
                     classify=probabilities)


def load_instruction_model() -> PageModel:
    path = data_dir() / "gpt-instruction-finetuned-default.pth"
    check(path.is_file(), f"{path} holds no instruction model: run ch07_instructions/"
          "instructions.ipynb (default profile), whose section 7.7 saves it there",
          FileNotFoundError)
    run = finetuned_instruction_run("default", quick=False)  # reads `path`: no training
    tokenizer = run.tokenizer
    what = (f"Instruction model (default profile: {run.model.cfg['n_layers']} layers, not "
            f"pretrained, finetuned on {len(run.train_data):,} examples; expect little)")
    return PageModel(_about(what, run.model, run.device, path),
                     run.model, run.device,
                     prompt=lambda message: format_input({"instruction": message})
                     + RESPONSE_HEADER,
                     encode=lambda text: tokenizer.encode(text, disallowed_special=()),
                     decode=tokenizer.decode, eos_id=tokenizer.eot_token)


def check_model_folder(folder: Path) -> None:
    """Refuse a path that is not a model's folder: no folder there, or no config.json in it."""
    check(folder.is_dir(), f"{folder} is not a folder: give the folder of a download or of "
          "save_open_model (config.json, *.safetensors, a tokenizer)", FileNotFoundError)
    check((folder / "config.json").is_file(), f"{folder} has no config.json: it is not a "
          "model's folder (a download or save_open_model's: config.json, *.safetensors, a "
          "tokenizer)", FileNotFoundError)


def load_chat_model(folder: Path) -> PageModel:
    check_model_folder(folder)
    config_file = folder / "config.json"
    try:
        model_type = json.loads(config_file.read_text(encoding="utf-8")).get("model_type")
    except (ValueError, AttributeError) as error:  # not JSON, or not a JSON object
        raise ValueError(f"{config_file} is not a model's configuration ({error}): a "
                         "cut-short download? download it again") from None
    check(model_type in CHAT_STYLES, f"{config_file}'s model_type is {model_type!r}: the "
          f"page knows the chat templates of {', '.join(sorted(CHAT_STYLES))}")
    style = CHAT_STYLES[model_type]
    if (folder / "tokenizer.json").is_file():  # Qwen3's, Gemma 3's, Llama 3's on the Hub
        tokenizer = HFTokenizer(folder)
        encode = tokenizer.encode
        end_id = tokenizer.tokenizer.token_to_id(END_OF_TURN[style])
    else:  # Meta's own download: original/tokenizer.model
        check((folder / "original" / "tokenizer.model").is_file(), f"{folder} has no "
              "tokenizer: neither tokenizer.json (Qwen3's, Gemma 3's, Llama 3's on the Hub) nor "
              "original/tokenizer.model (Meta's Llama 3)", FileNotFoundError)
        tokenizer = load_llama3_tokenizer(folder / "original" / "tokenizer.model")
        encode = lambda text: tokenizer.encode(text, allowed_special="all")  # noqa: E731
        end_id = tokenizer.encode_single_token(END_OF_TURN[style])  # always there
    check(end_id is not None, f"{folder}'s tokenizer has no {END_OF_TURN[style]}, the end "
          f"of a turn in {style}'s chat template")
    device = get_device()
    model = load_open_model(folder).to(device).eval()  # checks the weights against config.json
    return PageModel(_about(f"Open model ({style})", model, device, folder), model, device,
                     prompt=lambda message: chat_prompt([{"role": "user", "content": message}],
                                                        style, thinking=False),
                     encode=encode, decode=tokenizer.decode, eos_id=end_id)


def stream_reply(chosen: PageModel, prompt: str, temperature: float, top_k: int, top_p: float,
                 max_tokens: int, seed: int) -> Iterator[tuple[str, int, str | None]]:
    """The reply to `prompt` as `generate` picks it, one call per token: (reply so far, its
    tokens, None), and last (reply, tokens, how long and why it ended). The prompt is checked
    to fit the context here, at the call; the tokens come as the returned generator is read."""
    ids = chosen.encode(prompt)
    room = chosen.context - len(ids)
    check(room >= 0, f"the prompt is {len(ids):,} tokens, longer than this model's context of "
          f"{chosen.context:,}: shorten the message")
    check(room > 0 or chosen.slides, f"the prompt is {len(ids):,} tokens, this model's whole "
          "context: it leaves no room for a reply; shorten the message")
    steps = max_tokens if chosen.slides else min(max_tokens, room)
    window = chosen.context if chosen.slides else len(ids) + steps

    def tokens_as_picked():
        # The cache runs each new token once; after the window slides, every call reruns it
        cached = KVCachedModel(chosen.model, window)
        tokens = torch.tensor([ids], device=chosen.device)
        reply, ended = [], "max tokens" if steps == max_tokens else "the model's context"
        start = time.perf_counter()
        torch.manual_seed(seed)
        for _ in range(steps):
            out = generate(cached, tokens[:, -window:], 1, context_size=window,
                           temperature=temperature, top_k=top_k or None,
                           top_p=top_p if top_p < 1 else None)
            if out[0, -1].item() == chosen.eos_id:
                ended = f"its end token {chosen.decode([chosen.eos_id])}"
                break
            tokens = torch.cat([tokens, out[:, -1:]], dim=1)
            reply.append(out[0, -1].item())
            # decoded whole each time: a character split over two tokens reads right once
            # both are there
            yield chosen.decode(reply), len(reply), None
        seconds = time.perf_counter() - start
        slid = (f"; past {chosen.context} tokens it read only the last {chosen.context}"
                * (len(ids) + len(reply) > chosen.context))
        yield chosen.decode(reply), len(reply), (
            f"{seconds:.1f} s ({len(reply) / max(seconds, 1e-9):.1f} tokens/s), stopped by "
            f"{ended}{slid}")

    return tokens_as_picked()


class ModelShelf:
    """The models the page has loaded, each once; of the open models, only the last."""

    def __init__(self, shakespeare: Path, classifier: Path):
        self.shakespeare, self.classifier = shakespeare, classifier
        self.loaded, self.lock = {}, threading.Lock()

    def get(self, kind: str, folder: str = "") -> PageModel:
        if kind == OPEN:
            check(folder.strip(), "no model folder given: type the folder of an open model "
                  "(config.json, *.safetensors, tokenizer.json) and press Load")
            folder = Path(folder.strip()).expanduser().resolve()
        key = (kind, str(folder) if kind == OPEN else "")
        with self.lock:  # two events loading one model would hold it twice
            if key not in self.loaded:
                if kind == SHAKESPEARE:
                    chosen = load_shakespeare(self.shakespeare)
                elif kind == SPAM:
                    chosen = load_spam_classifier(self.classifier)
                elif kind == INSTRUCTION:
                    chosen = load_instruction_model()
                else:  # the last open model goes first: two might not fit in memory
                    self.loaded = {k: v for k, v in self.loaded.items() if k[0] != OPEN}
                    if torch.cuda.is_available():
                        torch.cuda.empty_cache()
                    chosen = load_chat_model(folder)
                self.loaded[key] = chosen
            return self.loaded[key]


def build_page(shelf: ModelShelf, open_model: Path | None = None):
    import gradio as gr  # here: the functions above, which the tests use, need no Gradio

    def message_of(error) -> str:  # what the page says, and the console
        if isinstance(error, (ValueError, TypeError, OSError)):  # a check's, or a file's
            text = str(error).strip() or type(error).__name__
            print(f"chat_page: {text}", flush=True)
            return text
        traceback.print_exception(error)  # not the user's mistake: the console keeps its trace
        return f"{type(error).__name__}: {error}"

    def choose(kind, folder, asked_to_load=False):
        about_text = status_text = ""
        if kind != OPEN or folder.strip() or asked_to_load:
            try:
                about_text = shelf.get(kind, folder).about
            except Exception as error:  # shown on the page; the server goes on
                status_text = f"Not loaded: {message_of(error)}"
        text_model = kind != SPAM
        return {open_row: gr.update(visible=kind == OPEN), about: about_text,
                status: status_text, message: gr.update(placeholder="for example: "
                                                        + EXAMPLES[kind].strip()),
                sampling: gr.update(visible=text_model), stop: gr.update(visible=text_model),
                reply: gr.update(value="", visible=text_model),
                label: gr.update(value=None, visible=not text_model), seen: ""}

    def load_folder(kind, folder):
        return choose(kind, folder, asked_to_load=True)

    stop_flags = {}  # one a browser tab (Gradio's session): its Stop sets it, its Send clears it

    def stop_flag(request: gr.Request) -> threading.Event:
        return stop_flags.setdefault(request.session_hash, threading.Event())

    def clear_stop(request: gr.Request) -> None:
        stop_flag(request).clear()

    def press_stop(request: gr.Request) -> None:
        stop_flag(request).set()

    def respond(kind, folder, text, temperature, top_k, top_p, max_tokens, seed,
                request: gr.Request):
        started = False  # whether this message's reply is on the page
        try:
            chosen = shelf.get(kind, folder)
            check(text.strip(), "The message is empty: type a text for the model")
            check(seed is not None, "the seed is empty: give a whole number")
            if chosen.classify:
                probabilities, seen_text, note = chosen.classify(text)
                yield "", probabilities, seen_text, (
                    f"classified: {max(probabilities, key=probabilities.get)}{note}")
                return
            prompt = chosen.prompt(text)
            replies = stream_reply(chosen, prompt, temperature, int(top_k), top_p,
                                   int(max_tokens), int(seed))  # the prompt fits: it starts
            before = text if chosen.continues else ""
            yield before, None, prompt, "generating"  # at once: the last reply's status goes
            started = True
            shown = time.monotonic()
            for so_far, count, ended in replies:
                if stop_flag(request).is_set():  # between two tokens: the reply so far stays
                    yield before + so_far, None, prompt, f"stopped: {count} tokens"
                    return
                if ended:
                    yield before + so_far, None, prompt, f"done: {count} tokens in {ended}"
                elif time.monotonic() - shown > 0.05:  # at most 20 updates a second: a flood
                    # of them holds up the page, and its Stop is heard seconds late
                    yield before + so_far, None, prompt, f"generating: {count} tokens"
                    shown = time.monotonic()
        except Exception as error:  # shown on the page; the server goes on
            text = message_of(error)
            gr.Warning(text)
            if started:  # the reply so far is this message's: it stays
                yield gr.update(), gr.update(), gr.update(), f"Not done: {text}"
            else:  # the last message's reply and text seen would read as this one's: they go
                yield "", None, "", f"Not done: {text}"

    with gr.Blocks(title="Talk to the course's models") as page:
        gr.Markdown("## Talk to the course's models\nEach model is run by the course's own code "
                    "on this machine. The box below the reply shows the exact text the model "
                    "saw.")
        kind = gr.Dropdown([SHAKESPEARE, SPAM, INSTRUCTION, OPEN], value=SHAKESPEARE,
                           label="Model", elem_id="model")
        with gr.Row(visible=False) as open_row:
            folder = gr.Textbox(str(open_model or ""), label="Open model folder", scale=4,
                                elem_id="folder")
            load = gr.Button("Load", elem_id="load", scale=1)
        about = gr.Markdown(elem_id="about")
        message = gr.Textbox(label="Message", lines=3,
                             placeholder="for example: " + EXAMPLES[SHAKESPEARE].strip(),
                             elem_id="prompt")
        with gr.Accordion("Sampling settings", open=True) as sampling:
            with gr.Row():
                temperature = gr.Slider(0, 2, value=0.8, step=0.05, elem_id="temperature",
                                        label="temperature (0: greedy)")
                top_k = gr.Slider(0, 200, value=40, step=1, label="top-k (0: off)",
                                  elem_id="top_k")
                top_p = gr.Slider(0.05, 1, value=1.0, step=0.05, label="top-p (1: off)",
                                  elem_id="top_p")
                max_tokens = gr.Slider(1, 2000, value=200, step=1, label="max tokens",
                                       elem_id="max_tokens")
                seed = gr.Number(123, precision=0, minimum=0, maximum=2**32 - 1, label="seed",
                                 elem_id="seed")
        with gr.Row():
            go = gr.Button("Send", variant="primary", elem_id="go")
            stop = gr.Button("Stop", elem_id="stop")
        reply = gr.Textbox(label="Reply", lines=10, elem_id="out")
        label = gr.Label(label="Class probabilities", visible=False, elem_id="label")
        status = gr.Markdown(elem_id="status")
        seen = gr.Textbox(label="The exact text the model saw", lines=4, elem_id="seen")

        # One event at a time touches the models: a load waits for a generation to end (or to
        # be stopped), so that no model is loaded twice and a load's seeding cannot reach into
        # a generation's draws.
        views = [open_row, about, status, message, sampling, stop, reply, label, seen]
        for trigger in (kind.change, page.load):
            trigger(choose, [kind, folder], views, concurrency_id="models")
        for trigger in (load.click, folder.submit):
            trigger(load_folder, [kind, folder], views, concurrency_id="models")
        # Send clears the tab's Stop at once (outside the queue), then queues the reply.
        # Stop is heard by the generation itself, between two tokens, rather than cancelling
        # its event: a cancelled event's last updates could still arrive after Stop's own.
        go.click(clear_stop, None, None, queue=False).then(
            respond, [kind, folder, message, temperature, top_k, top_p, max_tokens, seed],
            [reply, label, seen, status], concurrency_id="models")
        stop.click(press_stop, None, None, queue=False)
    return page


def main(argv: list[str] | None = None) -> None:
    parser = CommandParser(description=__doc__.partition("\n\n")[0], formatter_class=HelpFormatter)
    parser.add_argument("--port", type=number_arg(int, 1, 65535), default=7860,
                        help="the port on 127.0.0.1 the page listens on")
    parser.add_argument("--shakespeare", type=path_arg,
                        default=PROJECT_ROOT / "ch05_pretraining" / "shakespeare-model",
                        help="the folder save_text_model wrote (section 5.10.5)")
    parser.add_argument("--classifier", type=path_arg,
                        default=PROJECT_ROOT / "ch06_classification" / "review_classifier.pth",
                        help="the state dict chapter 6's section 6.8 saved")
    parser.add_argument("--open-model", type=path_arg, help="an open model's folder, offered "
                        "on the page (any other can be typed there)")
    args = parser.parse_args(argv)
    if args.open_model is not None:  # a mistyped folder is said now, not once the page loads it
        try:
            check_model_folder(args.open_model.expanduser())
        except (OSError, ValueError) as error:
            parser.error(f"argument --open-model: {error}")
    # Gradio reports usage to its makers unless told not to; a course page has no need to.
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    prepare_tiktoken_cache()  # GPT-2's tokenizer offline too, from data/ or the data mirror
    page = build_page(ModelShelf(args.shakespeare, args.classifier), args.open_model)
    with contextlib.suppress(KeyboardInterrupt):
        print(f"The page: http://127.0.0.1:{args.port} (Ctrl-C stops it)", flush=True)
        page.queue().launch(server_name="127.0.0.1", server_port=args.port, quiet=True)


if __name__ == "__main__":
    run_main(main)
