"""A record's rejections, each with the resources it kept from being made: its rule's own, and
the record's resources that refer to one of them (an adverse event whose suspect injection
failed; everything, when the Patient failed)."""
from __future__ import annotations

import pathlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

from adapter.mapping.spec import Rule

__all__ = ["Rejection", "Failures", "ref_of", "references_in"]


@dataclass(frozen=True)
class Rejection:
    file: str
    row: int  # the line the record starts on
    column: str  # a column name, or a JSON path such as $.visits[2].date
    value: str
    rule: str  # spec file:line of the rule, "" for problems of the record itself
    reason: str
    # "Type/id" of each resource this cell kept from being made (ids as they would have been);
    # empty when the record made nothing at all
    not_made: tuple[str, ...] = ()
    cell: str = ""  # a workbook's: the cell (`随访!AB5`), or the row (`随访!5:5`) it is of

    def __str__(self) -> str:
        where = f"{pathlib.Path(self.file).name} {self.cell}" if self.cell else f"{pathlib.Path(self.file).name}:{self.row}"
        rule = f" [{self.rule}]" if self.rule else ""
        column = f" {self.column}={self.value!r}" if self.column else ""
        shown = list(self.not_made[:3]) + ([f"and {len(self.not_made) - 3} more"] if len(self.not_made) > 3 else [])
        lost = f" (not made: {', '.join(shown)})" if self.not_made else ""
        return f"{where}{column}{rule}: {self.reason}{lost}"


def ref_of(resource: dict[str, Any]) -> str:
    return f"{resource['resourceType']}/{resource['id']}"


def references_in(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for name, value in node.items():
            if name == "reference" and isinstance(value, str):
                yield value
            else:
                yield from references_in(value)
    elif isinstance(node, list):
        for value in node:
            yield from references_in(value)


class Failures:
    """A record's rejections, each with the resources it kept from being made: its rule's own,
    and those of the record that refer to one of them (found by `settle`)."""

    def __init__(self) -> None:
        self._found: list[tuple[Rejection, list[str]]] = []
        self._origin: list[int | None] = []  # id() of the read set of the rule run that failed

    def __len__(self) -> int:
        return len(self._found)

    def add(self, rejection: Rejection, lost: list[str], origin: int | None = None) -> None:
        self._found.append((rejection, lost))
        self._origin.append(origin)

    def settle(self, made: list[tuple[Rule, dict[str, Any]]],
               reads: dict[int, tuple[int, set[str]]] | None = None) -> list[tuple[Rule, dict[str, Any]]]:
        """What is left of `made` once every resource not made is out, and whatever refers to
        one, or was derived from a rejected cell (`reads`: by id() of a resource, the number of
        the rule run that made it and the cells it read: a GMFM total computed from a dimension
        of 130 %)."""
        cause = {ref: i for i, (_, lost) in enumerate(self._found) for ref in lost}
        cells = {r.column: i for i, (r, _) in enumerate(self._found) if r.column}
        kept = []
        for rule, resource in made:
            run, read = (reads or {}).get(id(resource), (None, set()))
            # a rule's own bad cell cost it what it said (a GMFM item: its dimension, not the others)
            tainted = next((cells[c] for c in read if c in cells and self._origin[cells[c]] != run), None)
            if ref_of(resource) in cause:
                continue
            if tainted is not None:
                self._found[tainted][1].append(ref_of(resource))
                cause[ref_of(resource)] = tainted
                continue
            kept.append((rule, resource))
        while cause:
            still = []
            for rule, resource in kept:
                hit = next((cause[ref] for ref in references_in(resource) if ref in cause), None)
                if hit is None:
                    still.append((rule, resource))
                else:
                    self._found[hit][1].append(ref_of(resource))
                    cause[ref_of(resource)] = hit
            if len(still) == len(kept):
                break
            kept = still
        return kept

    def rejections(self) -> list[Rejection]:
        return [replace(r, not_made=tuple(dict.fromkeys(lost))) for r, lost in self._found]
