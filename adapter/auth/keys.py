"""The server's own signing key: an EC P-256 key (ES256) that signs the access tokens.

Generated on first use into a JSON Web Key file readable by its owner only; its private part is
never printed or served. Several gunicorn workers may start at once: the first to link its file
into place wins and the others read that one, so every worker signs with the same key.
"""
from __future__ import annotations

import json
import os
import pathlib
import uuid
from dataclasses import dataclass
from typing import Any

from joserfc.jwk import ECKey

from adapter.private import beside_store, open_private, private_dir

__all__ = ["ServerKey", "load_or_create", "default_key_file", "ALGORITHM"]

ALGORITHM = "ES256"


@dataclass(frozen=True)
class ServerKey:
    key: ECKey
    kid: str

    def public_jwks(self) -> dict[str, Any]:
        """The JWK Set of the public half, e.g. for a jwks_uri."""
        return {"keys": [self.key.as_dict(private=False, kid=self.kid, use="sig", alg=ALGORITHM)]}

    def __repr__(self) -> str:  # never the private key, in a log or a traceback
        return f"ServerKey(kid={self.kid!r})"


def default_key_file(database_url: str) -> str:
    """auth-key.json beside an SQLite file (var/auth-key.json for var/adapter.db), else in var/."""
    return beside_store(database_url, "auth-key.json")


def load_or_create(path: str | os.PathLike[str]) -> ServerKey:
    path = pathlib.Path(path)
    if not path.exists():
        _create(path)
    data = json.loads(path.read_text())
    key = ECKey.import_key(data)
    if not key.is_private:
        raise ValueError(f"{path} holds no private key: the server cannot sign tokens with it")
    return ServerKey(key, key.thumbprint())


def _create(path: pathlib.Path) -> None:
    private_dir(path.parent)
    key = ECKey.generate_key("P-256", private=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    with open_private(temporary) as handle:  # 0600 from its creation
        json.dump(key.as_dict(private=True), handle)
    try:
        os.link(temporary, path)  # atomic, and refuses to replace another worker's key
    except FileExistsError:
        pass
    finally:
        temporary.unlink()
