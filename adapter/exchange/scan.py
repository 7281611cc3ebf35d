"""The direct-identifier scan: what must never leave a site, looked for in what is about to.

Two passes over each NDJSON line, both needed:

* `structural_findings` knows no patient: it refuses elements that hold direct identifiers
  whatever their value (HumanName, a day-precision birthDate, Address, ContactPoint, narrative
  and other free text, any identifier but the study pseudonym) and, given a policy, a resource
  the de-identification policy did not tag (so output that bypassed the policy is caught).
* `Needles` knows this site's children: their MRNs and birth dates read from the site's own
  exports with the mapping's readers, searched for literally in the line's bytes, so an
  identifier that slipped into an unexpected element (a code's text, a lot number, an
  extension) is caught too.

Used by `fhir-adapter exchange check POLICY` over the policy's output, and by the coordinating
centre on every file a site sends (a file with any finding is refused whole). A Finding never
holds the identifying value, only where it is and what kind it is: reports travel.

Speed (measured on this project's 2-core development machine, Python 3.11, while another test
run shared it): 20,000 needles (10,000 MRNs, 10,000 birth dates as YYYY-MM-DD and DD/MM/YYYY;
21,037 spellings) compile once in 2-3 s; `Needles.findings` over 100,000 Observation lines of
~0.97 KB takes 2.4-3.2 s (~25-30 us a line, about half of what json.loads of the same lines costs);
`structural_findings` on the parsed lines 3.4-6.2 s. A flat regex alternation of the same needles
was ~1,000 times slower (Python's re tries every alternative at every position): hence the
trie-shaped pattern, which costs a few byte comparisons a position.
"""
from __future__ import annotations

import json
import pathlib
import fnmatch
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from adapter.mapping.scopes import read_source
from adapter.mapping.fields import Problem, Scope, evaluate, fields_of, text_of
from adapter.mapping.sources import SourceRow
from adapter.mapping.spec import MappingSpec, load_mapping
from adapter.mapping.values import parse_date

__all__ = ["Finding", "KINDS", "structural_findings", "Needles", "scan_ndjson"]

KINDS = ("mrn", "name", "birth-date", "address", "telephone", "free-text", "identifier", "policy-tag")


@dataclass(frozen=True)
class Finding:
    resource: str  # "Patient/site-a-3f…"
    path: str  # "Patient.birthDate", "Observation.note[0].text"
    kind: str  # one of KINDS
    reason: str  # a sentence; never the identifying value itself


_PERSONS = {"Patient", "Practitioner", "RelatedPerson", "Person", "PractitionerRole"}
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}")
_ADDRESS_KEYS = ("line", "city", "postalCode", "district")
_CONTACT_SYSTEMS = {"phone", "fax", "email", "sms", "pager", "url"}
_URI = re.compile(r"^(https?://|urn:)[\x21-\x7e]{1,200}$")
_NAMED = _PERSONS | {"Patient.contact"}  # whose `name` is a HumanName


def structural_findings(resource: dict[str, Any], *, pseudonym_system: str | None = None,
                        policy: tuple[str, str] | None = None, other_systems: tuple[str, ...] = ()) -> list[Finding]:
    """Elements that hold direct identifiers, whoever the patient.

    Examples:
        >>> [f.path for f in structural_findings({"resourceType": "Patient", "id": "p",
        ...                                       "birthDate": "2019-05-22", "name": [{"family": "X"}]})]
        ['Patient.birthDate', 'Patient.name']
        >>> structural_findings({"resourceType": "Patient", "id": "p", "birthDate": "2019-05"})
        []

    `other_systems`: fnmatch patterns of identifier systems that name no person (a cell lot, a
    site), which the policy lets out beside the pseudonyms.
    """
    kind = str(resource.get("resourceType", "Resource"))
    where = f"{kind}/{resource.get('id', '')}"
    found: list[Finding] = []
    allowed = None if pseudonym_system is None else _Allowed(pseudonym_system, other_systems)
    _walk(resource, kind, kind, where, allowed, found)
    if policy is not None:
        system, code = policy
        tags = (resource.get("meta") or {}).get("security") or []
        if not any(isinstance(t, dict) and t.get("system") == system and t.get("code") == code for t in tags):
            found.append(Finding(where, f"{kind}.meta.security", "policy-tag",
                                 f"no security label {code} of {system}: not the policy's output"))
    return found


