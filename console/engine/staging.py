"""The processes of workflows being loaded, held back from everything else until their load's
write is submitted (see Loader.load)."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field


@dataclass
class Staging:
    """Registered but not yet dispatched, nor visible to operator actions: `loading`. What
    placement found ready meanwhile is `held` (with its resource signature) for the load to
    release; what others asked to re-place meanwhile is left to the load's last step
    (`recheck`). `placing_own`: the load is placing its own processes now."""

    loading: set[str] = field(default_factory=set)
    held: dict[str, Hashable] = field(default_factory=dict)
    recheck: set[str] = field(default_factory=set)
    placing_own: bool = False
