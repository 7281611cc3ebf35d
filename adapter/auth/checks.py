"""What the guard (adapter/auth/guard.py) checks, apart from where it checks it: who asks
(Access), scopes, which resources a site's client sees, what it may write and which ids it may
create, and how another site's resource is answered (as an unknown one)."""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Any

import orjson

from adapter.auth.scopes import Scopes, parse_scopes
from adapter.fhir.definitions import AUDIT_TYPE
from adapter.fhir.outcomes import FhirError, Issue, forbidden, not_found
from adapter.fhir.references import Target, targets
from adapter.fhir.search import MAX_COUNT, Filter, SearchRequest
from adapter.fhir.sites import SITE_SYSTEM, in_namespace, sites_of, with_site
from adapter.store.integrity import Dangling, DanglingReferences
from adapter.store.repository import Repository, SearchPage, StoredResource

__all__ = ["Access", "Checks", "DEFINITION_TYPES", "access_of"]

# The study's protocol, its terminology and its directory of sites: readable by every
# authorised client, written by the centre only.
DEFINITION_TYPES = frozenset({"ResearchStudy", "PlanDefinition", "ActivityDefinition", "CodeSystem", "ValueSet",
                              "Measure", "ConceptMap", "Organization", "Location"})


@dataclass(frozen=True)
class Access:
    """Who asks: a client, its site (None: the coordinating centre) and its granted scopes."""

    client: str
    site: str | None
    scopes: Scopes
    policy: str | None = None  # an exchange policy everything it reads goes through
    # A person signed in to the pages through OpenID Connect: (issuer, subject); `client` is
    # then their name. What they may see is the site and scopes, as for a client.
    user: tuple[str, str] | None = None

    def as_json(self) -> dict[str, Any]:
        return {"client": self.client, "site": self.site, "scope": str(self.scopes), "policy": self.policy}


@functools.lru_cache(maxsize=256)
def _scopes(text: str) -> Scopes:
    return parse_scopes(text)


def access_of(client: str, site: str | None, scope: str, policy: str | None = None,
              user: tuple[str, str] | None = None) -> Access:
    """An Access from a token's claims, or a signed-in person's session (its scope string
    parsed once per distinct string)."""
    return Access(client, site or None, _scopes(scope), policy or None, user)


