"""Tests of the LLM judge's clients: the lesson's (section 7.8, instructions.py) and judge.py's
(beyond_2_judge.ipynb)."""

import contextlib
import http.server
import json
import threading

import pytest

from ch07_instructions import instructions
from ch07_instructions.judge import (
    OllamaError,
    ollama_is_running,
    query_ollama,
    score_responses,
)
from ch07_instructions.test_bad_inputs import timed_query  # a query, and how long it took


@contextlib.contextmanager
def serving(handler):
    """A local HTTP server with `handler`, in a thread, for the length of the block."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def ollama_server():
    """A local server that speaks Ollama's /api/chat; `server.reply(request) -> (code, body)`."""
    requests = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            requests.append((self.path, body))
            code, reply = httpd.reply(body)
            self.send_response(code)
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def do_GET(self):
            asked = self.requestline.split()[1] == "/api/tags"  # as sent: self.path drops a "/"
            reply = httpd.tags if asked else b"{}"
            self.send_response(200 if asked else 404)
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args):
            pass

    with serving(Handler) as httpd:
        httpd.requests = requests
        httpd.tags = b'{"models": []}'  # Ollama's answer to /api/tags with no model pulled
        httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}/api/chat"
        yield httpd


def chat_answer(content):
    return json.dumps({"model": "llama3", "message": {"role": "assistant", "content": content},
                       "done": True}).encode()


def test_query_ollama_sends_a_reproducible_chat_request(ollama_server):
    ollama_server.reply = lambda body: (200, chat_answer("Paris"))
    assert query_ollama("Capital of France?", url=ollama_server.url) == "Paris"
    path, body = ollama_server.requests[0]
    assert path == "/api/chat" and body["model"] == "llama3" and body["stream"] is False
    assert body["messages"] == [{"role": "user", "content": "Capital of France?"}]
    assert body["options"]["seed"] == 123 and body["options"]["temperature"] == 0


def test_query_ollama_reads_a_streamed_answer(ollama_server):
    lines = b"\n".join([chat_answer("Par"), chat_answer("is")])
    ollama_server.reply = lambda body: (200, lines)
    assert query_ollama("?", url=ollama_server.url) == "Paris"


@pytest.mark.parametrize("code, body, message", [
    (200, b"<html>not json</html>", "unexpected answer"),
    (200, b'{"done": true}', "unexpected answer"),
    (404, b'{"error": "model \'llama3\' not found"}', "HTTP 404.*ollama pull llama3"),
])
def test_query_ollama_garbage_is_a_clear_error(ollama_server, code, body, message):
    ollama_server.reply = lambda request: (code, body)
    with pytest.raises(OllamaError, match=message):
        query_ollama("?", url=ollama_server.url)


@pytest.mark.parametrize("code, body, message", [
    (500, b'{"error": "out of memory"}', r"HTTP 500: .*out of memory.*more memory than"),
    (400, b'{"error": "invalid options"}', r"HTTP 400: .*invalid options.*refused the request"),
])
def test_only_a_404_suggests_pulling_the_model(ollama_server, code, body, message):
    ollama_server.reply = lambda request: (code, body)
    with pytest.raises(OllamaError, match=message) as caught:
        query_ollama("?", url=ollama_server.url)
    assert "ollama pull" not in str(caught.value)


def test_a_reset_after_connecting_is_a_broken_answer_not_a_missing_server():
    """The server sends its headers and a few bytes, then resets the connection."""
    import socket
    import struct
    import time

    class Reset(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            self.wfile.write(b'{"mess')
            time.sleep(0.2)
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))  # closing resets
            self.connection.close()

        def log_message(self, *args):
            pass

    with serving(Reset) as httpd:
        with pytest.raises(OllamaError, match=r"broke off its answer .*ConnectionResetError") \
                as caught:
            query_ollama("?", url=f"http://127.0.0.1:{httpd.server_port}/api/chat", timeout=5)
        assert "no Ollama server" not in str(caught.value)


def test_server_down_is_a_clear_error():
    url = "http://127.0.0.1:9/api/chat"  # port 9: nothing listens
    assert not ollama_is_running(url)
    with pytest.raises(OllamaError, match="no Ollama server at .*ollama serve"):
        query_ollama("?", url=url, timeout=5)