class _Allowed:
    """The identifier systems that may leave: the pseudonyms', and patterns of non-personal ones."""

    def __init__(self, pseudonym: str, patterns: tuple[str, ...]) -> None:
        self.pseudonym, self.patterns = pseudonym, patterns

    def allows(self, system: object) -> bool:
        return system == self.pseudonym or (isinstance(system, str) and any(
            fnmatch.fnmatchcase(system, p) for p in self.patterns))


def _walk(node: dict[str, Any], path: str, owner: str, where: str, pseudonym: _Allowed | None,
          found: list[Finding]) -> None:
    """`owner`: the type of the resource (or Patient.contact) whose element `node` is."""
    whole = _whole_node(node)
    if whole is not None:  # a name, an address or a contact point, whatever its key
        found.append(Finding(where, path, *whole))
        return
    reference = node.get("reference")
    if node.get("display") and isinstance(reference, str) and _PERSONS & set(reference.split("/")):
        found.append(Finding(where, f"{path}.display", "name",
                             "a person's reference keeps its display (usually the name)"))
    for key, value in node.items():
        if key not in _RULED:
            if isinstance(value, (dict, list)):  # most keys: skipped without building a path
                _descend(value, f"{path}.{key}", key, owner, where, pseudonym, found)
            continue
        at = f"{path}.{key}"
        said = _KEYS[key](value, at, owner, pseudonym)
        if said is None:
            _descend(value, at, key, owner, where, pseudonym, found)
        else:
            found.extend(Finding(where, place, kind, reason) for place, kind, reason in said)


def _whole_node(node: dict[str, Any]) -> tuple[str, str] | None:
    if "family" in node or "given" in node:
        return "name", "a human name survives"
    if any(k in node for k in _ADDRESS_KEYS):
        return "address", "an address survives"
    system = node.get("system")
    if isinstance(system, str) and system in _CONTACT_SYSTEMS and node.get("value") not in (None, ""):
        return "telephone", f"a contact point ({node['system']}) survives"
    return None


Said = list[tuple[str, str, str]] | None  # (where, kind, reason) of each finding; None: look inside


def _name(value: Any, at: str, owner: str, _p: _Allowed | None) -> Said:
    return [(at, "name", "a human name survives")] if owner in _NAMED and value else None


def _birth_date(value: Any, at: str, _o: str, _p: _Allowed | None) -> Said:
    if isinstance(value, str) and _DAY.match(value):
        return [(at, "birth-date", "a full birth date (day precision) survives")]
    return None


def _address(value: Any, at: str, _o: str, _p: _Allowed | None) -> Said:
    return [(at, "address", "an address survives")] if value else None


def _telecom(value: Any, at: str, _o: str, _p: _Allowed | None) -> Said:
    return [(at, "telephone", "contact details (telecom) survive")] if value else None


def _text(value: Any, at: str, _o: str, _p: _Allowed | None) -> Said:
    if isinstance(value, dict) and value.get("div"):
        return [(f"{at}.div", "free-text", f"narrative text survives ({len(str(value['div']))} characters)")]
    return None


def _comment(value: Any, at: str, _o: str, _p: _Allowed | None) -> Said:
    if isinstance(value, str) and value:
        return [(at, "free-text", f"a free-text comment survives ({len(value)} characters)")]
    return None


def _note(value: Any, at: str, _o: str, _p: _Allowed | None) -> Said:
    if not isinstance(value, list):
        return None
    return [(f"{at}[{i}].text", "free-text", f"an annotation's free text survives ({len(str(note['text']))} characters)")
            for i, note in enumerate(value) if isinstance(note, dict) and note.get("text")]


def _identifier(value: Any, at: str, _o: str, pseudonym: _Allowed | None) -> Said:
    said = []
    for i, ident in enumerate(value if isinstance(value, list) else [value]):
        of = ident.get("system") if isinstance(ident, dict) else None
        if pseudonym is None or not pseudonym.allows(of):
            # the system is named only when it is a plain URI: a site may have put anything there
            named = f"of system {of}" if isinstance(of, str) and _URI.match(of) else "(system not a URI)"
            said.append((f"{at}[{i}]" if isinstance(value, list) else at, "identifier",
                         f"an identifier {named} is not the study pseudonym"))
    return said


# What each ruled element may hold that identifies a person (checked by its key, at any depth).
_KEYS = {"name": _name, "birthDate": _birth_date, "address": _address, "telecom": _telecom, "text": _text,
         "comment": _comment, "note": _note, "identifier": _identifier}
_RULED = frozenset(_KEYS)


