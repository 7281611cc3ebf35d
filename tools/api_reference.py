"""The API reference pages of the docs site, made at build time by mkdocs-gen-files (mkdocs.yml).

A public module is one that declares `__all__`. Each package of `adapter/` gets one page,
`reference/<package>.md`, with a `::: adapter.<package>.<module>` block per public module (the
package's own `__init__` first when it declares `__all__`); the modules directly under `adapter/`
share the page `reference/adapter.md`. `reference/SUMMARY.md` lists the pages for the nav
(mkdocs-literate-nav), so a module or package added later is documented without editing
mkdocs.yml."""
from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "adapter"


def public(path: pathlib.Path) -> bool:
    """Whether the module at `path` assigns `__all__` at its top level."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    return any(isinstance(node, (ast.Assign, ast.AnnAssign))
               and any(isinstance(t, ast.Name) and t.id == "__all__"
                       for t in (node.targets if isinstance(node, ast.Assign) else [node.target]))
               for node in tree.body)


def dotted(path: pathlib.Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def pages() -> dict[str, list[str]]:
    """Page name -> the public modules it documents, in order."""
    found: dict[str, list[str]] = {"adapter": [dotted(p) for p in sorted(PACKAGE.glob("*.py"))
                                               if p.name != "__init__.py" and public(p)]}
    for package in sorted(p for p in PACKAGE.iterdir() if p.is_dir() and any(p.glob("*.py"))):
        init = package / "__init__.py"  # absent from a namespace package (adapter/protocol)
        modules = [init] if init.exists() and public(init) else []
        modules += [p for p in sorted(package.glob("*.py")) if p.name != "__init__.py" and public(p)]
        if modules:
            found[package.name] = [dotted(p) for p in modules]
    return {name: modules for name, modules in found.items() if modules}


def page(name: str, modules: list[str]) -> str:
    title = "`adapter`: the top-level modules" if name == "adapter" else f"`adapter.{name}`"
    blocks = "\n\n".join(f"::: {module}" for module in modules)
    return f"# {title}\n\nThe public modules (those that declare `__all__`), from their docstrings.\n\n{blocks}\n"


def main() -> None:
    import mkdocs_gen_files

    summary = []
    for name, modules in pages().items():
        with mkdocs_gen_files.open(f"reference/{name}.md", "w") as out:
            out.write(page(name, modules))
        summary.append(f"* [{'adapter (top level)' if name == 'adapter' else 'adapter.' + name}]({name}.md)\n")
    with mkdocs_gen_files.open("reference/SUMMARY.md", "w") as out:
        out.writelines(summary)


if __name__ in ("__main__", "<run_path>"):
    main()
