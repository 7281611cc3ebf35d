"""The docs print what their commands print: every `$ fhir-adapter ...` example in README.md and
the site's pages (docs/**/*.md) that reads the demo store (outcomes, protocol apply, protocol adherence) is run against
the demo (`fhir-adapter demo --no-serve`), and the output shown must be the output printed.

In the shown output a line `...` stands for any number of printed lines and `...` inside a line
for any text; blank lines and trailing spaces are not compared; nothing else is left out: an
example that shows only the first rows ends with a `...` line."""
from __future__ import annotations

import difflib
import pathlib
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from click.testing import CliRunner

from adapter.cli import main
from conftest import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
# The commands that only read the demo store, so that their output is the docs' to quote.
RUNNABLE = (("outcomes",), ("protocol", "apply"), ("protocol", "adherence"))


@dataclass
class Example:
    file: str
    line: int
    command: list[str]
    shown: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


def examples(paths: list[pathlib.Path] = DOCS) -> Iterator[Example]:
    """Each runnable `$ fhir-adapter` line of a fenced block, with the lines that follow it up to
    the next `$` line or the end of the block."""
    for path in paths:
        current: Example | None = None
        fenced = False
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.startswith("```") or line.startswith("$ ") or not fenced:
                if current is not None:
                    yield current
                current = None
            if line.startswith("```"):
                fenced = not fenced
            elif fenced and line.startswith("$ fhir-adapter "):
                words = shlex.split(line[2:])[1:]
                if any(tuple(words[:len(prefix)]) == prefix for prefix in RUNNABLE):
                    current = Example(path.name, number, words)
            elif current is not None:
                current.shown.append(line)


def mismatch(shown: list[str], printed: list[str]) -> str | None:
    """None when the printed lines are the shown ones (with `...` as above), else a diff."""
    wanted = [line.rstrip() for line in shown if line.strip()]
    got = [line.rstrip() for line in printed if line.strip()]
    pattern = "".join(r"(?:[^\n]*\n)*?" if line.strip() == "..."
                      else r"[^\n]*?".join(map(re.escape, line.split("..."))) + "\n" for line in wanted)
    if re.fullmatch(pattern, "".join(f"{line}\n" for line in got)):
        return None
    return "\n".join(difflib.unified_diff(wanted, got, "shown", "printed", lineterm=""))


def test_the_matching_is_strict_where_nothing_is_left_out():
    printed = ["n 4  mean 1.25", "a", "b", "total 0.15 to 0.36 and more"]
    assert mismatch(["n 4  mean 1.25", "...", "total 0.15 to ..."], printed) is None
    assert mismatch(["n 4  mean 1.25", "a", "b", "total 0.15 to 0.36 and more", ""], printed) is None
    assert mismatch(["n 4  mean 1.25", "a"], printed) is not None  # the rest is not shown as left out
    assert mismatch(["n 4  mean 1.26", "..."], printed) is not None
    assert mismatch(["n 4  mean 1.25", "b", "..."], printed) is not None  # a line left out without `...`


def test_the_examples_are_found():
    found = {" ".join(e.command[:2]) for e in examples()}
    assert {"outcomes --measure", "protocol apply", "protocol adherence"} <= found


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('docs') / 'demo.db'}"
    result = CliRunner().invoke(main, ["demo", "--db", url, "--no-serve"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return url


@pytest.mark.parametrize("example", list(examples()), ids=str)
def test_the_docs_show_what_the_command_prints(demo_store, example):
    result = CliRunner().invoke(main, [*example.command, "--db", demo_store], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    problem = mismatch(example.shown, result.output.splitlines())
    assert problem is None, f"{example} `{' '.join(example.command)}`:\n{problem}"
