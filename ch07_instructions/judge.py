# Generated from ch07_instructions/beyond_2_judge.ipynb
# by `python -m shared.tooling.notebooks export`. Do not edit: change the notebook's cells
# marked `#| export judge`, then export again.
# Each `# %%` line names the cell the code below it came from.

# %% beyond_2_judge.ipynb cell 19, The client

"""Chapter 7, beyond the book: asking section 7.8's judge through a client that says what went
wrong. query_ollama sends the request of the lesson's query_model and turns every way it can
fail into one OllamaError that says what to do; score_responses scores responses as the
lesson's generate_model_scores does, and keeps the scores given before a failure."""

import http.client
import json
import ssl
import time
import urllib.error
import urllib.request

from ch07_instructions.instructions import OLLAMA_URL, judge_prompt, read_score
from shared.checks import check
from shared.utils import progress_bar


class OllamaError(RuntimeError):
    """The Ollama server could not be reached or gave no usable answer. When score_responses
    raises it, `scores` holds the scores of the entries before the failed one; from
    query_ollama, `scores` is None."""

    scores: list | None = None


def score_responses(json_data: list, json_key: str = "model_response", model: str = "llama3",
                    *, url: str = OLLAMA_URL, timeout: float = 120.0,
                    progress: bool = True) -> list:
    """The lesson's generate_model_scores through query_ollama: the judge's score of each
    entry's `json_key` response, None where its reply is no number. `timeout` is
    query_ollama's, for each request. A failed request ends the run with an OllamaError whose
    `scores` holds the scores before it: `json_data[len(error.scores):]` is what is left."""
    # every entry, before the first request: a key missing further on would end the run there
    missing = [(i, key) for i, entry in enumerate(json_data)  # None would be asked as "None"
               for key in ("instruction", "output", json_key)
               if not isinstance(entry.get(key), str)]
    check(not missing, lambda: "json_data: entry {} has no {!r} string".format(*missing[0]))
    scores = []
    for entry in progress_bar(json_data, desc="scoring", unit="response", disable=not progress):
        try:
            reply = query_ollama(judge_prompt(entry, json_key), model, url, timeout=timeout)
        except OllamaError as error:  # the run ends, and the scores so far go with the error
            error.scores = scores
            raise
        scores.append(read_score(reply))
    return scores


# %% beyond_2_judge.ipynb cell 20, The client

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


# %% beyond_2_judge.ipynb cell 21, The client

def query_ollama(prompt: str, model: str = "llama3", url: str = OLLAMA_URL, *, seed: int = 123,
                 temperature: float = 0.0, num_ctx: int = 2048, timeout: float = 120.0) -> str:
    """Send one user message to an Ollama server's /api/chat endpoint, as the lesson's
    query_model does; return its reply, or raise one OllamaError that says what went wrong
    (a url urllib cannot parse at all, such as "/api/chat", raises urllib's ValueError).

    `timeout` (seconds): each read waits at most this long, and no read of the reply's body
    starts later than this long after the call, so a reply that trickles is cut off. A call to
    a local Ollama ends within twice `timeout` (beyond_2_judge.ipynb says when exactly).
    """
    # 0 would make the socket non-blocking, and its failure would read as "no server"
    check(0 < timeout < float("inf"),
          lambda: f"timeout must be a positive finite number, got {timeout!r}")
    request = json.dumps({
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "options": {"seed": seed, "temperature": temperature, "num_ctx": num_ctx},
        "stream": False,
    }).encode("utf-8")
    status, location, reply, error = None, None, b"", None
    try:
        status, location, reply = _request_with_body_deadline(url, request, timeout)
        if status < 300 and reply.strip():  # a reply with a body: the answer, if it is one
            return _message_content(reply)
    except http.client.InvalidURL:  # a mistyped url: http.client's message says what is wrong
        raise
    except (http.client.HTTPException, OSError, UnicodeDecodeError, json.JSONDecodeError,
            KeyError, TypeError) as caught:  # URLError and TimeoutError are OSErrors
        error = caught
    raise OllamaError(_what_failed(url, model, timeout, error, status, location, reply))


def _message_content(reply: bytes) -> str:
    """The model's answer in a reply from /api/chat: one JSON object (what "stream": False asks
    for), or one per line, if the server streams anyway."""
    body = reply.decode("utf-8")
    try:
        parts = [json.loads(body)]
    except json.JSONDecodeError:
        parts = [json.loads(line) for line in body.splitlines() if line.strip()]
    return "".join(part["message"]["content"] for part in parts)


