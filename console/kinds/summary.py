"""Transfer summaries: the prompt for the LLM, a lenient reading of its answer, and an
extractive summary computed locally when the LLM cannot be reached."""

from __future__ import annotations

import json
import re
from typing import Any

from console.model import Transfer, Turn

FIELDS = ("caller", "issue", "steps_taken", "sentiment", "next_action")

SYSTEM_PROMPT = (
    "You prepare warm-transfer notes for a contact centre. Read the conversation and answer with "
    "one JSON object only, with these keys: caller (who is calling, name if given), issue (one "
    "sentence), steps_taken (a list of short strings: what was already tried or said), sentiment "
    "(positive, neutral or negative), next_action (what the receiving agent should do first)."
)

_POSITIVE = {"thanks", "thank", "great", "good", "perfect", "happy", "appreciate", "lovely", "excellent", "helpful"}
_NEGATIVE = {"angry", "frustrated", "annoyed", "terrible", "awful", "unacceptable", "cancel", "complaint",
             "wrong", "broken", "again", "still", "worst", "ridiculous", "upset", "disappointed", "refund"}
_NAME = re.compile(r"\b(?i:my name is|this is|i am|i'm)\s+([A-Z][a-z]+(?:\s+[A-Z][a-z]+)?)")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def messages_for(turns: list[Turn], transfer: Transfer) -> list[dict[str, str]]:
    transcript = "\n".join(f"{t.role}: {t.text}" for t in turns) or "(no conversation yet)"
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": f"Transfer from agent {transfer.from_agent} to agent {transfer.to_agent}.\n\n"
                                    f"Conversation:\n{transcript}"},
    ]


def _first_sentence(text: str, limit: int = 160) -> str:
    sentence = _SENTENCE.split(text.strip(), maxsplit=1)[0]
    return sentence if len(sentence) <= limit else sentence[: limit - 1].rstrip() + "…"


def extractive(turns: list[Turn], transfer: Transfer) -> dict[str, Any]:
    """A summary from the words of the call alone: no model, no network."""
    caller_turns = [t.text for t in turns if t.role == "caller"]
    helper_turns = [t.text for t in turns if t.role in ("assistant", "agent")]
    caller = "unknown caller"
    for text in caller_turns:
        m = _NAME.search(text)
        if m:
            caller = m.group(1)
            break
    words = [w.strip(".,!?;:'\"").lower() for text in caller_turns for w in text.split()]
    score = sum(w in _POSITIVE for w in words) - sum(w in _NEGATIVE for w in words)
    sentiment = "positive" if score > 0 else "negative" if score < 0 else "neutral"
    questions = [s for text in caller_turns for s in _SENTENCE.split(text) if s.strip().endswith("?")]
    # the issue: the first sentence that is more than a greeting or an introduction
    sentences = [x.strip() for text in caller_turns for x in _SENTENCE.split(text) if x.strip()]
    substantive = [x for x in sentences if not _NAME.search(x) and len(x.split()) > 3]
    issue = (substantive or sentences or ["no caller words recorded yet"])[0]
    return {
        "caller": caller,
        "issue": _first_sentence(issue),
        "steps_taken": [_first_sentence(t) for t in helper_turns[-3:]],
        "sentiment": sentiment,
        "next_action": (f"answer: {_first_sentence(questions[-1])}" if questions
                        else f"{transfer.to_agent} takes over the call from {transfer.from_agent}"),
    }


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value.strip()
    if value is None:
        return ""
    return str(value)


def from_llm(content: str, fallback: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """Read the model's answer into the five fields. Returns (summary, source): "llm" when it
    gave the structure asked for; "llm-unstructured" when not — then its text is kept as notes
    and the missing fields come from the extractive summary, so the result is always usable."""
    data = json_object(content)
    if data is None:
        summary = dict(fallback)
        summary["notes"] = content.strip()[:2000]
        return summary, "llm-unstructured"
    lowered = {str(k).lower().replace(" ", "_"): v for k, v in data.items()}
    summary: dict[str, Any] = {}
    complete = True
    for key in FIELDS:
        value = lowered.get(key)
        if key == "steps_taken":
            if isinstance(value, str):
                value = [value] if value.strip() else []
            value = [_text(v) for v in value if _text(v)] if isinstance(value, list) else None
            missing = value is None  # an empty list is an answer: nothing tried yet
        else:
            value = _text(value) or None
            missing = value is None
        if missing:
            complete = False
            value = fallback[key]
        summary[key] = value
    if isinstance(summary["sentiment"], str):
        summary["sentiment"] = summary["sentiment"].lower()
    return summary, "llm" if complete else "llm-unstructured"


def json_object(text: str) -> dict[str, Any] | None:
    """The first JSON object in `text` (models sometimes wrap it in prose or code fences)."""
    try:
        value = json.loads(text)
        return value if isinstance(value, dict) else None
    except (json.JSONDecodeError, TypeError):
        pass
    start = text.find("{") if isinstance(text, str) else -1
    while start != -1:
        depth = 0
        for i in range(start, len(text)):
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
                if depth == 0:
                    try:
                        value = json.loads(text[start:i + 1])
                        return value if isinstance(value, dict) else None
                    except json.JSONDecodeError:
                        break
        start = text.find("{", start + 1)
    return None