def _descend(value: Any, at: str, key: str, owner: str, where: str, pseudonym: _Allowed | None,
             found: list[Finding]) -> None:
    items = enumerate(value) if isinstance(value, list) else [(None, value)]
    for i, item in items:
        if not isinstance(item, dict):
            continue
        step = at if i is None else f"{at}[{i}]"
        inner = str(item["resourceType"]) if "resourceType" in item else \
            "Patient.contact" if owner == "Patient" and key == "contact" else ""
        _walk(item, step, inner, where, pseudonym, found)


# Bytes that continue a token: a needle inside a longer token ("XMRN123", "MRN1234" in
# "MRN12345") is someone else's value. Non-ASCII bytes are not token bytes, so a name written
# without spaces among other CJK text is still found.
_TOKEN = rb"A-Za-z0-9"
# Shorter values would match everywhere. Counted in UTF-8 bytes, not characters: a Chinese name
# is often three characters (nine bytes), as specific as a 9-letter Latin one.
_MIN_BYTES = 4
_LABELS = {"mrn": "an MRN", "birth-date": "a birth date", "name": "a name", "address": "an address",
           "telephone": "a telephone number"}
# What a patient rule may read, and the kind of identifier it is (today: mrn and birth_date).
_PATIENT_FIELDS = {"mrn": "mrn", "birth_date": "birth-date", "name": "name", "family": "name",
                   "given": "name", "address": "address", "phone": "telephone", "telecom": "telephone",
                   "identifier": "identifier"}  # a field of source.identifiers


class Needles:
    """Known direct identifiers of this site's children, to look for literally in output bytes.

    Examples:
        >>> needles = Needles()
        >>> needles.add("mrn", "MRN96207802")
        >>> [f.kind for f in needles.findings(b'{"note": [{"text": "MRN96207802"}]}', "Observation/o")]
        ['mrn']
        >>> needles.findings(b'{"lot": "XMRN96207802"}', "Observation/o")
        []
    """

    def __init__(self) -> None:
        self._kinds: dict[bytes, set[str]] = {}
        self._values: dict[bytes, str] = {}  # each spelling's text, to find its element
        self._pattern: re.Pattern[bytes] | None = None

    def __len__(self) -> int:
        return len(self._values)

    @classmethod
    def from_sources(cls, spec_paths_and_sources: list[tuple[pathlib.Path, list[pathlib.Path]]]) -> Needles:
        """The patient rules' identifying fields (MRN, birth date as written and as YYYY-MM-DD)
        of every row of the sites' exports, read as `fhir-adapter ingest` reads them. Rows the
        ingest rejects count too: they are children of the site all the same."""
        needles = cls()
        for spec_path, sources in spec_paths_and_sources:
            spec = load_mapping(spec_path)
            rules = [r for r in spec.rules if r.kind == "patient"]
            read = {f for r in rules for expr in r.fields.values() for f in fields_of(expr)}
            # the direct identifiers the mapping declares (source.identifiers) that no patient rule reads
            declared = [{"identifier": f} for f in spec.source.get("identifiers", []) if f not in read]
            for source in sources:
                for row in read_source(spec, source):
                    if isinstance(row, SourceRow):
                        for rule_fields in [r.fields for r in rules] + declared:
                            needles._add_row(spec, rule_fields, row)
        return needles

    def _add_row(self, spec: MappingSpec, fields: dict[str, Any], row: SourceRow) -> None:
        root = Scope(row.values, spec.tabular, spec.source.get("decimal_mark", "."))
        visits: list[Scope] = []
        items = spec.source.get("items")
        if items and not spec.tabular and isinstance(raw := root.get(items).raw, list):
            visits = [root.child(item, f"$.{items}[{i}]") for i, item in enumerate(raw)]
        for name, expr in fields.items():
            kind = _PATIENT_FIELDS.get(name)
            if kind is None:
                continue
            # a JSON field without `$.` is read in each visit, as the engine reads it
            rooted = spec.tabular or not items or all(f.startswith("$.") for f in fields_of(expr))
            for scope in [root] if rooted else visits:
                try:
                    value = evaluate(expr, scope)
                except Problem:
                    continue
                if value.empty:
                    continue
                text = text_of(value.raw).strip()
                self.add(kind, text)
                if kind == "birth-date":
                    try:
                        self.add(kind, parse_date(text, spec.source["date_formats"]))
                    except ValueError:
                        pass  # not a date the site's formats read: its raw text is the needle

    def add(self, kind: str, value: str) -> None:
        """One identifier, in each spelling a JSON writer may give it (UTF-8, \\u-escaped, \\/)."""
        value = value.strip()
        if len(value.encode("utf-8")) < _MIN_BYTES:
            return
        spellings = {value, json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]}
        spellings |= {s.replace("/", "\\/") for s in spellings}
        for spelling in spellings:
            key = spelling.encode("utf-8")
            self._kinds.setdefault(key, set()).add(kind)
            self._values[key] = value
        self._pattern = None

    def findings(self, line: bytes, resource: str) -> list[Finding]:
        """Each known identifier in the line as a whole token, with the element that holds it."""
        if not self._values:
            return []
        if self._pattern is None:
            self._pattern = re.compile(rb"(?<![%s])(?:%s)" % (_TOKEN, _trie(self._kinds)))
        matches = [m.group() for m in self._pattern.finditer(line)]
        if not matches:
            return []
        leaves = _leaves(line, resource.split("/")[0])
        found: list[Finding] = []
        for match in dict.fromkeys(matches):
            value = self._values[match]
            token = re.compile(r"(?<![A-Za-z0-9])%s(?:(?![A-Za-z0-9])|(?=T\d))" % re.escape(value))
            paths = [p for p, text in leaves if token.search(text)] or [resource.split("/")[0]]
            for kind in sorted(self._kinds[match]):
                for path in paths:
                    found.append(Finding(resource, path, kind, f"{_LABELS.get(kind, 'an identifier')} of one of "
                                         f"this site's children appears ({len(value)} characters)"))
        return list(dict.fromkeys(found))


