# Generated from ch07_instructions/beyond_2_judge.ipynb
# by `python -m shared.notebooks export`. Do not edit: change the notebook's cells
# marked `#| export judge`, then export again.
# Each `# %%` line names the cell the code below it came from.

# %% beyond_2_judge.ipynb cell 6, What goes wrong with the small client

"""Chapter 7, section 7.8: an LLM as the judge. query_model asks a model served by Ollama,
turning every way the server can fail into one OllamaError; generate_model_scores asks it to
score each response against its reference."""

import http.client
import json
import socket
import ssl
import threading
import time
import urllib.parse

from shared import check, check_entries, check_number, progress_bar


OLLAMA_URL = "http://localhost:11434/api/chat"


class OllamaError(RuntimeError):
    """The Ollama server could not be reached or gave no usable answer. When
    generate_model_scores raises it, `scores` holds the scores of the entries before the failed
    one; from query_model, `scores` is None."""

    scores: list | None = None


# %% beyond_2_judge.ipynb cell 10, A deadline for the whole request

def _request_before_deadline(url: str, body: bytes | None, timeout: float
                             ) -> tuple[int, str | None, bytes]:
    """POST `body` as JSON, or GET if it is None; return (status, the Location header, reply),
    or raise TimeoutError after `timeout` s (ConnectionError if connecting takes that long). A
    redirect is returned, not followed. A TLS handshake that fails after connecting raises
    ssl.SSLError. Once connected, any other failure is an HTTPException (an OSError such as a
    reset is its __cause__): only a failure to connect is another OSError.

    A socket's timeout limits each read, so a server that sends a byte now and then could
    hold a caller for ever; a timer shuts the connection down at the deadline instead.
    """
    deadline = time.monotonic() + timeout
    parts = urllib.parse.urlsplit(url)
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    connection = kind(parts.hostname, parts.port, timeout=timeout)
    try:
        connection.connect()  # at most `timeout` for each address, then the TLS handshake
    except ssl.SSLError:  # connected, but the handshake failed
        raise
    except OSError as error:
        if connection.sock is not None:  # connected (sock is set), then the handshake broke off
            raise ssl.SSLError(f"TLS handshake broke off: {error!r}") from error
        if isinstance(error, TimeoutError):  # no server reached: not a slow answer
            raise ConnectionError(f"could not connect within {timeout} s") from None
        raise
    sock, expired, answered = connection.sock, threading.Event(), threading.Event()
    first = threading.Lock()  # the deadline or the whole answer, whichever comes first

    def expire():
        with first:
            if answered.is_set():
                return
            expired.set()
        try:
            sock.shutdown(socket.SHUT_RDWR)  # wakes a read that is waiting
        except OSError:
            pass

    timer = threading.Timer(max(deadline - time.monotonic(), 0.0), expire)
    timer.daemon = True
    timer.start()
    try:
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        connection.request("GET" if body is None else "POST", path, body,
                           {} if body is None else {"Content-Type": "application/json"})
        response = connection.getresponse()
        status, location, reply = response.status, response.getheader("Location"), response.read()
        with first:
            if not expired.is_set():
                answered.set()
    except (http.client.HTTPException, TimeoutError):
        if not expired.is_set():
            raise
    except OSError as error:  # a reset, say: the server was reached, then the answer broke off
        if not expired.is_set():
            raise http.client.HTTPException(f"connection lost: {error!r}") from error
    finally:
        timer.cancel()
        connection.close()
    if expired.is_set():  # a reply read after it may be cut short
        raise TimeoutError(f"no complete answer within {timeout} s")
    return status, location, reply


# %% beyond_2_judge.ipynb cell 12, `query_model`: one error for each failure

