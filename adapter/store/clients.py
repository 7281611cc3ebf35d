"""The SMART Backend Services client registry and the client-assertion replay cache.

A small interface beside `Repository` (the FHIR resources know nothing of it), implemented for
the SQL stores by `SqlClients`, which `SqlStore` mixes in.
"""
from __future__ import annotations

import abc
import itertools
import time
from dataclasses import dataclass

from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from adapter.errors import AdapterError
from adapter.fhir.dates import now_instant
from adapter.store.schema import auth_clients, auth_jti

__all__ = ["ClientRecord", "ClientRegistry", "SqlClients", "DuplicateClient"]

# One remember_assertion in this many also deletes the expired jtis: the table stays as small
# as the assertions of the last few minutes, and no request pays for a sweep each time.
_PURGE_EVERY = 64


class DuplicateClient(AdapterError, ValueError):
    """A client of that name is registered already."""


@dataclass(frozen=True)
class ClientRecord:
    name: str
    scope: str
    jwks: str | None = None  # JSON text of a public JWK Set
    jwks_url: str | None = None
    site: str | None = None
    policy: str | None = None
    created: str = ""
    revoked_at: str | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


class ClientRegistry(abc.ABC):
    @abc.abstractmethod
    def add_client(self, client: ClientRecord) -> ClientRecord:
        """Register a client (its `created` set now); DuplicateClient if the name is taken."""

    @abc.abstractmethod
    def get_client(self, name: str) -> ClientRecord | None:
        """The client, revoked or not; None if never registered."""

    @abc.abstractmethod
    def list_clients(self) -> list[ClientRecord]:
        """Every client, by name."""

    @abc.abstractmethod
    def revoke_client(self, name: str) -> bool:
        """Revoke a client (kept, for the audit trail); False if unknown or revoked already."""

    @abc.abstractmethod
    def remember_assertion(self, client: str, jti: str, expires: int) -> bool:
        """Record a client assertion's jti until `expires` (epoch seconds); False when that
        client used it before (a replay)."""


class SqlClients(ClientRegistry):
    """The registry on the store's own database (needs `engine` and `_autocommit`)."""

    engine: Engine
    _autocommit: Engine
    _purge_counter = itertools.count()

    def add_client(self, client: ClientRecord) -> ClientRecord:
        row = {**client.__dict__, "created": now_instant(), "revoked_at": None}
        try:
            with self._autocommit.connect() as conn:
                conn.execute(insert(auth_clients).values(row))
        except IntegrityError:
            raise DuplicateClient(f"a client named {client.name!r} is registered already") from None
        return ClientRecord(**row)

    def get_client(self, name: str) -> ClientRecord | None:
        with self._autocommit.connect() as conn:
            row = conn.execute(select(auth_clients).where(auth_clients.c.name == name)).first()
        return ClientRecord(**row._mapping) if row else None

    def list_clients(self) -> list[ClientRecord]:
        with self._autocommit.connect() as conn:
            rows = conn.execute(select(auth_clients).order_by(auth_clients.c.name)).all()
        return [ClientRecord(**row._mapping) for row in rows]

    def revoke_client(self, name: str) -> bool:
        with self._autocommit.connect() as conn:
            done = conn.execute(update(auth_clients).where(
                auth_clients.c.name == name, auth_clients.c.revoked_at.is_(None)
            ).values(revoked_at=now_instant()))
        return bool(done.rowcount)

    def remember_assertion(self, client: str, jti: str, expires: int) -> bool:
        # The primary key decides, in one statement: two workers (or a restarted one) offered
        # the same assertion at once cannot both insert it. An expired row not yet purged
        # still refuses its jti, which is right: a replay after expiry fails on `exp` anyway.
        try:
            with self._autocommit.connect() as conn:
                conn.execute(insert(auth_jti).values(client=client, jti=jti, expires=expires))
                if next(self._purge_counter) % _PURGE_EVERY == 0:
                    conn.execute(delete(auth_jti).where(auth_jti.c.expires < int(time.time())))
        except IntegrityError:
            return False
        return True
