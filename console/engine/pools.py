"""Resource pools: counted slots that are never over-subscribed."""

from __future__ import annotations

from typing import Mapping


class ResourcePools:
    def __init__(self, sizes: Mapping[str, int]) -> None:
        self.sizes: dict[str, int] = dict(sizes)
        self.used: dict[str, int] = {name: 0 for name in sizes}

    def resize(self, sizes: Mapping[str, int]) -> None:
        for name, size in sizes.items():
            self.sizes[name] = size
            self.used.setdefault(name, 0)

    def fits(self, need: Mapping[str, int]) -> bool:
        return all(self.used.get(n, 0) + amount <= self.sizes.get(n, 0) for n, amount in need.items())

    def possible(self, need: Mapping[str, int]) -> bool:
        """Could this ever fit (pool exists and is big enough)?"""
        return all(amount <= self.sizes.get(n, 0) for n, amount in need.items())

    def acquire(self, need: Mapping[str, int]) -> None:
        if not self.fits(need):
            raise RuntimeError(f"pool over-subscribed by {dict(need)}")
        for n, amount in need.items():
            self.used[n] = self.used.get(n, 0) + amount

    def release(self, need: Mapping[str, int]) -> None:
        for n, amount in need.items():
            self.used[n] = max(0, self.used.get(n, 0) - amount)

    def shortage(self, need: Mapping[str, int]) -> str | None:
        """Words for the first pool that cannot take `need` now."""
        for n, amount in need.items():
            size, used = self.sizes.get(n, 0), self.used.get(n, 0)
            if used + amount > size:
                return f"pool {n} full ({used}/{size}, needs {amount})"
        return None

    def utilisation(self) -> dict[str, dict[str, int]]:
        return {n: {"used": self.used.get(n, 0), "size": s} for n, s in self.sizes.items()}
