"""The demo's nightly pipeline for a voice-AI contact centre (config/demo.toml).

Six `python`-kind steps, each an `async def step(ctx)`:

    ingest → transcribe → redact → train ──(80 %)──→ evaluate → report

`ingest` makes ~200 synthetic call recordings (deterministic, seeded), `transcribe`
"transcribes" them in a batch (and fails its first attempt half-way with a transient
error, to show a resume that does not redo finished work), `redact` masks phone numbers
and e-mail addresses, `train` fits a small naive-Bayes intent classifier in five chunks,
`evaluate` scores the snapshot written at 80 % on a held-out 20 % split while training
finishes, and `report` writes report.md / report.json.

Every process gets its own `ctx.workdir` (data_dir/work/<process id>), so the steps share
their files through a sibling folder, data_dir/work/nightly (`args.shared` renames it).
Each step checkpoints often enough that a resumed run (after a crash, a shutdown or an
interruption) skips what is already done, and awaits often enough that the engine's
event loop (which also runs the console) is never held for more than a few milliseconds.
Everything is pure Python and small: no network, no threads, the whole run takes < 3 s.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import re
import unicodedata
import zlib
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

from console.kinds.context import RunContext
from console.model import Interrupted

INTENTS = ("billing", "cancel", "technical", "sales")
CHUNKS = 5  # training chunks: one model snapshot (and 20 % progress) per chunk

# -- shared files --------------------------------------------------------------------------------


async def _report(ctx: RunContext, progress: float | None = None, **kwargs: Any) -> None:
    """ctx.report, then a pause of `args.pace_s` (0 by default): the console's demo sets one
    so a person can watch the night go by; headless runs stay fast. A shutdown ends the pause
    at once: the step has just checkpointed, so it stops there instead of using up the
    engine's grace period (and resumes from that checkpoint at the next start)."""
    await ctx.report(progress, **kwargs)
    pace = float(ctx.args.get("pace_s", 0))
    if pace:
        try:
            await asyncio.wait_for(ctx.stopping.wait(), pace)
        except TimeoutError:
            return
        raise Interrupted("stopped at its checkpoint for a shutdown", "shutdown")