def query_model(prompt: str, model: str = "llama3", url: str = OLLAMA_URL, *, seed: int = 123,
                temperature: float = 0.0, num_ctx: int = 2048, timeout: float = 120.0) -> str:
    """Send one user message to an Ollama server's /api/chat endpoint; return its reply.

    `timeout` (seconds) bounds the request from the call to the reply's last byte, connecting
    included; connecting may itself take up to `timeout` for each address of the host it
    tries, and looking the host up (instant for localhost) is left to the system's resolver.
    """
    check_number("timeout", timeout, "a positive number of seconds", low_open=True)
    check(urllib.parse.urlsplit(url).scheme in ("http", "https"),
          f"url must start with http:// or https://, got {url!r}")
    request = json.dumps({
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "options": {"seed": seed, "temperature": temperature, "num_ctx": num_ctx},
        "stream": False,
    }).encode("utf-8")
    try:
        status, location, reply = _request_before_deadline(url, request, timeout)
    except TimeoutError:
        raise OllamaError(f"Ollama at {url} gave no complete answer within {timeout} s (the "
                          f"limit for the whole request; pass a larger timeout for a slow "
                          f"model)") from None
    except http.client.HTTPException as error:  # before OSError: RemoteDisconnected is both
        raise OllamaError(f"Ollama at {url} broke off its answer or does not speak HTTP "
                          f"({error.__cause__ or error!r})") from None
    except ssl.SSLError as error:  # before OSError: a server was reached
        plain = "http://" + url.split("://", 1)[1]
        raise OllamaError(f"the server at {url} did not complete a TLS handshake ({error!r}); "
                          f"Ollama serves plain http://: try {plain} (or, behind an HTTPS "
                          f"proxy, its certificate was refused)") from None
    except OSError as error:
        raise OllamaError(f"no Ollama server at {url} ({error!r}). Install it from "
                          f"https://ollama.com, start it with `ollama serve`, and fetch the "
                          f"judge with `ollama pull {model}`.") from None
    if 300 <= status < 400:  # not followed: the answer must come from the server at url
        raise OllamaError(f"Ollama at {url} answered with a redirect (HTTP {status}) to "
                          f"{location}: give the server's own address as url")
    if status >= 400:
        detail = reply.decode("utf-8", "replace")[:200]
        if status == 404:  # Ollama's answer for a model it does not have, or a wrong path
            advice = (f"is the model pulled? run `ollama pull {model}`; and does url end in "
                      f"/api/chat?")
        elif status >= 500:
            advice = ("an error in the server, which its message names; one possible cause is "
                      "a judge that needs more memory than the machine has")
        else:
            advice = "the server refused the request; its message says why"
        raise OllamaError(f"Ollama at {url} answered HTTP {status}: {detail} ({advice})")
    if not reply.strip():  # not an empty answer from the model: no answer at all
        raise OllamaError(f"Ollama at {url} sent an empty reply (HTTP {status}, no JSON)")
    try:
        body = reply.decode("utf-8")
    except UnicodeDecodeError as error:
        raise OllamaError(f"Ollama at {url} sent an unexpected answer, not UTF-8 text (byte "
                          f"{reply[error.start]:#04x} at position {error.start}): "
                          f"{reply[:200]!r}") from None
    try:  # one JSON object (what "stream": False asks for)
        parts = [json.loads(body)]
    except json.JSONDecodeError:
        try:  # or one per line, if the server streams anyway
            parts = [json.loads(line) for line in body.splitlines() if line.strip()]
        except json.JSONDecodeError as error:
            raise OllamaError(f"Ollama at {url} sent an unexpected answer, not JSON ({error}): "
                              f"{body[:200]!r}") from None
    try:
        return "".join(part["message"]["content"] for part in parts)
    except (KeyError, TypeError):
        raise OllamaError(f"Ollama at {url} sent an unexpected answer, without "
                          f"message.content: {body[:200]!r}") from None


# %% beyond_2_judge.ipynb cell 14, The rest of the judge

def ollama_is_running(url: str = OLLAMA_URL, timeout: float = 2.0) -> bool:
    """True if the server answers /api/tags as Ollama does, with HTTP 200 and a JSON object
    holding "models", within `timeout` seconds (a deadline for the whole request); a redirect
    or any other reply is no. /api/tags replaces what follows "/api/" in `url` (or is added to
    its end if it has none): http://host:11434/api/chat asks http://host:11434/api/tags."""
    check_number("timeout", timeout, "a positive number of seconds", low_open=True)
    check(urllib.parse.urlsplit(url).scheme in ("http", "https"),
          f"url must start with http:// or https://, got {url!r}")
    try:
        status, _, reply = _request_before_deadline(url.split("/api/")[0] + "/api/tags", None,
                                                    timeout)
    except (http.client.HTTPException, OSError):  # TimeoutError is an OSError
        return False
    try:
        listing = json.loads(reply)
    except ValueError:  # not JSON, or not UTF-8 text
        return False
    return status == 200 and isinstance(listing, dict) and "models" in listing


def check_if_running(process_name: str) -> bool:
    """The book's check: True if a running process has `process_name` in its name. It needs
    psutil (requirements.txt installs it; or `pip install psutil`)."""
    import psutil

    return any(process_name in (p.info["name"] or "") for p in psutil.process_iter(["name"]))


def generate_model_scores(json_data: list, json_key: str = "model_response",
                          model: str = "llama3", *, url: str = OLLAMA_URL,
                          timeout: float = 120.0, progress: bool = True) -> list:
    """Ask the judge to score each entry's `json_key` from 0 to 100; None where it gave no
    number. `timeout` is query_model's, for each request. A failed request ends the run with
    an OllamaError whose `scores` holds the scores before it: `json_data[len(error.scores):]`
    is what is left to score."""
    # the lesson's (7.8), imported here so that importing this module does not load the lesson's
    from shared import judge_prompt, read_score

    check_entries(json_data, ("instruction", "output", json_key))
    scores = []
    for entry in progress_bar(json_data, desc="scoring", unit="response", disable=not progress):
        try:
            reply = query_model(judge_prompt(entry, json_key), model=model, url=url,
                                timeout=timeout)
        except OllamaError as error:  # the run ends, and the scores so far go with the error
            error.scores = scores
            raise
        scores.append(read_score(reply))
    return scores


__all__ = [
    'OLLAMA_URL',
    'OllamaError',
    'query_model',
    'ollama_is_running',
    'check_if_running',
    'generate_model_scores',
]