def _what_failed(url, model, timeout, error, status, location, reply: bytes) -> str:
    """query_ollama's failures in one place, in the order they can happen: the message of its
    OllamaError, which names the url, what happened there and what to do. `error` is what
    sending the request or reading its reply raised; None when the reply is no answer."""
    at, text = f"Ollama at {url}", reply.decode("utf-8", "replace")[:200]
    reason = getattr(error, "reason", None)  # a URLError's: why the request was not sent
    if isinstance(reason, ssl.SSLError):  # a server, but no TLS handshake
        return (f"the server at {url} did not complete a TLS handshake ({reason!r}); Ollama "
                f"serves plain http://: try http://{url.split('://', 1)[1]} (or, behind an "
                f"HTTPS proxy, its certificate was refused)")
    if isinstance(error, urllib.error.URLError) and isinstance(reason, str):  # no http(s)://
        return f"{url!r} is not an http:// or https:// url ({reason})"
    if isinstance(error, urllib.error.URLError):  # nothing listens there, or not in time
        why = (f"could not connect within {timeout} s" if isinstance(reason, TimeoutError)
               else repr(reason))
        return (f"no Ollama server at {url} ({why}). Install it from https://ollama.com, start "
                f"it with `ollama serve`, and fetch the judge with `ollama pull {model}`.")
    if isinstance(error, TimeoutError):  # a read waited `timeout` s, or the deadline passed
        return (f"{at} gave no complete answer within {timeout} s (pass a larger timeout for a "
                f"slow model)")
    if isinstance(error, (OSError, http.client.HTTPException)):  # a server, then no reply
        return f"{at} broke off its answer or does not speak HTTP ({error!r})"
    if error is None and 300 <= status < 400:  # not followed: the answer must come from url
        return (f"{at} answered with a redirect (HTTP {status}) to {location}: give the "
                f"server's own address as url")
    if error is None and status >= 400:  # 404: a model Ollama does not have, or a wrong path
        advice = (f"is the model pulled? run `ollama pull {model}`; and does url end in /api/chat?"
                  if status == 404 else
                  "an error in the server, which its message names; one possible cause is a "
                  "judge that needs more memory than the machine has" if status >= 500 else
                  "the server refused the request; its message says why")
        return f"{at} answered HTTP {status}: {text} ({advice})"
    if error is None:  # not an empty answer from the model: no answer at all
        return f"{at} sent an empty reply (HTTP {status}, no JSON)"
    if isinstance(error, UnicodeDecodeError):
        return (f"{at} sent an unexpected answer, not UTF-8 text (byte "
                f"{reply[error.start]:#04x} at position {error.start}): {reply[:200]!r}")
    if isinstance(error, json.JSONDecodeError):
        return f"{at} sent an unexpected answer, not JSON ({error}): {text!r}"
    # a KeyError or a TypeError: JSON, but not Ollama's
    return f"{at} sent an unexpected answer, without message.content: {text!r}"


# %% beyond_2_judge.ipynb cell 22, The client

def ollama_is_running(url: str = OLLAMA_URL, timeout: float = 2.0) -> bool:
    """True if the server answers /api/tags as Ollama does, with HTTP 200 and a JSON object
    holding "models", within about twice `timeout` (as query_ollama's); a redirect or any other
    reply is no. /api/tags replaces the url's path from "/api" on (http://host:11434/api/chat
    asks http://host:11434/api/tags); a url without "/api" gets it appended."""
    # a url that is not one would otherwise read as "no server"
    if not (isinstance(url, str) and url.startswith(("http://", "https://"))):
        raise ValueError(f"url must start with http:// or https://, got {url!r}")
    check(0 < timeout < float("inf"),
          lambda: f"timeout must be a positive finite number, got {timeout!r}")
    tags = url.split("/api/")[0].rstrip("/").removesuffix("/api") + "/api/tags"
    try:
        status, _, reply = _request_with_body_deadline(tags, None, timeout)
    except http.client.InvalidURL:  # a mistyped url, not a server that is down
        raise
    except (http.client.HTTPException, OSError):  # URLError and TimeoutError are OSErrors
        return False
    try:
        listing = json.loads(reply)
    except ValueError:  # not JSON, or not UTF-8 text
        return False
    return status == 200 and isinstance(listing, dict) and "models" in listing


__all__ = [
    'OllamaError',
    'score_responses',
    'query_ollama',
    'ollama_is_running',
]
