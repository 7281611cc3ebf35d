"""A policy with the site's exchange key: a stored resource turned into what may leave the site.

Rules first (keep, redact, generalize, pseudonymize: policy.py), what a `keep` keeps judged by
datatype (scrub.py), ids re-keyed, then two things no rule could say:

- Dates shifted per child. Every date, dateTime and instant of a child's resources moves by one
  offset: whole days, within +/- the policy's `shift_days` and never 0, a keyed function of the
  child's pseudonym and the site's key, the same at every pull. Every interval within a child is
  kept to the day, and no date of the child's is the date it was. The protocol counts follow-up
  visits in calendar months, which a shift of days would stretch or shrink by up to three days
  (February): the offset is the first, in a keyed order, under which the child's whole schedule
  (every visit's target day and window) moves by exactly the offset too, so visit windows,
  adherence and change from baseline come out the same at the centre. A resource of no child (a
  cell lot, a row's Provenance) moves by the site's own offset. `meta.lastUpdated` stays true
  (Bulk Data's `_since`).
- The release (anonymity.py): the quasi-identifiers of every child at the levels that give k,
  those of the suppressed children withheld.
"""
from __future__ import annotations

import base64
import fnmatch
import functools
import hashlib
import hmac
import os
import re
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

import orjson

from adapter.exchange.anonymity import AGE_AT_ENROLMENT, Release, generalise, withhold
from adapter.fhir.datatypes import DATES, FREE_TEXT
from adapter.exchange.policy import EXCHANGE_POLICY_SYSTEM, Policy, Rule, RuleNode
from adapter.exchange.scrub import Scrubbing, fill_required, scrub, typed
from adapter.fhir.extract import parse_reference
from adapter.fhir.sites import sites_of

__all__ = ["Deidentifier", "shift_date", "child_of"]

_UCUM = "http://unitsofmeasure.org"
_CHILD_KEYS = ("subject", "patient", "individual")
_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?(T.*)?$")


def shift_date(text: str, days: int) -> str | None:
    """A FHIR date, dateTime or instant moved by `days`, at its own precision (the time of day
    and the zone unchanged). None for what is no date.

    Examples:
        >>> shift_date("2019-05-22", 10), shift_date("2019-05", 31), shift_date("2019-12-30T08:15:00+08:00", 3)
        ('2019-06-01', '2019-06', '2020-01-02T08:15:00+08:00')
    """
    match = _DATE.match(text)
    if not match:
        return None
    year, month, day, rest = match.groups()
    try:
        moved = date(int(year), int(month or 1), int(day or 1)) + timedelta(days=days)
    except ValueError:
        return None
    if day:
        return moved.isoformat() + (rest or "")
    return f"{moved.year:04d}-{moved.month:02d}" if month else f"{moved.year:04d}"


def child_of(resource: dict[str, Any]) -> str | None:
    """The stored id of the child whose resource this is (its Patient id), or None."""
    if resource.get("resourceType") == "Patient":
        return str(resource.get("id")) if resource.get("id") else None
    for key in _CHILD_KEYS:
        ref = resource.get(key)
        if isinstance(ref, dict) and isinstance(ref.get("reference"), str):
            rtype, rid = parse_reference(ref["reference"])
            if rtype == "Patient" and rid:
                return rid
    return None


def _months_between(born: date, on: date) -> int:
    return (on.year - born.year) * 12 + on.month - born.month - (on.day < born.day)


