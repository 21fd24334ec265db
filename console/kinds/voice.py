"""`voice`: one caller utterance → transcript → AI reply (→ speech), each stage checkpointed
so a resume never repeats a finished stage. Created by the call-centre API, not by workflows."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from console.kinds import SpecError
from console.kinds.context import RunContext
from console.model import Call, PermanentFailure, Turn, VoiceRequest
from console.pacer import Pacer
from console.store import WriteBatch
from console.private_files import open_private, private_folder

ROLES = {"caller": "user", "assistant": "assistant", "agent": "user"}


class VoiceKind:
    name = "voice"

    def validate_spec(self, raw: dict[str, Any], base_dir: Path) -> dict[str, Any]:
        raise SpecError("kind", "voice requests come from `switchboard voice` or the HTTP intake, "
                                "not from workflow files")

    async def run(self, ctx: RunContext) -> None:
        calls = ctx.calls
        vr = await calls.records.get_voice_request(ctx.spec["voice_request"])
        if vr is None:
            raise PermanentFailure(f"voice request {ctx.spec['voice_request']} is missing from the database")
        cp: dict[str, Any] = dict(ctx.checkpoint or {})
        settings = ctx.settings.voice
        gateway = calls.gateway()

        if "transcript" not in cp:
            if vr.input_text is not None:
                transcript, ms = vr.input_text, 0.0
            else:
                vr.stage = "transcribing"
                path = Path(vr.audio_path or "")
                try:
                    audio = await asyncio.to_thread(path.read_bytes)  # file I/O off the loop
                except OSError as e:
                    raise PermanentFailure(f"cannot read {path}: {e.strerror}") from None
                await ctx.service("groq-pacer", Pacer).turn()
                transcript, ms = await gateway.transcribe(audio, path.name, settings.stt_model)
            cp["transcript"] = transcript
            vr.transcript, vr.latency_ms["stt"], vr.stage = transcript, round(ms, 1), "replying"
            await self._save(ctx, vr, 50, cp, Turn(vr.call_id, "caller", transcript, source=vr.process_id))

        if "reply" not in cp:
            call = await calls.records.get_call(vr.call_id, turns=settings.context_turns + 1)
            messages = [{"role": "system", "content": settings.system_prompt}]
            for turn in call.turns if call else []:
                if turn.role in ROLES:
                    text = turn.text if turn.role != "agent" else f"(agent) {turn.text}"
                    messages.append({"role": ROLES[turn.role], "content": text})
            if len(messages) == 1 or messages[-1]["content"] != vr.transcript:
                messages.append({"role": "user", "content": vr.transcript or ""})
            await ctx.service("groq-pacer", Pacer).turn()  # the SDK's CPU slice, one request per turn
            result = await gateway.chat(messages, settings.chat_model)
            cp["reply"] = result.content
            vr.reply, vr.model, vr.usage = result.content, result.model, result.usage
            vr.latency_ms["chat"] = round(result.ms, 1)
            vr.stage = "speaking" if settings.speech else "done"
            await self._save(ctx, vr, 90 if settings.speech else 100, cp,
                             Turn(vr.call_id, "assistant", result.content, source=vr.process_id))

        if settings.speech and "speech_path" not in cp:
            await ctx.service("groq-pacer", Pacer).turn()
            audio, ms = await gateway.speak(cp["reply"], settings.tts_model, settings.tts_voice)
            folder = ctx.settings.resolved_data_dir / "speech"
            path = folder / f"{vr.id}.wav"
            await asyncio.to_thread(_write_file, path, audio)
            cp["speech_path"] = str(path)
            vr.speech_path, vr.latency_ms["tts"], vr.stage = str(path), round(ms, 1), "done"
            await self._save(ctx, vr, 100, cp, None)

    async def _save(self, ctx: RunContext, vr: VoiceRequest, progress: float, cp: dict[str, Any],
                    turn: Turn | None) -> None:
        now = time.time()
        vr.updated_at = now
        vr.latency_ms["total"] = round(sum(v for k, v in vr.latency_ms.items() if k != "total"), 1)
        extra = WriteBatch(voice_requests={vr.id: vr}, calls={vr.call_id: Call(vr.call_id, now, now)})
        if turn is not None:
            extra.turns.append(turn)
        await ctx.report(progress, checkpoint=dict(cp), extra=extra)


def _write_file(path: Path, data: bytes) -> None:
    private_folder(path.parent)
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)  # left by an interrupted attempt
    with open_private(tmp) as out:
        out.write(data)
    tmp.replace(path)


KIND = VoiceKind()
