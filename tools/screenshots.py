"""`make screenshots`: docs/screenshots/{study,adherence,child,workbench}.png of the pages, made in
Debian's Chromium (never a downloaded browser) against the gateway serving the demo store.

    python tools/screenshots.py [--base http://127.0.0.1:8080] [--out docs/screenshots]

Without --base it loads the demo into a temporary store and starts `fhir-adapter serve` on a
free loopback port for the time of the shots. Prints console errors, and fails on any.
"""
from __future__ import annotations

import argparse
import pathlib
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from playwright.sync_api import sync_playwright

ROOT = pathlib.Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PAGES = {"study": "/ui/?as-of=2026-06-01", "child": "/ui/child/site-a-A0004?as-of=2026-06-01",
         "workbench": "/ui/workbench?mapping=site-a&fixture=site-a/export.csv"}


def _serve(folder: pathlib.Path) -> tuple[subprocess.Popen[bytes], str]:
    cli = str(pathlib.Path(sys.executable).parent / "fhir-adapter")
    db = f"sqlite:///{folder / 'adapter.db'}"
    subprocess.run([cli, "demo", "--no-serve", "--db", db], check=True, cwd=folder, stdout=subprocess.DEVNULL)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([cli, "serve", "--port", str(port), "--db", db, "--workers", "1"], cwd=folder,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(f"{base}/fhir/metadata", timeout=5)
            return proc, base
        except OSError:
            time.sleep(0.1)
    proc.terminate()
    raise SystemExit("the gateway did not start")


def shoot(base: str, out: pathlib.Path) -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        for name, path in PAGES.items():
            page.goto(base + path, wait_until="networkidle")
            # the study page's sections that follow it (pages.js fetches them), and their plots
            page.wait_for_function("() => !document.querySelector('[data-fragment]')", timeout=60_000)
            page.wait_for_load_state("networkidle")
            # the child page whole (outcomes, visits, folded tables: ~2,900 px); the study page's top
            page.screenshot(path=str(out / f"{name}.png"), full_page=name != "study")
            if name == "study":  # and its adherence grid, below the outcomes: the visit states' legend at work
                page.locator("#adherence").screenshot(path=str(out / "adherence.png"))
        browser.close()
    return errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", help="a running gateway (default: start one on the demo store)")
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args()
    if args.base:
        errors = shoot(args.base.rstrip("/"), args.out)
    else:
        with tempfile.TemporaryDirectory() as folder:
            proc, base = _serve(pathlib.Path(folder))
            try:
                errors = shoot(base, args.out)
            finally:
                proc.terminate()
                proc.wait(timeout=30)
    for error in errors:
        print(f"console error: {error}", file=sys.stderr)
    print(f"screenshots in {args.out}: {', '.join(PAGES)}, adherence")
    if errors:
        sys.exit(1)


if __name__ == "__main__":
    main()