# Needles longer than this go into the pattern as plain alternatives, not into the trie: its
# emit recursed a level a byte, and an identifier of ~1,000 bytes was a RecursionError (so would
# be as many nested groups in the regex parser). Few values are that long.
_TRIE_BYTES = 64


def _end(date: bool) -> bytes:
    """Where a needle may end: at a token's end (a birth date also where a dateTime goes on)."""
    return rb"(?:(?![%s])|(?=T\d))" % _TOKEN if date else rb"(?![%s])" % _TOKEN


def _trie(kinds: dict[bytes, set[str]]) -> bytes:
    """One pattern for all needles, shaped as a trie so that each position costs a few byte
    comparisons, not one per needle. A birth date may go on into a dateTime ("...-22T08:00")."""
    root: dict[int, Any] = {}
    long: list[bytes] = []
    for needle, needle_kinds in kinds.items():
        if len(needle) > _TRIE_BYTES:
            long.append(re.escape(needle) + _end("birth-date" in needle_kinds))
            continue
        node = root
        for byte in needle:
            node = node.setdefault(byte, {})
        node[-1] = node.get(-1, False) or "birth-date" in needle_kinds

    def emit(node: dict[int, Any]) -> bytes:
        branches = [re.escape(bytes([b])) + emit(child) for b, child in sorted(node.items()) if b >= 0]
        if -1 in node:
            branches.append(_end(node[-1]))
        return branches[0] if len(branches) == 1 else b"(?:" + b"|".join(branches) + b")"
    shown = [emit(root)] if root else []
    return b"|".join(shown + sorted(long))


def _leaves(line: bytes, kind: str) -> list[tuple[str, str]]:
    """(path, text) of each value of the line's JSON, to say where a needle was seen."""
    try:
        document = json.loads(line)
    except ValueError:
        return []
    out: list[tuple[str, str]] = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{path}.{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{path}[{i}]")
        elif node is not None:
            out.append((path, text_of(node)))
    walk(document, kind)
    return out


def scan_ndjson(lines: Iterable[bytes], *, needles: Needles | None = None, pseudonym_system: str | None = None,
                policy: tuple[str, str] | None = None, other_systems: tuple[str, ...] = ()
                ) -> Iterator[tuple[int, Finding]]:
    """(line number, finding) for an NDJSON file's lines; a line that is not a JSON object
    cannot be checked and raises ValueError (the file is refused all the same)."""
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            resource = json.loads(line)
            if not isinstance(resource, dict):
                raise ValueError("not a JSON object")
            structural = structural_findings(resource, pseudonym_system=pseudonym_system, policy=policy,
                                             other_systems=other_systems)
        except (ValueError, RecursionError) as exc:  # RecursionError: nested too deep to check
            raise ValueError(f"line {number}: cannot be checked ({type(exc).__name__})") from None
        for finding in structural:
            yield number, finding
        if needles is not None:
            where = f"{resource.get('resourceType', 'Resource')}/{resource.get('id', '')}"
            for finding in needles.findings(line, where):
                yield number, finding
