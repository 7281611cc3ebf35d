"""The documentation site builds: `mkdocs build --strict` (what `make docs` runs) over mkdocs.yml
and docs/, so that a broken link or anchor, a page left out of the nav, a missing snippet or a
module the API reference cannot render fails `make test`, and so CI. The pages must also load
nothing from another host (they may be read offline, in a closed hospital network)."""
from __future__ import annotations

import os
import pathlib
import runpy
import subprocess
import sys
from html.parser import HTMLParser

import yaml

from conftest import ROOT

# MkDocs plugins print a banner about MkDocs 2.0 unless told not to; it is not a build problem.
QUIET = {"NO_MKDOCS_2_WARNING": "1", "DISABLE_MKDOCS_2_WARNING": "true"}


class Loads(HTMLParser):
    """The URLs a page loads by itself: scripts, images, frames, style sheets, preloads."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        if tag in ("script", "img", "iframe", "audio", "video", "source") and named.get("src"):
            self.urls.append(named["src"] or "")
        elif tag == "link" and set((named.get("rel") or "").split()) & {"stylesheet", "preload", "preconnect",
                                                                         "modulepreload", "icon"}:
            self.urls.append(named.get("href") or "")


def remote(page: pathlib.Path) -> list[str]:
    parser = Loads()
    parser.feed(page.read_text(encoding="utf-8"))
    return [url for url in parser.urls if url.startswith(("http:", "https:", "//"))]


def build(config: pathlib.Path, site: pathlib.Path, cwd: pathlib.Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
                          cwd=cwd, env={**os.environ, **QUIET}, capture_output=True, text=True, timeout=300)


def test_the_site_builds_strictly_and_loads_nothing_from_another_host(tmp_path):
    result = build(ROOT / "mkdocs.yml", tmp_path / "site")
    assert result.returncode == 0, result.stdout + result.stderr
    pages = sorted((tmp_path / "site").rglob("*.html"))
    names = {p.relative_to(tmp_path / "site").as_posix() for p in pages}
    assert {"index.html", "getting-started.html", "mappings.html", "performance.html",
            "reference/gateway.html", "reference/store.html"} <= names
    # The README's test count is included in the Tests page, not copied.
    assert "1 strict xfail" in (tmp_path / "site" / "tests.html").read_text(encoding="utf-8")
    # The API reference renders every public module (one that declares __all__), a page a package.
    assert 'id="adapter.fhir.ids.id_problem"' in (tmp_path / "site/reference/fhir.html").read_text(encoding="utf-8")
    reference = runpy.run_path(str(ROOT / "tools" / "api_reference.py"), run_name="api_reference")
    for name, modules in reference["pages"]().items():
        html = (tmp_path / "site" / "reference" / f"{name}.html").read_text(encoding="utf-8")
        assert [m for m in modules if f'id="{m}"' not in html] == [], name
    loading = {p.name: remote(p) for p in pages if remote(p)}
    assert loading == {}, f"pages that load from another host: {loading}"


def test_a_broken_link_or_anchor_fails_the_build(tmp_path):
    """The site's own settings (strict, link and anchor validation) on a two-page site with a
    link to a missing page and one to a missing heading: both are reported, and the build fails."""
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.md").write_text("# Home\n\n[gone](missing.md) and [nowhere](other.md#no-such-heading)\n")
    (docs / "other.md").write_text("# Other\n\n## A heading\n")
    small = {key: config[key] for key in ("strict", "validation", "markdown_extensions")}
    small.update(site_name="probe", docs_dir=str(docs), theme={"name": "material", "font": False},
                 nav=[{"Home": "index.md"}, {"Other": "other.md"}])
    (tmp_path / "mkdocs.yml").write_text(yaml.safe_dump(small))
    result = build(tmp_path / "mkdocs.yml", tmp_path / "site", cwd=tmp_path)
    assert result.returncode != 0
    assert "missing.md" in result.stderr and "no-such-heading" in result.stderr, result.stderr
