"""What the API's error answers say, in its three dialects, for error lines and the op switch.

Kept apart from the client because it is pure: bytes in, words out, no session.
"""

from __future__ import annotations

import http
import re
from collections.abc import Mapping
from typing import Any, Final

import orjson

_NAMES_OP: Final = re.compile(r"\bparam(?:eter)?\s*:?\s*[\"']?op\b", re.IGNORECASE)

_SANDBOX_HINT: Final = (
    "check --sandbox/AEP_SANDBOX_NAME, a lower-case name such as prod, and that the "
    "credentials' product profile grants Flow Service access in that sandbox"
)
HINTS: Final[Mapping[str, str]] = {
    "400003": "a required header is missing: check --org/AEP_ORG_ID",
    "401013": "the access token is invalid or expired",
    "403000": "no x-api-key was sent: set AEP_API_KEY or AEP_CLIENT_ID",
    "403003": "the API key (x-api-key) is not the client ID of the credentials",
    "403010": "no access token was sent",
    "403025": "wrong organization, or the credentials are not entitled to Experience Platform "
    "in it: check --org/AEP_ORG_ID and the Developer Console project's product profile",
    "403027": "the organization ID is malformed, or the credentials have no Experience Platform "
    "product profile: check --org/AEP_ORG_ID, which ends in @AdobeOrg",
    "FLOW-1106-403": _SANDBOX_HINT,
    "FLOW-1606-403": _SANDBOX_HINT,
}
"""Advice appended to the API's own ``code: message`` for the refusals users hit most."""


def error_words(status: int, body: bytes) -> tuple[str | None, str]:
    """The API's own code and message, from a gateway, Flow Service or generic error body.

    Gateway: ``{"error_code", "message"}``. Flow Service: ``type`` ends in
    ``FLOW-<code>-<status>``, the message is ``errorMessage`` or ``report.detailed-message``
    (there is no ``detail``). Generic Platform errors: RFC 7807 ``title`` and ``detail``;
    when they list what failed validation (``validation``, ``errors``), that list is the
    message, since the ``detail`` beside it is a generic sentence.
    """
    answer = _json_object(body)
    if answer is not None:
        if "error_code" in answer:
            return str(answer["error_code"]), str(answer.get("message") or "")
        if "type" in answer or "title" in answer:
            return _problem_words(answer)
        if "message" in answer:
            return None, str(answer["message"])
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = "unexpected status"
    return None, f"HTTP {status} {phrase}"


def refuses_op(body: bytes, op: str) -> bool:
    """Whether an error body blames the ``op`` query parameter, so nothing was applied.

    Validation problems locate it (Prism: ``"location": ["query", "op"]``); Flow Service
    says ``action=<op> is not supported`` or ``query param : op``.
    """
    answer = _json_object(body)
    for problem in _problems(answer or {}):
        location = problem.get("location")
        if isinstance(location, list) and location and location[-1] == "op":
            return True
    text = body.decode("utf-8", "replace")
    return bool(_NAMES_OP.search(text) or re.search(rf"action={re.escape(op)}\b", text))


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return answer if isinstance(answer, dict) else None


def _problems(answer: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The entries of an RFC 7807 body's validation list (Stoplight's ``validation``)."""
    for key in ("validation", "errors"):
        listed = answer.get(key)
        if isinstance(listed, list):
            return [entry for entry in listed if isinstance(entry, dict)]
    return []


def _problem_words(answer: Mapping[str, Any]) -> tuple[str | None, str]:
    kind = re.split(r"[/#]", str(answer.get("type") or "").rstrip("/"))[-1]
    title = str(answer.get("title") or "")
    code = kind if any(c.isdigit() for c in kind) else (title or None)
    report = answer.get("report")
    detailed = report.get("detailed-message") if isinstance(report, dict) else None
    found = "; ".join(_problem_text(problem) for problem in _problems(answer))
    for message in (found, answer.get("detail"), answer.get("errorMessage"), detailed):
        if isinstance(message, str) and message:
            return code, message
    return (code, title) if code != title else (None, title)


def _problem_text(problem: Mapping[str, Any]) -> str:
    """``query op: must be one of ...``: where the problem is, then what it is."""
    location = problem.get("location")
    where = " ".join(map(str, location)) if isinstance(location, list) else ""
    what = str(problem.get("message") or problem.get("detail") or "")
    return f"{where}: {what}" if where and what else where or what
