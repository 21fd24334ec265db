"""The exceptions Switchboard raises on purpose, under one root.

`SwitchboardError` is what a caller catches to tell Switchboard's own refusals from bugs.
`UserError` (and its subclasses) is a mistake in what the user gave: the front ends print its
message as one line (exit status 2, or a 4xx over HTTP). `StoreError` is the storage port's:
for the refusals the ports' contracts name (console/store/ports.py) an adapter raises a subclass
of it, not its database driver's exception, so the engine and the front ends need not know
which database is behind the port.
"""

from __future__ import annotations


class SwitchboardError(Exception):
    """The root of every exception Switchboard raises on purpose."""


class UserError(SwitchboardError):
    """A mistake in what the user gave us: printed as one line, exit status 2."""


class NotFound(UserError):
    """The user named something that does not exist (HTTP 404 at the intake)."""


class Conflict(UserError):
    """The action does not fit the thing's current state (HTTP 409 at the intake)."""


class StoreError(SwitchboardError):
    """The store refused or failed an operation."""


class StoreUnavailable(StoreError, UserError):
    """The database cannot be reached or opened (a missing folder, no permission, no server)."""


class NotADatabase(StoreError, UserError):
    """What the settings point at is not a Switchboard database."""


class StoreDamaged(StoreError, UserError):
    """The database file is damaged (SQLite found a malformed page): restore it from a backup."""


class SchemaTooNew(StoreError, UserError):
    """The database was written by a newer Switchboard than this one: it is left untouched."""


class WriteRejected(StoreError):
    """A write batch broke the store's integrity rules (e.g. a dependency on a process the
    store does not have); none of it was committed. The driver's own error is its cause."""


class LeaseLost(StoreError):
    """A write batch came from an owner whose lease another owner has taken over: none of it
    was committed (the new owner owns those rows now)."""
