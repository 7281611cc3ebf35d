"""Another revision's code beside this tree's, to time a lever before and after in one run
(`--versus REV` of bench/exchange.py and bench/site_ingest.py): the commands run with
PYTHONPATH and the working directory set to that revision's files."""
from __future__ import annotations

import pathlib
import subprocess

ROOT = pathlib.Path(__file__).resolve().parent.parent
CACHE = ROOT / "var" / "bench"


def revision_tree(rev: str) -> pathlib.Path:
    """`rev`'s files (git archive), cached in var/bench/rev-<sha>/."""
    sha = subprocess.run(["git", "rev-parse", "--verify", f"{rev}^{{commit}}"], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout.strip()
    tree = CACHE / f"rev-{sha[:12]}"
    if not (tree / "adapter" / "cli").exists():
        tree.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "archive", sha], cwd=ROOT, check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree


def turns(codes: list[str], rounds: int) -> list[tuple[int, str]]:
    """(round, code) in the order to run them: each round all codes, the first code first in odd
    rounds and last in even ones, so that neither always runs on a warmer (or busier) machine.

    Examples:
        >>> turns(["before", "after"], 2)
        [(0, 'before'), (0, 'after'), (1, 'after'), (1, 'before')]
    """
    return [(turn, code) for turn in range(rounds) for code in (codes if turn % 2 == 0 else codes[::-1])]
