"""The Groq key under hostile conditions: a malformed key is refused at start without being
echoed, and no error text that leaves the gateway carries the key, whatever the transport."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from console.model import Interrupted, PermanentFailure
from console.settings import load_settings
from console.voice.gateway import GroqGateway, scrub
from console.bench.groqsim import GroqSim
from test_voice import _fresh_sim, sim  # noqa: F401  (fixtures)

SECRET = "gsk_planted_SECRET_9876543210zyx"


def test_a_malformed_key_is_refused_at_start_without_its_value(tmp_path):
    env = {**os.environ, "GROQ_API_KEY": SECRET + "\n"}
    out = subprocess.run([sys.executable, "-m", "console", "--db", str(tmp_path / "t.db"), "status"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "GROQ_API_KEY" in out.stderr
    assert SECRET not in out.stdout + out.stderr
    assert not (tmp_path / "t.db").exists()


@pytest.mark.parametrize("transport", ["httpx", "aiohttp"])
@pytest.mark.parametrize("key", [SECRET + "\n", SECRET])  # a header error; a 401
async def test_gateway_errors_never_carry_the_key(tmp_path, transport, key):
    with GroqSim(key="gsk_the_right_one_0000000000") as sim:
        settings = load_settings(db=tmp_path / "t.db", data_dir=tmp_path, groq_api_key="gsk_placeholder",
                                 groq_base_url=sim.base_url, groq={"transport": transport, "timeout_s": 2.0})
        gateway = GroqGateway(settings)
        await gateway.set_api_key(key)  # the console's path: not through the settings' check
        try:
            with pytest.raises((Interrupted, PermanentFailure)) as info:
                await gateway.chat([{"role": "user", "content": "hi"}], "m")
        finally:
            await gateway.aclose()
    assert SECRET not in str(info.value)
    assert SECRET not in gateway.state.describe()


def test_scrub_removes_the_key_in_every_quoted_form():
    key = SECRET + "\n"
    text = f"Illegal header value b'Bearer {SECRET}\\n' / {key!r} / Bearer {SECRET}"
    assert SECRET not in scrub(text, key)
    assert "gsk_other" not in scrub("Authorization: Bearer gsk_other", None)


async def test_uploaded_audio_and_speech_are_0600_in_0700_folders(tmp_path, sim):
    import stat
    from pathlib import Path

    from test_intake import intake
    from test_voice import wav_file

    sim.configure(transcript="cancel please")
    audio = wav_file(tmp_path / "caller.wav")
    old = os.umask(0o022)  # a usual umask: without care, files 0644 in folders 0755
    try:
        async with intake(tmp_path, sim, voice={"speech": True}) as (engine, _server, client):
            files = {"audio": ("a.wav", audio.read_bytes(), "audio/wav")}
            r = await client.post("/ai-voice", data={"call_id": "c-modes"}, files=files)
            assert r.status_code == 200, r.text
            vr = await engine.store.get_voice_request(r.json()["id"])
    finally:
        os.umask(old)
    for path in (Path(vr.audio_path), Path(vr.speech_path)):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700, path.parent