def test_judge_scores_each_response(ollama_server):
    replies = iter(["87", "not a number", "12"])
    ollama_server.reply = lambda body: (200, chat_answer(next(replies)))
    data = [{"instruction": f"Task {i}", "input": "", "output": "x", "model_response": "y"}
            for i in range(3)]
    assert ollama_is_running(ollama_server.url)
    assert score_responses(data, url=ollama_server.url, progress=False) == [87, None, 12]
    prompt = ollama_server.requests[0][1]["messages"][0]["content"]
    assert "Task 0" in prompt and "Reference answer: x" in prompt and prompt.count("y") >= 1


def test_a_failed_request_ends_the_run_and_keeps_the_scores_before_it(ollama_server):
    replies = iter([(200, chat_answer("87")), (200, chat_answer("no")), (404, b"{}")])
    ollama_server.reply = lambda body: next(replies)
    data = [{"instruction": f"Task {i}", "input": "", "output": "x", "model_response": "y"}
            for i in range(4)]
    with pytest.raises(OllamaError, match="HTTP 404") as caught:
        score_responses(data, url=ollama_server.url, progress=False)
    assert caught.value.scores == [87, None] and len(ollama_server.requests) == 3
    assert OllamaError("raised elsewhere").scores is None


def test_a_connect_timeout_blames_the_connection_not_the_model(monkeypatch):
    import http.client

    def connect(self):
        raise TimeoutError("timed out")

    monkeypatch.setattr(http.client.HTTPConnection, "connect", connect)
    with pytest.raises(OllamaError, match=r"no Ollama server at .*could not connect within 5") \
            as caught:
        query_ollama("?", url="http://10.255.255.1:11434/api/chat", timeout=5)
    assert "no complete answer" not in str(caught.value)
    assert not ollama_is_running("http://10.255.255.1:11434/api/chat")


def test_check_if_running_finds_this_process():
    import psutil

    # this process's own name: "python", or "pytest" when pytest runs as its own script
    assert instructions.check_if_running(psutil.Process().name())
    assert not instructions.check_if_running("no process has this name 7f3a")


def test_the_lessons_query_model_sends_the_books_request(ollama_server):
    ollama_server.reply = lambda body: (200, chat_answer("Paris"))
    assert instructions.query_model("Capital of France?", url=ollama_server.url) == "Paris"
    path, body = ollama_server.requests[0]
    assert path == "/api/chat" and body["model"] == "llama3" and body["stream"] is False
    assert body["options"] == {"seed": 123, "temperature": 0, "num_ctx": 2048}


@pytest.mark.parametrize("scores", ["lesson", "judge.py"])
def test_both_loops_send_the_lessons_prompt_and_keep_none_in_place(monkeypatch, scores):
    """The lesson's generate_model_scores and judge.py's score_responses: one prompt, one
    reading of the replies, a None where a reply is no score."""
    from ch07_instructions import judge

    entries = [{"instruction": f"Name colour {i}.", "input": "", "output": "Blue.",
                "model_response": "Red."} for i in range(7)]
    replies = ["87", " 100\n", "101", "about 50", "", "-3", "0"]
    sent = []
    ask = lambda prompt, *args, **options: sent.append(prompt) or replies[len(sent) - 1]  # noqa: E731
    if scores == "lesson":
        monkeypatch.setattr(instructions, "query_model", ask)
        got = instructions.generate_model_scores(entries, "model_response")
    else:
        monkeypatch.setattr(judge, "query_ollama", ask)
        got = judge.score_responses(entries, progress=False)
    assert got == [87, 100, None, None, None, None, 0]
    assert sent == [instructions.judge_prompt(entry) for entry in entries]


@pytest.mark.parametrize("tags", [b"{}", b"<html>a web server</html>", b"[]", b"\xff"])
def test_ollama_is_running_wants_ollamas_list_of_models(ollama_server, tags):
    ollama_server.tags = tags
    assert not ollama_is_running(ollama_server.url)


def test_score_responses_gives_its_timeout_to_each_request(monkeypatch):
    from ch07_instructions import judge

    seen = []
    monkeypatch.setattr(judge, "query_ollama", lambda prompt, *args, **options:
                        seen.append(options) or "50")
    data = [{"instruction": "Task", "input": "", "output": "x", "model_response": "y"}] * 2
    assert judge.score_responses(data, progress=False) == [50, 50]
    assert judge.score_responses(data, timeout=7.5, progress=False) == [50, 50]
    assert [options["timeout"] for options in seen] == [120.0, 120.0, 7.5, 7.5]


