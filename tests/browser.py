"""A real browser for the tests: Debian's chromium, headless, driven over the DevTools
protocol with aiohttp's websocket client (aiohttp comes with textual-serve).

textual-serve draws the console with xterm.js on a canvas, so there is no text in the page's
DOM; `Page.terminal_text` reads xterm.js's screen buffer through its public API
(`terminal.buffer.active`), finding the terminal by its class through the protocol's
`Runtime.queryObjects`."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         # the page links a web font: no name resolves, so nothing waits on the network
         "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE ::1", "--window-size=1280,900"]

# Keys as the DevTools protocol types them: (key, code, virtual key code, modifiers, text).
KEYS = {
    "?": ("?", "Slash", 191, 8, "?"),
    "escape": ("Escape", "Escape", 27, 0, ""),
    "r": ("r", "KeyR", 82, 0, "r"),
    "T": ("T", "KeyT", 84, 8, "T"),
}

# Run on a function of textual-serve's page (window.onresize) in its closure's scope: the
# module whose `Terminal` is xterm.js's class.
_FIND_TERMINAL_CLASS = ("function() { return typeof this.Terminal === 'function' ? this.Terminal.prototype : null; }")
_SCREEN_TEXT = """function() {
    const terminal = this[this.length - 1];
    const buffer = terminal.buffer.active;
    const lines = [];
    for (let y = 0; y < terminal.rows; y++) {
        const line = buffer.getLine(buffer.viewportY + y);
        lines.push(line ? line.translateToString(true) : "");
    }
    return lines.join("\\n");
}"""


class Chromium:
    """One headless browser with its own profile, ended (and its profile removed) on exit."""

    def __init__(self) -> None:
        self.profile = Path(tempfile.mkdtemp(prefix="chromium-"))
        self.process: subprocess.Popen[bytes] | None = None
        self.http: aiohttp.ClientSession | None = None
        self.port = 0

    async def __aenter__(self) -> Chromium:
        self.process = subprocess.Popen([str(CHROMIUM), *FLAGS, f"--user-data-dir={self.profile}",
                                         "--remote-debugging-port=0", "about:blank"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        start_new_session=True)
        active = self.profile / "DevToolsActivePort"  # the port it chose, once it listens
        deadline = time.monotonic() + 60
        while not (active.exists() and active.read_text().strip()):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"chromium did not start (status {self.process.poll()})")
            await asyncio.sleep(0.05)
        self.port = int(active.read_text().split()[0])
        self.http = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self.http is not None:
            await self.http.close()
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)  # the browser and its helper processes
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        shutil.rmtree(self.profile, ignore_errors=True)

    async def page(self) -> Page:
        assert self.http is not None
        async with self.http.get(f"http://127.0.0.1:{self.port}/json/list") as r:
            targets = await r.json()
        target = next(t for t in targets if t["type"] == "page")
        ws = await self.http.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0)
        return Page(ws)


class Page:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self._next_id = 0

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        call_id = self._next_id
        await self.ws.send_json({"id": call_id, "method": method, "params": params})
        while True:  # events in between are not needed here
            message = await self.ws.receive_json(timeout=60)
            if message.get("id") == call_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    async def goto(self, url: str) -> None:
        await self.call("Page.navigate", url=url)

    async def reload(self) -> None:
        await self.call("Page.reload", ignoreCache=True)

    async def evaluate(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    async def terminal_text(self) -> str:
        """The lines the page's terminal shows now ("" until it has one)."""
        prototype = await self._terminal_class()
        if prototype is None:
            return ""
        found = await self.call("Runtime.queryObjects", prototypeObjectId=prototype)
        result = await self.call("Runtime.callFunctionOn", objectId=found["objects"]["objectId"],
                                 functionDeclaration=_SCREEN_TEXT, returnByValue=True)
        return result["result"].get("value") or ""

    async def _terminal_class(self) -> str | None:
        hook = await self.call("Runtime.evaluate", expression="window.onresize")
        function = hook["result"].get("objectId")
        if function is None:  # the page's script has not run yet
            return None
        inner = await self.call("Runtime.getProperties", objectId=function, ownProperties=False)
        scopes = next((p for p in inner.get("internalProperties", []) if p["name"] == "[[Scopes]]"), None)
        if scopes is None:
            return None
        for scope in (await self.call("Runtime.getProperties", objectId=scopes["value"]["objectId"],
                                      ownProperties=True))["result"]:
            scope_id = scope["value"].get("objectId")
            if scope_id is None or scope["value"].get("description") == "Global":
                continue
            for variable in (await self.call("Runtime.getProperties", objectId=scope_id,
                                             ownProperties=True))["result"]:
                value_id = variable.get("value", {}).get("objectId")
                if value_id is None:
                    continue
                found = await self.call("Runtime.callFunctionOn", objectId=value_id,
                                        functionDeclaration=_FIND_TERMINAL_CLASS)
                if found["result"].get("objectId"):
                    return found["result"]["objectId"]
        return None

    async def wait_for_text(self, *needles: str, timeout: float = 60) -> str:
        """The terminal's text once it shows every one of `needles`."""
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            try:
                text = await self.terminal_text()
            except RuntimeError:  # the page was between documents (a reload)
                text = ""
            if all(n in text for n in needles):
                return text
            await asyncio.sleep(0.2)
        raise AssertionError(f"the page never showed {needles!r}; it shows:\n{text}")

    async def press(self, name: str) -> None:
        """A key typed into the terminal (xterm.js takes keys from its focused text area)."""
        await self.evaluate("document.querySelector('.xterm-helper-textarea').focus()")
        key, code, vk, modifiers, text = KEYS[name]
        common = {"key": key, "code": code, "windowsVirtualKeyCode": vk, "nativeVirtualKeyCode": vk,
                  "modifiers": modifiers}
        await self.call("Input.dispatchKeyEvent", type="keyDown", text=text, **common)
        await self.call("Input.dispatchKeyEvent", type="keyUp", **common)

    async def close(self) -> None:
        await self.ws.close()