class Deidentifier:
    """`enrolment(patient id)`: the child's first injection day; `displays(system, code)`: a code
    system's own display; `release()`: what the policy's k-anonymity gives (None: no k)."""

    def __init__(self, policy: Policy, key: bytes, enrolment: Callable[[str], str | None] | None = None,
                 displays: Callable[[str, str], str | None] | None = None,
                 release: Callable[[Deidentifier], Release | None] | None = None,
                 schedules: Callable[[str], Any] | None = None) -> None:
        self.policy, self._key = policy, key
        self._enrolment = enrolment or (lambda patient_id: None)
        self._displays = displays or (lambda system, code: None)
        self._release_of = release
        self._schedules = schedules or (lambda child: None)
        self._ids: dict[tuple[str, str, str], str] = {}
        self._offsets: dict[tuple[str, str | None], int] = {}

    def keyed(self, text: str) -> str:
        return hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()

    @functools.cached_property
    def release(self) -> Release | None:
        """Worked out once per Deidentifier (an export applies one release throughout)."""
        return self._release_of(self) if self._release_of is not None else None

    # -- sealed cursors ---------------------------------------------------------------------

    def seal(self, text: str, context: str = "") -> str:
        """`text` (a stored id in a paging cursor) sealed with the site's key (AES-GCM): the
        client can hand it back, neither read it nor make one up."""
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        nonce = os.urandom(12)
        box = AESGCM(self._sealing).encrypt(nonce, text.encode(), f"cursor|{context}".encode())
        return base64.urlsafe_b64encode(nonce + box).rstrip(b"=").decode()

    def unseal(self, token: str, context: str = "") -> str | None:
        """What `seal` sealed for the same `context`, or None when `token` is not such a seal."""
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            return AESGCM(self._sealing).decrypt(raw[:12], raw[12:], f"cursor|{context}".encode()).decode()
        except (ValueError, InvalidTag, UnicodeDecodeError):
            return None

    @functools.cached_property
    def _sealing(self) -> bytes:
        return hmac.new(self._key, b"paging cursor seal", hashlib.sha256).digest()

    # -- ids and dates ------------------------------------------------------------------------

    def new_id(self, site: str, rtype: str, rid: str) -> str:
        """The id a resource has outside the site: `<site>-<32 hex>` (the same every time)."""
        key = (site, rtype, rid)
        found = self._ids.get(key)
        if found is None:
            if len(self._ids) > 200_000:  # a long export must not grow without bound
                self._ids.clear()
            found = self._ids[key] = f"{site}-{self.keyed(f'{rtype}/{rid}')[:32]}"
        return found

    def offset(self, site: str, child: str | None) -> int:
        """The days every date of this child's resources moves (of the site's, with no child):
        within +/- shift_days, never 0, and one under which the child's schedule moves whole."""
        key = (site, child)
        found = self._offsets.get(key)
        if found is None:
            if len(self._offsets) > 200_000:
                self._offsets.clear()
            found = self._offsets[key] = self._first_offset(site, child)
        return found

    def _first_offset(self, site: str, child: str | None) -> int:
        span = self.policy.shift_days
        if span <= 0:
            return 0
        whose = self.new_id(site, "Patient", child) if child else "the site"
        order = sorted((d for d in range(-span, span + 1) if d),
                       key=lambda d: self.keyed(f"date shift|{site}|{whose}|{d}"))
        planned = self._schedules(child) if child else None
        if planned is None:
            return order[0]
        start, dates_of = planned
        before = dates_of(start)
        for days in order:
            moved = dates_of(start + timedelta(days=days))
            if all(m == tuple(b + timedelta(days=days) for b in was) for m, was in zip(moved, before, strict=True)):
                return days
        return order[0]  # no such offset within the span (cannot happen: one in the same month moves it whole)

    # -- applying the policy --------------------------------------------------------------------

    def apply(self, resource: dict[str, Any]) -> dict[str, Any] | None:
        release = self.release
        child = child_of(resource)
        withheld = release is not None and child is not None and child in release.suppressed
        return self.share(resource, release.levels if release is not None else None, withheld)

    def share(self, resource: dict[str, Any], levels: dict[str, int] | None, withheld: bool) -> dict[str, Any] | None:
        """`resource` as it leaves at these levels of the policy's quasi-identifiers."""
        rtype, rid = resource.get("resourceType", ""), resource.get("id")
        tree = self.policy.tree(rtype)
        if tree is None:
            return None
        sites = sites_of(resource)
        site = next(iter(sites)) if len(sites) == 1 else None
        if site is None:
            return None  # not one site's data (a definition, or whose it is cannot be told): it stays
        days = self.offset(site, child_of(resource))
        ctx = Scrubbing(lambda text: shift_date(text, days), self._identifier, self._displays, self.policy.extensions)
        out = self._project(resource, tree, None, rtype, ctx) or {}
        out = {"resourceType": rtype, **({"id": self._id(site, rtype, rid)} if rid else {}),
               **{k: v for k, v in out.items() if k not in ("resourceType", "id")}}
        if rtype == "Patient":
            self._age(resource, out, tree)
        config = self.policy.k_anonymity
        if config is not None and levels is not None:
            (withhold(out, config) if withheld else generalise(out, config, levels))
        meta = out.setdefault("meta", {})
        meta["security"] = [*(c for c in meta.get("security", []) if c.get("system") != EXCHANGE_POLICY_SYSTEM),
                            self.policy.stamp]
        if self.policy.rekey_ids:
            out = orjson.loads(orjson.dumps(out))  # a copy: kept parts are the caller's own objects
            self._rekey_references(out, site)
        if rtype == "Group" and isinstance(out.get("member"), list):
            # members are stored in record-number order: in that order, the n-th shared id
            # would be the n-th record number. In the order of their shared ids, nothing.
            out["member"].sort(key=lambda m: str(((m or {}).get("entity") or {}).get("reference", "")))
        return out

    def _rekey_references(self, node: Any, site: str) -> None:
        """Every reference to a re-keyed type, however written (relative, absolute, versioned:
        parsed as the store parses it), becomes `Type/<shared id>`."""
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "reference" and isinstance(value, str):
                    rtype, rid = parse_reference(value)
                    if rtype in self.policy.rekey_ids and rid:
                        node[key] = f"{rtype}/{self.new_id(site, rtype, rid)}"
                else:
                    self._rekey_references(value, site)
        elif isinstance(node, list):
            for item in node:
                self._rekey_references(item, site)

    def _id(self, site: str, rtype: str, rid: str) -> str:
        return self.new_id(site, rtype, rid) if rtype in self.policy.rekey_ids else rid

    def _project(self, value: Any, node: RuleNode, inherited: Rule | None, kind: str | None, ctx: Scrubbing) -> Any:
        rule = node.rule or inherited
        action = rule.action if rule else "redact"
        if action == "redact" and not node.keeps_below:
            return None
        if rule is not None and action == "generalize":
            return _generalize(value, rule.to or "year") if isinstance(value, str) else None
        if rule is not None and action == "pseudonymize":
            return self._pseudonyms(value)
        if node.rule is not None and action == "keep" and kind in FREE_TEXT:
            return value  # this very element is named, with its reason (policy.py)
        if isinstance(value, list):
            items = [self._project(item, node, inherited, kind, ctx) for item in value]
            return [i for i in items if i not in (None, {}, [])] or None
        if not isinstance(value, dict):
            if action != "keep":
                return None
            return ctx.shift(value) if kind in DATES and isinstance(value, str) else scrub(value, kind, ctx)
        if kind in ("Resource", "ResourceList") and isinstance(value.get("resourceType"), str):
            kind = value["resourceType"]  # a contained resource, kept by a rule: judged as its own type
        out = {}
        for key, item in value.items():
            if key == "resourceType":  # a contained resource's
                out[key] = item
                continue
            child = node.child(key[1:] if key.startswith("_") else key)
            inner = typed(kind or "", key)
            if child is None:  # no rule below: kept by its datatype, or not at all
                kept = scrub(item, inner, ctx) if action == "keep" else None
            elif key.startswith("_"):
                continue  # a primitive's extensions and id
            else:
                kept = self._project(item, child, rule, inner, ctx)
            if kept not in (None, {}, []):
                out[key] = kept
        return fill_required(kind or "", value, out) or None

    def _identifier(self, identifier: dict[str, Any]) -> dict[str, Any] | None:
        system = str(identifier.get("system", ""))
        if system == self.policy.pseudonym_system or any(
                fnmatch.fnmatchcase(system, p) for p in self.policy.non_personal_identifiers):
            return {k: v for k, v in identifier.items() if k in ("system", "value")} or None
        return self._pseudonyms(identifier)  # type: ignore[no-any-return]

    def _pseudonyms(self, value: Any) -> Any:
        identifiers = value if isinstance(value, list) else [value]
        out = []
        for identifier in identifiers:
            if isinstance(identifier, dict) and identifier.get("value"):
                pseudonym = {"system": self.policy.pseudonym_system,
                             "value": self.keyed(f"{identifier.get('system', '')}|{identifier['value']}")}
                if pseudonym not in out:
                    out.append(pseudonym)
        return (out or None) if isinstance(value, list) else (out[0] if out else None)

    def _age(self, source: dict[str, Any], out: dict[str, Any], tree: RuleNode) -> None:
        """The age at enrolment in completed years (months under 2): the birth date does not
        leave, and days with the (shifted) enrolment date would give it back."""
        node = tree.children.get("birthDate")
        if node is None or node.rule is None or not node.rule.age_at_enrolment:
            return
        born, enrolled = source.get("birthDate"), self._enrolment(source.get("id", ""))
        if not (isinstance(born, str) and len(born) == 10 and enrolled and len(enrolled) >= 10):
            return
        months = _months_between(date.fromisoformat(born), date.fromisoformat(enrolled[:10]))
        age = {"value": months, "unit": "mo", "system": _UCUM, "code": "mo"} if months < 24 else \
            {"value": months // 12, "unit": "a", "system": _UCUM, "code": "a"}
        out.setdefault("extension", []).append({"url": AGE_AT_ENROLMENT, "valueAge": age})


def _generalize(value: str, to: str) -> str | None:
    """A date, dateTime or instant cut to its year or year-month (None when it is no date).

    Examples:
        >>> _generalize("2019-05-22", "year-month"), _generalize("2019-05-22T10:00:00Z", "year")
        ('2019-05', '2019')
    """
    match = re.match(r"(\d{4})(-\d{2})?", value)
    if not match:
        return None
    return match.group(1) + ((match.group(2) or "") if to == "year-month" else "")