def _shared(ctx: RunContext) -> Path:
    """The pipeline's folder, next to the per-process work folders (which nobody else sees)."""
    folder = ctx.workdir.parent / str(ctx.args.get("shared", "nightly"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _write_json(path: Path, data: Any) -> None:
    _write_text(path, json.dumps(data, indent=1, sort_keys=True))


def _write_text(path: Path, text: str) -> None:
    # Write-then-rename: a reader (evaluate reads train's snapshots while train runs) never
    # sees half a file, and a crash leaves either the old file or the new one.
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _open_output(path: Path, done: int, nbytes: int) -> tuple[BinaryIO, int]:
    """Open a JSON-lines output to continue after its first `done` records (`nbytes` bytes).

    Records written after the last checkpoint (the run stopped before it could commit
    one) are cut off, so a resume never duplicates a line. If the file is shorter than
    the checkpoint says (deleted, replaced), start over from record 0."""
    if done and path.exists() and path.stat().st_size >= nbytes:
        f = path.open("r+b")
        f.truncate(nbytes)
        f.seek(nbytes)
        return f, done
    return path.open("wb"), 0


async def _read_records(path: Path) -> list[dict[str, Any]]:
    """A JSON-lines file's records, parsed a few dozen at a time between yields."""
    records = []
    for n, raw in enumerate(path.read_bytes().splitlines(), 1):
        records.append(json.loads(raw))
        if n % 40 == 0:
            await asyncio.sleep(0)
    return records


def _line(record: dict[str, Any]) -> bytes:
    return (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def _held_out(call_id: str) -> bool:
    """The evaluation split (~20 %): a stable hash of the id, the same in every process and
    every run (`hash()` is salted per interpreter, crc32 is not)."""
    return zlib.crc32(call_id.encode()) % 5 == 0


# -- synthetic calls ---------------------------------------------------------------------------

FIRST = ("Amara", "Ben", "Chloe", "Dev", "Elena", "Farid", "Grace", "Hugo", "Isla", "Jonas",
         "Kemi", "Liam", "Maya", "Niall", "Olga", "Priya", "Quinn", "Rosa", "Sami", "Tomasz")
LAST = ("Okafor", "Hughes", "Martin", "Patel", "Rossi", "Haddad", "Kim", "Dubois", "Murphy",
        "Nowak", "Adeyemi", "Walsh", "Silva", "Byrne", "Ivanova", "Shah", "Reid", "Costa")
AGENTS = tuple(f"agent-{n:02d}" for n in range(1, 13))

PHRASES = {
    "billing": (
        "i was charged twice this month",
        "my invoice shows a fee i don't recognise",
        "can you explain the late payment charge of £{amount}",
        "i need to update the card details on my account",
        "the direct debit went out early this month",
        "why is my bill £{amount} higher than last month",
        "i want a refund for the overcharge on my statement",
        "the amount on my latest bill is wrong",
    ),
    "cancel": (
        "i want to cancel my contract",
        "please close my account at the end of the month",
        "i'm moving to another provider",
        "how much notice do i need to give to end the service",
        "i no longer need the second line so please cancel it",
        "stop the automatic renewal please",
        "what is the early termination fee if i leave now",
        "i'd like to terminate the subscription",
    ),
    "technical": (
        "my internet keeps dropping every few minutes",
        "the router lights are flashing red",
        "i can't make outgoing calls since the update",
        "the app crashes when i try to log in",
        "there's no signal at home since yesterday",
        "the connection is really slow in the evening",
        "i've restarted the modem twice already",
        "voicemail isn't working on my phone",
    ),
    "sales": (
        "i'd like to upgrade to the ﬁbre package",  # ligature: NFKC turns it into "fibre"
        "do you have a family plan with shared data",
        "what deals are there for new phones",
        "can i add a second line to my account",
        "i saw an offer on your website for order {order}",
        "how much is the unlimited data bundle",
        "i want a tablet on a new contract",
        "is there a discount if i bundle tv and broadband",
    ),
}
AGENT_LINES = (
    "let me pull up your account",
    "thanks for your patience",
    "one moment please while i check that",
    "could you confirm the postcode on the account",
    "i can help you with that",
)
GREETINGS = ("thank you for calling northwind mobile, how can i help",
             "hello you're through to northwind mobile, what can i do for you today")
CLOSINGS = ("is there anything else i can help with today", "thanks for calling, have a good evening")
FILLERS = ("um", "uh", "erm", "you know")


def _phone(rng: random.Random) -> str:
    # Numbers from the ranges reserved for drama (Ofcom 07700 900xxx, North American 555-01xx),
    # in the shapes a caller actually reads them out.
    shape = rng.randrange(4)
    if shape == 0:
        return f"+44 7700 900{rng.randrange(1000):03d}"
    if shape == 1:
        return f"07700 900 {rng.randrange(1000):03d}"
    if shape == 2:
        return f"({rng.randint(201, 989)}) 555-{rng.randint(100, 199):04d}"
    return f"+1 {rng.randint(201, 989)} 555 {rng.randint(100, 199):04d}"


def _disfluent(rng: random.Random, text: str) -> str:
    """What speech sounds like: fillers, stutters, the odd capital and stray spacing."""
    words = text.split(" ")
    out: list[str] = []
    for w in words:
        if rng.random() < 0.06:
            out.append(rng.choice(FILLERS) + ",")
        if w.isalpha() and rng.random() < 0.1:
            continue  # a word the line (or the recogniser) lost
        out.append(w)
        if w.isalpha() and rng.random() < 0.04:
            out.append(w)  # "i i think"
    text = " ".join(out)
    if rng.random() < 0.3:
        text = text[:1].upper() + text[1:]
    if rng.random() < 0.2:
        text = text.replace(" ", "\u00a0 ", 1)  # a no-break space and a doubled gap
    return text.replace("'", "\u2019") if rng.random() < 0.3 else text  # smart apostrophes


def make_call(seed: int, index: int, day: datetime) -> dict[str, Any]:
    """One recording. Each call has its own generator seeded from (seed, index), so any call
    can be made again on its own: a resumed ingest starts at call n without replaying 0..n-1."""
    rng = random.Random(f"{seed}:{index}")
    call_id = f"call-{index + 1:04d}"
    intent = rng.choices(INTENTS, weights=(35, 20, 30, 15))[0]
    first, last = rng.choice(FIRST), rng.choice(LAST)

    def fill(phrase: str) -> str:
        return phrase.format(amount=f"{rng.randint(5, 90)}.{rng.randrange(100):02d}",
                             order=rng.randint(10000, 99999))

    asks = [fill(p) for p in rng.sample(PHRASES[intent], k=rng.randint(1, 3))]
    if rng.random() < 0.3:  # callers mention something else too ("and while i'm here...")
        other = rng.choice([i for i in INTENTS if i != intent])
        asks.insert(rng.randrange(len(asks) + 1), "also " + fill(rng.choice(PHRASES[other])))

    caller: list[str] = [f"hi it's {first} {last}, {asks[0]}"]
    if rng.random() < 0.75:
        caller.append(f"my number is {_phone(rng)}")
    if rng.random() < 0.55:
        handle = f"{first}.{last}{rng.randint(1, 99)}" if rng.random() < 0.5 else f"{first[0]}{last}"
        domain = rng.choice(("example.com", "example.org", "mail.example.net"))
        caller.append(f"you can email me at {handle}@{domain}")
    caller.extend(asks[1:])

    turns = [{"speaker": "agent", "text": rng.choice(GREETINGS)}]
    for line in caller:
        turns.append({"speaker": "caller", "text": _disfluent(rng, line)})
        if rng.random() < 0.6:
            turns.append({"speaker": "agent", "text": rng.choice(AGENT_LINES)})
    turns.append({"speaker": "agent", "text": rng.choice(CLOSINGS)})

    # The disposition code the agent picks after the call is the training label; agents
    # pick the wrong one now and then, as real ones do.
    label = intent if rng.random() > 0.06 else rng.choice(INTENTS)
    started = day + timedelta(hours=8, seconds=rng.randrange(12 * 3600))
    return {
        "call_id": call_id,
        "started_at": started.isoformat(),
        "duration_s": 40 + 12 * len(turns) + rng.randrange(60),
        "agent": rng.choice(AGENTS),
        "disposition": label,
        "utterances": turns,
    }


# -- text ----------------------------------------------------------------------------------------

_QUOTES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"'})
_FILLER_RE = re.compile(r"\b(?:um+|uh+|erm+|you know)\b,?\s*")
_STUTTER_RE = re.compile(r"\b([a-z]+)(?:\s+\1\b)+")  # letters only: "900 900" is a number
_SPACE_RE = re.compile(r"\s+")


def normalise(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).translate(_QUOTES).lower()
    text = _FILLER_RE.sub("", text)
    text = _STUTTER_RE.sub(r"\1", text)
    return _SPACE_RE.sub(" ", text).strip()


# A phone candidate is a run of digits and separators; it is redacted only if it has
# 9-15 digits, so amounts (£42.50) and order numbers (58213) stay readable.
_PHONE_RE = re.compile(r"(?<![\w@.])\+?\(?\d[\d\s().-]{7,}\d(?!\w)")
_EMAIL_RE = re.compile(r"\b[a-z0-9._%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}\b", re.IGNORECASE)


def mask_contacts(text: str) -> tuple[str, int, int]:
    """Mask e-mail addresses and phone numbers; returns (text, phones, emails)."""
    text, emails = _EMAIL_RE.subn("[EMAIL]", text)
    phones = 0

    def phone(m: re.Match[str]) -> str:
        nonlocal phones
        if 9 <= sum(c.isdigit() for c in m.group()) <= 15:
            phones += 1
            return "[PHONE]"
        return m.group()

    return _PHONE_RE.sub(phone, text), phones, emails


_TOKEN_RE = re.compile(r"[a-z]+(?:'[a-z]+)?")  # lower case only: [PHONE]/[EMAIL] are no tokens
_STOP = frozenset("a an and the i i'm it it's is to my me of on in at for this that so".split())


def tokens(text: str) -> list[str]:
    return [t for t in _TOKEN_RE.findall(text) if t not in _STOP]


def caller_text(record: dict[str, Any]) -> str:
    """What the classifier reads: the caller's side (the agent's lines say little of intent)."""
    return " ".join(t["text"] for t in record["turns"] if t["speaker"] == "caller")


# -- the classifier: multinomial naive Bayes, counts in plain dicts ------------------------------


def _empty_model() -> dict[str, Any]:
    return {"chunk": 0, "docs": {i: 0 for i in INTENTS}, "words": {i: {} for i in INTENTS},
            "totals": {i: 0 for i in INTENTS}}


def _learn(model: dict[str, Any], intent: str, words: list[str]) -> None:
    model["docs"][intent] += 1
    counts = model["words"][intent]
    for w in words:
        counts[w] = counts.get(w, 0) + 1
    model["totals"][intent] += len(words)


def vocabulary(model: dict[str, Any]) -> int:
    return len({w for counts in model["words"].values() for w in counts})


def predict(model: dict[str, Any], words: list[str], vocab: int) -> str:
    vocab = vocab or 1
    n_docs = sum(model["docs"].values())
    best, best_score = INTENTS[0], -math.inf
    for intent in INTENTS:
        docs = model["docs"][intent]
        if not docs:
            continue
        counts, denom = model["words"][intent], model["totals"][intent] + vocab  # Laplace smoothing
        score = math.log(docs / n_docs) + sum(math.log((counts.get(w, 0) + 1) / denom) for w in words)
        if score > best_score:
            best, best_score = intent, score
    return best


# -- the steps -----------------------------------------------------------------------------------


async def ingest(ctx: RunContext) -> None:
    """Make the night's call recordings: calls/call-NNNN.json and calls.json (the manifest)."""
    folder = _shared(ctx)
    calls_dir = folder / "calls"
    calls_dir.mkdir(exist_ok=True)
    seed = int(ctx.args.get("seed", 7))
    total = int(ctx.args.get("calls", 200))
    day = datetime.fromisoformat(str(ctx.args.get("date", "2024-06-06"))).replace(tzinfo=UTC)

    cp = ctx.checkpoint or {}
    start = int(cp.get("written", 0))
    intents = Counter(cp.get("intents", {}))
    if start:
        ctx.log(f"resuming ingest at call {start + 1}/{total}")
    else:
        ctx.log(f"ingesting {total} recordings for {day:%Y-%m-%d} (seed {seed})")
    every = max(1, total // 5)
    await asyncio.sleep(0)  # the set-up (folders, first log line) is a slice of its own
    for i in range(start, total):
        call = make_call(seed, i, day)
        (calls_dir / f"{call['call_id']}.json").write_text(json.dumps(call, ensure_ascii=False), encoding="utf-8")
        intents[call["disposition"]] += 1
        done = i + 1
        if done % every == 0 or done == total:
            # The files before `written` are on disk: a resume starts after them.
            await _report(ctx, 100 * done / total, checkpoint={"written": done, "intents": dict(intents)})
        elif done % 5 == 0:
            await asyncio.sleep(0)  # a call is cheap to make and write: yield every five
    _write_json(folder / "calls.json", {
        "date": f"{day:%Y-%m-%d}", "seed": seed,
        "calls": [f"call-{i + 1:04d}" for i in range(total)], "intents": dict(sorted(intents.items())),
    })
    ctx.log(f"{total} recordings: " + ", ".join(f"{k} {v}" for k, v in sorted(intents.items())))


async def transcribe(ctx: RunContext) -> None:
    """Batch transcription: normalise each recording's speech into transcripts.jsonl.

    Attempt 1 fails half-way with a transient error (the "speech service" goes away) right
    after a checkpoint; attempt 2 resumes from that checkpoint, keeping the first half."""
    folder = _shared(ctx)
    ids = _read_json(folder / "calls.json")["calls"]
    total = len(ids)
    cp = ctx.checkpoint or {}
    out, done = _open_output(folder / "transcripts.jsonl", int(cp.get("done", 0)), int(cp.get("bytes", 0)))
    words, audio_s = (int(cp.get("words", 0)), int(cp.get("audio_s", 0))) if done else (0, 0)
    start = done
    if done:
        ctx.log(f"resumed at {done}/{total} (attempt {ctx.attempt}): "
                f"skipping the {done} recordings already transcribed")
    else:
        ctx.log(f"transcribing {total} recordings")
    batch = max(1, total // 10)
    with out:
        for call_id in ids[done:]:
            call = _read_json(folder / "calls" / f"{call_id}.json")
            turns = [{"speaker": u["speaker"], "text": normalise(u["text"])} for u in call["utterances"]]
            n_words = sum(len(t["text"].split()) for t in turns)
            out.write(_line({"call_id": call_id, "intent": call["disposition"], "agent": call["agent"],
                             "duration_s": call["duration_s"], "words": n_words, "turns": turns}))
            words += n_words
            audio_s += call["duration_s"]
            done += 1
            if done % batch == 0 or done == total:
                out.flush()  # the lines reach the file before the checkpoint says they did
                await _report(ctx, 100 * done / total,
                                 checkpoint={"done": done, "bytes": out.tell(), "words": words, "audio_s": audio_s})
                if ctx.attempt == 1 and start < total // 2 <= done < total:
                    raise Interrupted("speech service unavailable (demo)", "transient")
            elif done % 5 == 0:
                await asyncio.sleep(0)
    _write_json(folder / "transcribe.json", {"transcripts": total, "words": words, "audio_s": audio_s,
                                              "resumed_at": start or None})
    ctx.log(f"{total} transcripts, {words} words, {audio_s / 3600:.1f} h of audio")


async def redact(ctx: RunContext) -> None:
    """Mask phone numbers and e-mail addresses: transcripts.jsonl → redacted.jsonl."""
    folder = _shared(ctx)
    lines = (folder / "transcripts.jsonl").read_bytes().splitlines()
    total = len(lines)
    cp = ctx.checkpoint or {}
    out, done = _open_output(folder / "redacted.jsonl", int(cp.get("done", 0)), int(cp.get("bytes", 0)))
    phones, emails = (int(cp.get("phones", 0)), int(cp.get("emails", 0))) if done else (0, 0)
    ctx.log(f"redacting {total - done} transcripts" + (f" (resumed at {done})" if done else ""))
    batch = max(1, total // 5)
    with out:
        for raw in lines[done:]:
            record = json.loads(raw)
            for turn in record["turns"]:
                turn["text"], p, e = mask_contacts(turn["text"])
                phones += p
                emails += e
            out.write(_line(record))
            done += 1
            if done % batch == 0 or done == total:
                out.flush()
                await _report(ctx, 100 * done / total, checkpoint={"done": done, "bytes": out.tell(),
                                                                 "phones": phones, "emails": emails})
            elif done % 10 == 0:
                await asyncio.sleep(0)
    _write_json(folder / "redact.json", {"records": total, "phones": phones, "emails": emails})
    ctx.log(f"redacted {phones} phone numbers and {emails} e-mail addresses")


async def train(ctx: RunContext) -> None:
    """Fit the intent classifier in CHUNKS chunks of the training split.

    After each chunk the model is written as model-<k>.json and model-latest.json, and
    progress moves 20 % with a checkpoint naming the snapshot: a resume loads exactly that
    snapshot (not model-latest, which may be one chunk ahead) and carries on."""
    folder = _shared(ctx)
    records = await _read_records(folder / "redacted.jsonl")
    training = [r for r in records if not _held_out(r["call_id"])]
    cp = ctx.checkpoint or {}
    chunk = int(cp.get("chunk", 0))
    model = _read_json(folder / cp["snapshot"]) if chunk else _empty_model()
    if chunk:
        ctx.log(f"resumed after chunk {chunk}/{CHUNKS} from {cp['snapshot']}")
    else:
        ctx.log(f"training on {len(training)} calls ({len(records) - len(training)} held out), {CHUNKS} chunks")
    for k in range(chunk, CHUNKS):
        part = training[k * len(training) // CHUNKS:(k + 1) * len(training) // CHUNKS]
        for n, record in enumerate(part, 1):
            _learn(model, record["intent"], tokens(caller_text(record)))
            if n % 8 == 0:
                await asyncio.sleep(0)
        # A real chunk takes a while; this pause keeps the 80 % hand-over to `evaluate`
        # visible (evaluate starts while the last chunk is still training).
        await asyncio.sleep(0.05)
        model["chunk"] = k + 1
        name = f"model-{k + 1}.json"
        text = json.dumps(model, separators=(",", ":"), sort_keys=True)  # serialised once, written twice
        _write_text(folder / name, text)
        _write_text(folder / "model-latest.json", text)  # what `evaluate` picks up at 80 %
        await _report(ctx, 100 * (k + 1) / CHUNKS, checkpoint={"chunk": k + 1, "snapshot": name})
    vocab = vocabulary(model)
    ctx.log(f"model trained on {sum(model['docs'].values())} calls, vocabulary {vocab} words")


async def evaluate(ctx: RunContext) -> None:
    """Score the latest model snapshot on the held-out split: eval.json.

    Starts when `train` is at 80 %, so it normally scores the snapshot of chunk 4 of 5:
    an early read of the model that does not hold up the rest of the night."""
    folder = _shared(ctx)
    cp = ctx.checkpoint or {}
    # A resume keeps the snapshot it started with; mixing two models would mean nothing.
    snapshot = cp.get("snapshot") or f"model-{_read_json(folder / 'model-latest.json')['chunk']}.json"
    model = _read_json(folder / snapshot)
    records = await _read_records(folder / "redacted.jsonl")
    test = [r for r in records if _held_out(r["call_id"])]
    vocab = vocabulary(model)  # once, not per prediction
    done = int(cp.get("done", 0))
    confusion: dict[str, dict[str, int]] = cp.get("confusion") or {a: {p: 0 for p in INTENTS} for a in INTENTS}
    ctx.log(f"evaluating {snapshot} (chunk {model['chunk']}/{CHUNKS}) on {len(test)} held-out calls"
            + (f", resumed at {done}" if done else ""))
    batch = max(1, len(test) // 4)
    for record in test[done:]:
        confusion[record["intent"]][predict(model, tokens(caller_text(record)), vocab)] += 1
        done += 1
        if done % batch == 0 or done == len(test):
            await _report(ctx, 95 * done / len(test), checkpoint={"snapshot": snapshot, "done": done,
                                                                "confusion": confusion})
        elif done % 4 == 0:
            await asyncio.sleep(0)
    correct = sum(confusion[i][i] for i in INTENTS)
    per_intent = {}
    for i in INTENTS:
        actual = sum(confusion[i].values())
        predicted = sum(confusion[a][i] for a in INTENTS)
        per_intent[i] = {"support": actual,
                         "precision": round(confusion[i][i] / predicted, 3) if predicted else None,
                         "recall": round(confusion[i][i] / actual, 3) if actual else None}
    result = {"snapshot": snapshot, "model_chunk": model["chunk"], "chunks": CHUNKS,
              "trained_on": sum(model["docs"].values()), "test_calls": len(test), "correct": correct,
              "accuracy": round(correct / len(test), 4) if test else None,
              "per_intent": per_intent, "confusion": confusion}
    _write_json(folder / "eval.json", result)
    await _report(ctx, 100)
    ctx.log(f"accuracy {correct}/{len(test)} = {result['accuracy']:.1%}" if test else "no held-out calls")


async def report(ctx: RunContext) -> None:
    """Summarise the night: report.json and report.md."""
    folder = _shared(ctx)
    cp = ctx.checkpoint or {}
    summary = cp.get("summary")
    if summary is None:
        ingest_info = _read_json(folder / "calls.json")
        summary = {
            "date": ingest_info["date"],
            "calls": len(ingest_info["calls"]),
            "intents": ingest_info["intents"],
            "transcription": _read_json(folder / "transcribe.json"),
            "redaction": _read_json(folder / "redact.json"),
            "evaluation": {k: v for k, v in _read_json(folder / "eval.json").items() if k != "confusion"},
            # `report` waits for `evaluate` only, so training may still be on its last chunk.
            "model_chunk_at_report": _read_json(folder / "model-latest.json")["chunk"],
        }
        await _report(ctx, 40, checkpoint={"summary": summary, "stage": "gathered"})
    if cp.get("stage") not in ("json", "done"):
        _write_json(folder / "report.json", summary)
        await _report(ctx, 70, checkpoint={"summary": summary, "stage": "json"})
    (folder / "report.md").write_text(_markdown(summary), encoding="utf-8")
    await _report(ctx, 100, checkpoint={"summary": summary, "stage": "done"})
    ctx.log(f"report written to {folder / 'report.md'}")


def _markdown(s: dict[str, Any]) -> str:
    t, r, e = s["transcription"], s["redaction"], s["evaluation"]
    lines = [
        f"# Nightly contact-centre run, {s['date']}",
        "",
        f"- Calls ingested: {s['calls']} ({', '.join(f'{k} {v}' for k, v in s['intents'].items())})",
        f"- Transcribed: {t['transcripts']} calls, {t['words']} words, {t['audio_s'] / 3600:.1f} h of audio"
        + (f" (resumed after {t['resumed_at']} calls)" if t.get("resumed_at") else ""),
        f"- Redacted: {r['phones']} phone numbers, {r['emails']} e-mail addresses",
        f"- Intent model: snapshot of chunk {e['model_chunk']}/{e['chunks']} ({e['trained_on']} calls) "
        f"scored {e['correct']}/{e['test_calls']}"
        + (f" = {e['accuracy']:.1%}" if e["accuracy"] is not None else "")
        + " on held-out calls",
        f"- Training: chunk {s['model_chunk_at_report']}/{e['chunks']} written when this report was made"
        + (" (the last chunk was still training)" if s["model_chunk_at_report"] < e["chunks"] else ""),
        "",
        "| intent | support | precision | recall |",
        "|---|---:|---:|---:|",
    ]
    for intent, m in e["per_intent"].items():
        fmt = lambda x: "–" if x is None else f"{x:.2f}"  # noqa: E731
        lines.append(f"| {intent} | {m['support']} | {fmt(m['precision'])} | {fmt(m['recall'])} |")
    return "\n".join(lines) + "\n"
