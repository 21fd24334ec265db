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
        list of ids that starts and ends with the same id; None if there is none."""
        succ: dict[str, list[str]] = defaultdict(list)
        for d in list(self.edges()) + list(extra):
            if d.type.orders:
                succ[d.dependency].append(d.dependent)
        WHITE, GREY, BLACK = 0, 1, 2
        colour: dict[str, int] = defaultdict(int)
        for root in list(succ):
            if colour[root] != WHITE:
                continue
            # iterative DFS: deep workflows must not hit the recursion limit
            stack: list[tuple[str, int]] = [(root, 0)]
            path: list[str] = [root]
            colour[root] = GREY
            while stack:
                node, i = stack[-1]
                children = succ.get(node, [])
                if i < len(children):
                    stack[-1] = (node, i + 1)
                    child = children[i]
                    if colour[child] == GREY:
                        return path[path.index(child):] + [child]
                    if colour[child] == WHITE:
                        colour[child] = GREY
                        stack.append((child, 0))
                        path.append(child)
                else:
                    colour[node] = BLACK
                    stack.pop()
                    path.pop()
        return None
