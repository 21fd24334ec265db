"""`--listen` / `intake.listen` addresses: HOST:PORT, parsed and checked.

Beside the settings, which check the value when they are loaded; the intake (console.intake)
binds the address."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Listen:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_listen(value: str) -> Listen:
    """`HOST:PORT` (`[::1]:8040` for IPv6; port 0 = any free port). Raises ValueError."""
    if not isinstance(value, str) or ":" not in value:
        raise ValueError(f"{value!r} is not HOST:PORT (e.g. 127.0.0.1:8040)")
    host, _, port_text = value.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"{value!r}: write an IPv6 address in brackets, e.g. [::1]:8040")
    if not host or any(c.isspace() for c in host) or len(host) > 253:
        raise ValueError(f"{value!r}: the host is missing or not a host name")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"{value!r}: the port must be a number from 0 to 65535")
    return Listen(host, int(port_text))