class Checks:
    """The checks, shared by the repository and its transactions."""

    def __init__(self, access: Access, repo: Repository) -> None:
        self.access, self._repo = access, repo
        self._site_filter = (Filter("_security", "token", None, ((SITE_SYSTEM, access.site),))
                             if access.site else None)

    def need(self, rtype: str, permission: str, what: str) -> None:
        if rtype == AUDIT_TYPE and (self.access.site or permission in "cud"):
            raise forbidden("the audit trail is read by the coordinating centre only and written by "
                            "the server only")
        if not self.access.scopes.allows(rtype, permission):
            raise forbidden(f"{what} needs the scope system/{rtype}.{permission} (or system/*.{permission}); "
                            f"this client has: {self.access.scopes or 'no scopes'}")

    def visible(self, stored: StoredResource) -> bool:
        site = self.access.site
        if site is None or stored.data is None:
            return True
        labels = sites_of(orjson.loads(stored.data))
        if stored.resource_type in DEFINITION_TYPES:  # everyone's, unless a site's own
            return labels <= {site}
        return site in labels

    @staticmethod
    def unknown(rtype: str, rid: str, version: int | None = None) -> FhirError:
        """The store's own answer for an id (or a version) it does not hold, word for word."""
        return not_found(f"{rtype}/{rid} has no version {version}" if version is not None
                         else f"{rtype}/{rid} is not known")

    def labelled_elsewhere(self, rtype: str) -> tuple[str, ...]:
        """The other sites whose label some resource of a definition type carries (a site's own
        ResearchStudy), for a `_security:not` filter; looked up once per store generation."""
        cache, generation = self._repo.derived(), self._repo.generation()
        key = ("guard: sites labelling", rtype)
        if generation is None or cache.get(key, (None,))[0] != generation:
            labelled = SearchRequest(rtype, (Filter("_security", "token", None, ((SITE_SYSTEM, None),)),),
                                     count=MAX_COUNT, total="none")
            sites = {code for page in self._repo.scan(labelled) for e in page
                     for code in sites_of(orjson.loads(e.data or b"{}"))}
            cache[key] = (generation, tuple(sorted(sites)))
        return tuple(s for s in cache[key][1] if s != self.access.site)

    def check_namespace(self, rtype: str, rid: str) -> None:
        """A site's client creates by PUT only ids in its own namespace and in no other known
        site's (one whose code is not part of its own: site-a-north's ids are not site-a's).
        Said the same way whether the id is unknown or another site's."""
        site = str(self.access.site)
        registry = getattr(self._repo, "list_clients", None)
        known = {c.site for c in registry() if c.site} if registry is not None else set()
        others = [s for s in known if s != site and in_namespace(rid, s) and f"-{s}-" not in f"-{site}-"]
        if not in_namespace(rid, site) or others:
            raise forbidden(f"{rtype}/{rid}: client {self.access.client} creates by PUT only ids in site "
                            f"{site}'s namespace ({site}-..., or ...-{site}-...) and updates its own site's "
                            "resources; POST creates one with an id the server assigns", f"{rtype}.id")

    def narrowed(self, request: SearchRequest) -> SearchRequest:
        """The search, held to the client's scopes and site (definitions are everyone's): a
        chain or _has searches its target type too, so it needs `s` on that type and matches
        only the client's site's resources there (else a reference to an id another site later
        fills, or another site's resources pointing in, would tell about them)."""
        for f in request.filters:
            self._check_chain(f)
        filters = tuple(self._held(f) for f in request.filters)
        if self._site_filter is not None and request.resource_type not in DEFINITION_TYPES:
            filters = (*filters, self._site_filter)
        elif self._site_filter is not None and (others := self.labelled_elsewhere(request.resource_type)):
            filters = (*filters, Filter("_security", "token", "not", tuple((SITE_SYSTEM, o) for o in others)))
        return dataclasses.replace(request, filters=filters)

    def _check_chain(self, f: Filter) -> None:
        if f.chain is None or f.target is None:
            return
        self.need(f.target, "s", f"a chained or _has search through {f.target}")
        self._check_chain(f.chain)

    def _held(self, f: Filter) -> Filter:
        if f.chain is None or f.target is None:
            return f
        also = f.also
        if self._site_filter is not None and f.target not in DEFINITION_TYPES:
            also = (*also, self._site_filter)
        return dataclasses.replace(f, chain=self._held(f.chain), also=also)

    def allowed_included(self, page: SearchPage) -> SearchPage:
        """Included resources the client may read. Those outside its scopes are said (it knows
        its scopes); another site's are left out unsaid, as a search never counts them."""
        in_scope = [e for e in page.included if self.access.scopes.allows(e.resource_type, "r")]
        kept = [e for e in in_scope if self.visible(e)]
        if len(kept) == len(page.included):
            return page
        notes = page.notes
        if len(in_scope) != len(page.included):
            left_out = sorted({e.resource_type for e in page.included} - {e.resource_type for e in in_scope})
            notes = (*notes, Issue("suppressed", f"included resources outside this client's scopes are left "
                                   f"out ({', '.join(left_out)})", severity="information"))
        return dataclasses.replace(page, included=kept, notes=notes)

    def check_write(self, resource: dict[str, Any], permission: str, existing: StoredResource | None,
                    read: Any, chosen: str | None = None) -> None:
        """`resource` may be written (labelled with the client's site); `existing` is what it
        replaces; `chosen` the id the client chose for it (a PUT), None for one the server
        assigns; `read(type, id)` finds what its references point to."""
        rtype = str(resource.get("resourceType"))
        self.need(rtype, permission, f"{'create' if permission == 'c' else 'update'} of {rtype}")
        site = self.access.site
        if site is None:
            return
        if rtype in DEFINITION_TYPES:
            raise forbidden(f"{rtype} is a protocol definition: written by the coordinating centre only")
        if chosen is not None and not (existing is not None and self.visible(existing)):
            self.check_namespace(rtype, chosen)  # not its own resource: a create, in its namespace only
            if existing is not None:  # its namespace, another site's resource: only a squat made it
                raise forbidden(f"{rtype}/{chosen} in site {site}'s namespace is labelled for another site",
                                f"{rtype}.id")
        others = sites_of(resource) - {site}
        if others:
            raise forbidden(f"the resource is labelled for site {', '.join(sorted(others))}; client "
                            f"{self.access.client} writes site {site}'s data only", "meta.security")
        with_site(resource, site)
        found, _ = targets(resource)
        for target in found:
            pointed = read(target.type, target.id)
            if pointed is not None and not self.visible(pointed):
                self._as_unresolved(resource, chosen, target)

    @staticmethod
    def _as_unresolved(resource: dict[str, Any], rid: str | None, target: Target) -> None:
        """A reference to another site's resource is refused as one to an id not held here is,
        in the integrity check's own words (adapter/store/integrity.py); also with that check
        off (staged loads), where a reference to an unknown id is taken: pointing into another
        site's data stays refused, at the price of telling the two apart in that mode only."""
        what = f"{target.type}/{target.id}" + (f" version {target.version}" if target.version is not None else "")
        raise DanglingReferences([Dangling((str(resource.get("resourceType")), str(rid or resource.get("id"))),
                                           target.expression, target.reference,
                                           f"{target.reference!r} does not resolve: there is no {what} here")])

    def existing(self, read: Any, rtype: str, rid: str) -> StoredResource | None:
        """What an update or delete replaces, for the site check (None: a new resource). A
        deleted resource is its last version: a site may not take over another site's id."""
        if self.access.site is None:
            return None
        try:
            current = read(rtype, rid)
        except FhirError as error:
            if error.status not in (404, 410):
                raise
            current = None
        if current is not None:
            return current  # type: ignore[no-any-return]
        try:
            versions = self._repo.history(rtype, rid, count=2).entries
        except FhirError:
            return None  # never stored
        return next((v for v in versions if v.data is not None), None)


