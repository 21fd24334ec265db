"""The dependency graph: adjacency both ways, so an event looks only at its neighbours."""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable

from console.model import Dependency, DependencyType


class DependencyGraph:
    def __init__(self) -> None:
        self._upstream: dict[str, list[Dependency]] = defaultdict(list)  # dependent -> edges
        self._downstream: dict[str, list[Dependency]] = defaultdict(list)  # dependency -> edges
        self._edges: set[tuple[str, str]] = set()

    def add(self, dep: Dependency) -> bool:
        key = (dep.dependent, dep.dependency)
        if key in self._edges:
            return False
        self._edges.add(key)
        self._upstream[dep.dependent].append(dep)
        self._downstream[dep.dependency].append(dep)
        return True

    def __len__(self) -> int:
        return len(self._edges)

    def has(self, dependent: str, dependency: str) -> bool:
        return (dependent, dependency) in self._edges

    def upstream(self, process_id: str) -> list[Dependency]:
        """Edges to what `process_id` depends on."""
        return self._upstream.get(process_id, [])

    def downstream(self, process_id: str) -> list[Dependency]:
        """Edges from processes that depend on `process_id`."""
        return self._downstream.get(process_id, [])

    def exclusive_partners(self, process_id: str) -> list[str]:
        """Processes that must never run at the same time as this one (`resource` edges)."""
        out = [d.dependency for d in self.upstream(process_id) if d.type is DependencyType.RESOURCE]
        out += [d.dependent for d in self.downstream(process_id) if d.type is DependencyType.RESOURCE]
        return out

    def edges(self) -> Iterable[Dependency]:
        for deps in self._upstream.values():
            yield from deps

    def find_cycle(self, extra: Iterable[Dependency] = ()) -> list[str] | None:
        """A cycle through ordering edges (sequential, data), existing plus `extra`, as a
        list of ids that starts and ends with the same id; None if there is none.

        The existing edges were checked when they were added, so a new cycle must pass through
        a new edge: the search starts only there and uses the graph's own adjacency. (It used to
        rebuild and walk the whole graph: ~8 ms per voice request beside a 1,000-process DAG.)"""
        added: dict[str, list[str]] = defaultdict(list)  # dependency -> dependents, new edges
        for d in extra:
            if d.type.orders:
                added[d.dependency].append(d.dependent)
        if not added:
            return None

        def children(node: str) -> list[str]:
            return [d.dependent for d in self._downstream.get(node, ()) if d.type.orders] + added.get(node, [])

        WHITE, GREY, BLACK = 0, 1, 2
        colour: dict[str, int] = defaultdict(int)
        for root in list(added):
            if colour[root] != WHITE:
                continue
            # iterative DFS: deep workflows must not hit the recursion limit
            stack: list[tuple[str, list[str], int]] = [(root, children(root), 0)]
            path: list[str] = [root]
            colour[root] = GREY
            while stack:
                node, kids, i = stack[-1]
                if i < len(kids):
                    stack[-1] = (node, kids, i + 1)
                    child = kids[i]
                    if colour[child] == GREY:
                        return path[path.index(child):] + [child]
                    if colour[child] == WHITE:
                        colour[child] = GREY
                        stack.append((child, children(child), 0))
                        path.append(child)
                else:
                    colour[node] = BLACK
                    stack.pop()
                    path.pop()
        return None