def lines_every(pause, count, length=None, before=0.0):
    """A handler class that sends `count` JSON lines of a streamed answer, `pause` s apart,
    its headers `before` s after the request."""
    import time

    class Lines(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            time.sleep(before)
            self.send_response(200)
            if length is not None:
                self.send_header("Content-Length", str(length))
            self.end_headers()
            try:
                for i in range(count):
                    self.wfile.write(chat_answer(str(i % 10)) + b"\n")
                    self.wfile.flush()
                    time.sleep(pause)
            except OSError:  # the client hung up
                pass

        def log_message(self, *args):
            pass

    return Lines


@pytest.mark.parametrize("length", [None, 10_000])  # the end announced by closing, or a length
def test_a_trickling_reply_is_cut_off_at_the_deadline(length):
    """Each read gets a line well within the limit; the deadline ends the whole request."""
    with serving(lines_every(0.1, 20, length)) as httpd:  # the trickle itself lasts 2 s
        error, seconds = timed_query(f"http://127.0.0.1:{httpd.server_port}/api/chat", timeout=0.5)
    assert isinstance(error, OllamaError) and "no complete answer within 0.5 s" in str(error)
    assert 0.5 <= seconds < 1.0  # the deadline, then at most the one read that crossed it


def test_a_trickle_ends_by_the_deadline_plus_one_read():
    """A line comes at 0.8 s, before the 1 s deadline, the next at 1.6 s: the read waiting for
    it crosses the deadline, and the request ends when it returns, within twice the timeout."""
    with serving(lines_every(0.8, 5)) as httpd:  # 4 s in all
        error, seconds = timed_query(f"http://127.0.0.1:{httpd.server_port}/api/chat", timeout=1.0)
    assert isinstance(error, OllamaError) and "no complete answer within 1.0 s" in str(error)
    assert 1.4 <= seconds < 2.0


def test_the_deadline_counts_from_the_call_not_from_the_headers():
    """The headers and a first line come at 0.7 s, the next lines 0.8 s apart: the body read
    started before the 1 s deadline returns at 1.5 s and ends the call, within twice the
    timeout (a deadline counted from the headers would let one more read start, to 2.3 s)."""
    with serving(lines_every(0.8, 5, before=0.7)) as httpd:
        error, seconds = timed_query(f"http://127.0.0.1:{httpd.server_port}/api/chat", timeout=1.0)
    assert isinstance(error, OllamaError) and "no complete answer within 1.0 s" in str(error)
    assert 1.3 <= seconds < 2.0


def test_a_streamed_reply_complete_within_the_deadline_is_returned_whole():
    with serving(lines_every(0.1, 5)) as httpd:
        reply, seconds = timed_query(f"http://127.0.0.1:{httpd.server_port}/api/chat", timeout=5)
    assert reply == "01234" and seconds < 5


def test_a_stall_is_cut_off_after_one_read_of_timeout_seconds():
    with serving(lines_every(3.0, 2)) as httpd:  # one line, then nothing for 3 s
        error, seconds = timed_query(f"http://127.0.0.1:{httpd.server_port}/api/chat", timeout=0.5)
    assert isinstance(error, OllamaError) and "no complete answer within 0.5 s" in str(error)
    assert 0.5 <= seconds < 1.0


def test_https_to_a_plain_http_server_is_a_tls_error_not_a_missing_server(ollama_server):
    """A learner who types https://localhost:11434 reaches Ollama, which serves plain HTTP."""
    url = ollama_server.url.replace("http://", "https://")
    with pytest.raises(OllamaError, match=r"did not complete a TLS handshake .*SSLError.*"
                                          r"plain http://: try http://127\.0\.0\.1") as caught:
        query_ollama("?", url=url, timeout=5)
    assert "no Ollama server" not in str(caught.value)
    assert not ollama_is_running(url, timeout=5)


def test_a_json_reply_over_several_lines_is_read_as_one_object(ollama_server):
    reply = json.dumps({"message": {"role": "assistant", "content": "85"}}, indent=2).encode()
    ollama_server.reply = lambda body: (200, reply)
    assert query_ollama("?", url=ollama_server.url) == "85"


@pytest.mark.parametrize("suffix", ["/api/chat", "/api/", "/api", "/", ""])
def test_ollama_is_running_asks_api_tags_whatever_the_path(ollama_server, suffix):
    base = ollama_server.url.removesuffix("/api/chat")
    assert ollama_is_running(base + suffix)

