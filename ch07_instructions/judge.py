# Generated from ch07_instructions/beyond_2_judge.ipynb
# by `python -m shared.notebooks export`. Do not edit: change the notebook's cells
# marked `#| export judge`, then export again.
# Each `# %%` line names the cell the code below it came from.

# %% beyond_2_judge.ipynb cell 21, How `judge.py` tells the failures apart

"""Chapter 7, section 7.8: an LLM as the judge. query_model asks a model served by Ollama,
turning every way the request can fail into one OllamaError that says what to do;
generate_model_scores asks it to score each response against its reference."""

import http.client
import json
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request

from shared import check, check_entries, check_number, progress_bar


OLLAMA_URL = "http://localhost:11434/api/chat"


class OllamaError(RuntimeError):
    """The Ollama server could not be reached or gave no usable answer. When
    generate_model_scores raises it, `scores` holds the scores of the entries before the failed
    one; from query_model, `scores` is None."""

    scores: list | None = None


def _check_url(url) -> None:
    """The one check of a url: http:// or https://, a host a name lookup can take, a port from 1
    to 65535 if any, and no space or control character (which no request line may hold)."""
    try:
        parts = urllib.parse.urlsplit(url)
        good = (parts.scheme in ("http", "https") and bool(parts.hostname)
                and parts.port != 0 and url.isprintable() and " " not in url)
        parts.hostname.encode("idna")  # UnicodeError (a ValueError) for an empty label, say
    except (ValueError, AttributeError, TypeError):  # a bad port or bracket; not a str
        good = False
    check(good, f"url must look like http://host:port/api/chat (or https://), with a port from "
                f"1 to 65535; got {url!r}", ValueError if isinstance(url, str) else TypeError)


# %% beyond_2_judge.ipynb cell 23, How `judge.py` tells the failures apart

class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args):  # no new request: the redirect comes back as a reply
        return None


def _request_with_body_deadline(url: str, body: bytes | None, timeout: float
                                ) -> tuple[int, str | None, bytes]:
    """POST `body` as JSON, or GET if it is None; return (status, the Location header, reply).
    A redirect or an error status is returned, not followed or raised. Each read of the socket
    waits at most `timeout` s, and no read of the body starts later than `timeout` s after the
    call. Raises URLError when the request could not be sent (its `reason` says why),
    TimeoutError when a read waits `timeout` s or the body is not complete by then, and another
    OSError or an http.client.HTTPException when the reply breaks off."""
    deadline = time.monotonic() + timeout
    headers = {} if body is None else {"Content-Type": "application/json"}
    request = urllib.request.Request(url, data=body, headers=headers)
    try:
        response = urllib.request.build_opener(_NoRedirects).open(request, timeout=timeout)
    except urllib.error.HTTPError as error:  # a 3xx, 4xx or 5xx: a reply all the same
        response = error
    with response:
        reply = b""
        while time.monotonic() < deadline:  # each read of the body starts before the deadline
            piece = response.read1(65536)  # what one read of the socket brings
            if not piece:  # the end of the reply
                length = response.headers.get("Content-Length", "")
                if length.isdigit() and len(reply) < int(length):  # read1 ends quietly at a cut
                    raise http.client.IncompleteRead(reply, int(length) - len(reply))
                return response.status, response.headers.get("Location"), reply
            reply += piece
    raise TimeoutError(f"no complete answer within {timeout} s")


# %% beyond_2_judge.ipynb cell 25, How `judge.py` tells the failures apart

def query_model(prompt: str, model: str = "llama3", url: str = OLLAMA_URL, *, seed: int = 123,
                temperature: float = 0.0, num_ctx: int = 2048, timeout: float = 120.0) -> str:
    """Send one user message to an Ollama server's /api/chat endpoint; return its reply.

    `timeout` (seconds): each read waits at most this long, and no read of the reply's body
    starts later than this long after the call, so a reply that trickles is cut off. A call to
    a local Ollama ends within twice `timeout` (beyond_2_judge.ipynb says when exactly).
    """
    _check_url(url)
    check_number("timeout", timeout, "a positive number of seconds", low_open=True)
    request = json.dumps({
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "options": {"seed": seed, "temperature": temperature, "num_ctx": num_ctx},
        "stream": False,
    }).encode("utf-8")
    try:
        status, location, reply = _request_with_body_deadline(url, request, timeout)
    except TimeoutError:  # a read waited `timeout` s, or the deadline passed
        raise OllamaError(f"Ollama at {url} gave no complete answer within {timeout} s (pass a "
                          f"larger timeout for a slow model)") from None
    except urllib.error.URLError as error:  # before OSError: the request could not be sent
        if isinstance(error.reason, ssl.SSLError):  # a server, but no TLS handshake
            plain = "http://" + url.split("://", 1)[1]
            raise OllamaError(f"the server at {url} did not complete a TLS handshake "
                              f"({error.reason!r}); Ollama serves plain http://: try {plain} "
                              f"(or, behind an HTTPS proxy, its certificate was refused)") from None
        why = (f"could not connect within {timeout} s" if isinstance(error.reason, TimeoutError)
               else repr(error.reason))
        raise OllamaError(f"no Ollama server at {url} ({why}). Install it from "
                          f"https://ollama.com, start it with `ollama serve`, and fetch the "
                          f"judge with `ollama pull {model}`.") from None
    except (http.client.HTTPException, OSError) as error:  # a server, then the reply broke off
        raise OllamaError(f"Ollama at {url} broke off its answer or does not speak HTTP "
                          f"({error!r})") from None
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


# %% beyond_2_judge.ipynb cell 32, When a scoring run fails partway

def ollama_is_running(url: str = OLLAMA_URL, timeout: float = 2.0) -> bool:
    """True if the server answers /api/tags as Ollama does, with HTTP 200 and a JSON object
    holding "models", within `timeout` seconds (as query_model's); a redirect or any other
    reply is no. /api/tags replaces the url's path from "/api" on (http://host:11434/api/chat
    asks http://host:11434/api/tags); a url without "/api" gets it appended."""
    _check_url(url)
    check_number("timeout", timeout, "a positive number of seconds", low_open=True)
    tags = url.split("/api/")[0].rstrip("/").removesuffix("/api") + "/api/tags"
    try:
        status, _, reply = _request_with_body_deadline(tags, None, timeout)
    except (http.client.HTTPException, OSError):  # URLError and TimeoutError are OSErrors
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
    # the lesson's (7.8), imported here, not at the top, so that importing judge.py does not
    # load the lesson's module, which imports torch
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
