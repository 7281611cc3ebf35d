"""python -m bench.peers: see bench/peers/__init__.py."""
from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile

from bench.peers import adapter_translate, fumifier_map, node_ready, write_rows


def main() -> None:
    parser = argparse.ArgumentParser(description="Mapping lab rows: this adapter beside fumifier (JSONata).")
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=1, help="the adapter's worker processes (fumifier: one)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds (best of each shown)")
    args = parser.parse_args()
    if not node_ready():
        sys.exit("node (and npm, to install fumifier) is needed for the peer side")
    with tempfile.TemporaryDirectory() as tmp:
        export = pathlib.Path(tmp) / "labs.csv"
        write_rows(args.rows, export)
        ours, theirs = [], []
        for _ in range(args.rounds):
            theirs.append(fumifier_map(export, pathlib.Path(tmp) / "fumifier.ndjson"))
            ours.append(adapter_translate(export, args.workers)[0])
        best_ours = min(ours, key=lambda r: r["seconds"])
        best_theirs = min(theirs, key=lambda r: r["seconds"])
    print(f"{args.rows:,} lab rows, {args.rounds} rounds (best shown)")
    print("| engine | rows/s | resources/s | resources | note |\n|---|---|---|---|---|")
    print(f"| adapter translate ({args.workers} process{'es' if args.workers > 1 else ''}) | "
          f"{best_ours['rows'] / best_ours['seconds']:,.0f} | {best_ours['resources'] / best_ours['seconds']:,.0f} | "
          f"{best_ours['resources']:,} | validates every resource; Encounter and Provenance per row; "
          f"{best_ours['cpu']:.2f} CPU s; start-up {best_ours['start-up']:.2f} s |")
    print(f"| fumifier (JSONata) | {best_theirs['rows'] / best_theirs['seconds']:,.0f} | "
          f"{best_theirs['resources'] / best_theirs['seconds']:,.0f} | {best_theirs['resources']:,} | validates nothing |")
    ratio = (best_ours["rows"] / best_ours["seconds"]) / (best_theirs["rows"] / best_theirs["seconds"])
    print(f"adapter / fumifier rows/s: {ratio:.2f}x (target >= 1.0x)")


if __name__ == "__main__":
    main()
