"""The mapping workbench page: a dry run of a site's mapping on a fixture or an upload."""
from __future__ import annotations

from flask import current_app, render_template, request
from flask.typing import ResponseReturnValue

from adapter.pages.context import access, error_page, repository
from adapter.pages.workbench import dry_run, fixtures, mappings

__all__ = ["workbench"]


def workbench() -> ResponseReturnValue:
    # Ingest needs to create resources; the dry run is held to the same (it reads a site's
    # export, which holds MRNs), though it writes nothing.
    repository().require("Patient", "c", "the mapping workbench (a dry run of an ingest)")
    run, choices = None, fixtures()
    mapping = request.values.get("mapping", "")
    who = access()
    allowed = [m for m in mappings() if who is None or who.site is None or m == who.site]
    if mapping and mapping not in allowed:
        return error_page(403, f"{mapping} is another site's mapping; yours: {', '.join(allowed) or 'none'}")
    if request.method == "POST" and "file" in request.files and request.files["file"].filename:
        upload = request.files["file"]
        run = dry_run(mapping, upload.filename or "upload", upload=upload.read())
    elif request.values.get("fixture"):
        name = request.values["fixture"]
        if who is not None and who.site is not None and not name.startswith(f"{who.site}/"):
            return error_page(403, f"{name} is another site's file; a site's user tries its own site's only")
        if name in choices:
            run = dry_run(mapping, name, path=choices[name])
        else:
            return error_page(400, f"no fixture named {name!r}; choose one from the list")
    elif request.method == "POST":
        return error_page(400, "choose a fixture or a file to upload")
    return render_template("workbench.html", run=run, mappings=allowed, fixtures=list(choices),
                           chosen=mapping, limit=current_app.config.get("MAX_CONTENT_LENGTH"))
