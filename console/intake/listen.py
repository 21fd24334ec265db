"""Where the intake listens: the token rule and binding the socket (`console.listen` parses
HOST:PORT).

Light on purpose (no web framework imported): the CLI checks all of this before anything
is written, so a mistake is one line and exit status 2."""

from __future__ import annotations

import errno
import ipaddress
import socket

from console.listen import Listen
from console.model import UserError


def is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def open_listener(listen: Listen, token_set: bool, backlog: int = 2048) -> socket.socket:
    """Resolve, apply the token rule, bind. Every failure is a UserError naming the address.

    The rule is checked on the resolved address, so a name that points elsewhere than the
    loopback interface needs a token too."""
    try:
        infos = socket.getaddrinfo(listen.host, listen.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise UserError(f"--listen {listen}: cannot resolve {listen.host!r} ({e.strerror})") from None
    family, kind, proto, _, address = infos[0]
    if not is_loopback(address[0]) and not token_set:
        raise UserError(f"--listen {listen}: listening beyond this machine (127.0.0.1) needs a token: "
                        "set SWITCHBOARD_INTAKE__TOKEN (16 characters or more)")
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart reuses a TIME_WAIT port
        sock.bind(address)
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError as e:
        sock.close()
        why = "the port is already in use" if e.errno == errno.EADDRINUSE else e.strerror
        raise UserError(f"--listen {listen}: cannot listen there: {why}") from None
    return sock


def bound_address(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return str(Listen(host, port))
