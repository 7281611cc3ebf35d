"""An R4 AuditEvent for one FHIR request, after the IHE Basic Audit Log Patterns (BALP):
type `rest`, subtype the interaction, action C/R/U/D/E, outcome, the client as agent, this server
as source, the resource or the query as entity, and the patient whose data it was, if any.
"""
from __future__ import annotations

import base64
import datetime
import re
import uuid
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl

import orjson

from adapter.audit.record import AccessRecord

__all__ = ["audit_event", "minimal_event", "patients_of", "CLIENT_SYSTEM", "OPERATION_SYSTEM", "SITE_SYSTEM"]

_EVENT_TYPE = {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest",
               "display": "RESTful Operation"}
_INTERACTION = "http://hl7.org/fhir/restful-interaction"
# Operations have no code of their own in restful-interaction (only "operation"): their names
# ($export, $everything, ...) are coded in this server's own system beside it.
OPERATION_SYSTEM = "http://ucmsc-cp.example.org/fhir/CodeSystem/operation"
CLIENT_SYSTEM = "http://ucmsc-cp.example.org/fhir/sid/client-id"
SITE_SYSTEM = "http://ucmsc-cp.example.org/fhir/CodeSystem/study-site"  # as main's adapter/fhir/sites.py
_DCM = "http://dicom.nema.org/resources/ontology/DCM"
_ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
_SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
_ROLE_TYPE = "http://terminology.hl7.org/CodeSystem/extra-security-role-type"
# BALP: a search (query) and an operation are executions; a read is R.
_ACTION = {"create": "C", "read": "R", "vread": "R", "update": "U", "patch": "U", "delete": "D"}
_PATIENT_KEYS = ("subject", "patient", "individual")  # elements naming a resource's patient
_SINGLE = {"read", "vread", "create", "update", "patch"}


def _instant(seconds: float) -> str:
    when = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _subtype(record: AccessRecord) -> list[dict[str, str]]:
    if record.interaction is None:
        return []
    if record.operation:
        return [{"system": OPERATION_SYSTEM, "code": record.operation},
                {"system": _INTERACTION, "code": "operation"}]
    return [{"system": _INTERACTION, "code": record.interaction}]


def _action(record: AccessRecord) -> str:
    if record.interaction == "update" and record.status == 201:
        return "C"  # an update that created the resource
    if record.operation in ("$export-file", "$export-status"):
        return "R"
    if record.operation == "$export-delete":
        return "D"
    if record.interaction is None:
        return {"GET": "R", "HEAD": "R", "POST": "C", "PUT": "U", "PATCH": "U", "DELETE": "D"}.get(record.method, "E")
    return _ACTION.get(record.interaction, "E")


def _outcome(record: AccessRecord) -> tuple[str, str]:
    status = record.status
    code = "0" if status < 400 else "4" if status < 500 else "8"
    try:
        text = f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        text = str(status)
    if status >= 400 and record.body:
        try:
            issue = (orjson.loads(record.body).get("issue") or [{}])[0]
            if issue.get("diagnostics"):
                text += f": {str(issue['diagnostics'])[:300]}"
        except (orjson.JSONDecodeError, AttributeError, TypeError):
            pass
    return code, text


def _target(record: AccessRecord) -> str | None:
    """Type/id[/_history/v] of the resource acted on, if the request names one."""
    if record.interaction in ("create", "update", "patch") and record.location and record.status < 300:
        parts = record.location.split("?")[0].rstrip("/").split("/")
        if len(parts) >= 4 and parts[-2] == "_history":
            return "/".join(parts[-4:])
        if len(parts) >= 2:
            return "/".join(parts[-2:])
    if record.resource_type and record.resource_id:
        version = f"/_history/{record.version}" if record.version else ""
        return f"{record.resource_type}/{record.resource_id}{version}"
    return None


_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


def _patient_id(value: str, bare_ok: bool) -> str | None:
    """The id in `Patient/x` or `http://.../Patient/x` (or a bare `x` where only a patient fits);
    None for what is no FHIR id (the query itself is on the event, whole)."""
    value = value.strip()
    if "/" not in value:
        return value if bare_ok and _ID.fullmatch(value) else None
    parts = value.split("/")
    if len(parts) >= 2 and parts[-2] == "Patient" and _ID.fullmatch(parts[-1]):
        return parts[-1]
    return None


def patients_of(record: AccessRecord) -> list[str]:
    """The patients a request concerns: from its path, its search parameters or what it read."""
    found: list[str] = []
    if record.resource_type == "Patient" and record.resource_id:
        found.append(record.resource_id)
    if record.compartment == "Patient" and record.compartment_id:
        found.append(record.compartment_id)
    if record.query:
        for name, value in parse_qsl(record.query, keep_blank_values=True):
            base, _, modifier = name.partition(":")
            if base == "_id" and record.resource_type == "Patient" and not record.resource_id:
                found.extend(v.strip() for v in value.split(",") if _ID.fullmatch(v.strip()))  # Patient?_id=a,b
            elif base in ("patient", "subject") and modifier in ("", "Patient"):
                for one in value.split(","):
                    pid = _patient_id(one, bare_ok=base == "patient" or modifier == "Patient")
                    if pid:
                        found.append(pid)
    if record.body and record.interaction in _SINGLE and record.status < 300 and record.resource_type != "Patient":
        try:
            body = orjson.loads(record.body)
        except orjson.JSONDecodeError:
            body = None
        if isinstance(body, dict):
            for key in _PATIENT_KEYS:
                ref = body.get(key)
                if isinstance(ref, dict) and isinstance(ref.get("reference"), str):
                    pid = _patient_id(ref["reference"], bare_ok=False)
                    if pid:
                        found.append(pid)
    return list(dict.fromkeys(found))


def _agent(record: AccessRecord) -> dict[str, Any]:
    agent: dict[str, Any] = {
        "type": {"coding": [{"system": _DCM, "code": "110153", "display": "Source Role ID"}]},
        "requestor": True}
    if record.client is None:
        why = "no valid access token" if record.auth_on else "auth off"
        agent["who"] = {"display": f"unauthenticated ({why})"}
        agent["name"] = f"unauthenticated ({why})"
    elif record.user is not None:
        # A person: named by their provider (issuer as the system, their subject as the value),
        # typed as a human user (BALP's user agent), and their site as a client's.
        agent["type"] = {"coding": [{"system": _ROLE_TYPE, "code": "humanuser", "display": "human user"}]}
        agent["who"] = {"identifier": {"system": record.user[0], "value": record.user[1]},
                        "display": record.client}
    else:
        agent["who"] = {"identifier": {"system": CLIENT_SYSTEM, "value": record.client},
                        "display": record.client}
    if record.client is not None:
        agent["name"] = f"{record.client} ({'site ' + record.site if record.site else 'all sites'})"
        if record.site:
            agent["role"] = [{"coding": [{"system": SITE_SYSTEM, "code": record.site}], "text": f"site {record.site}"}]
    if record.remote:
        agent["network"] = {"address": record.remote, "type": "2"}  # 2: an IP address
    return agent


def _entities(record: AccessRecord) -> list[dict[str, Any]]:
    entities: list[dict[str, Any]] = []
    patients = patients_of(record)
    target = _target(record)
    if target:
        # A patient itself (unversioned) is the patient entity; any other target, a versioned
        # Patient/x/_history/n included, is the resource acted on, and its patient comes apart.
        is_patient = target.startswith("Patient/") and target.count("/") == 1
        entities.append({
            "what": {"reference": target},
            "type": {"system": _ENTITY_TYPE, "code": "1" if is_patient else "2"},
            "role": {"system": _ROLE, "code": "1" if is_patient else "4"}})
        if is_patient:
            patients = [p for p in patients if p != target.split("/")[1]]
        elif target.startswith("Patient/"):
            patients = list(dict.fromkeys([target.split("/")[1], *patients]))
    if record.query and (target is None or record.interaction not in _SINGLE):
        entities.append({
            "type": {"system": _ENTITY_TYPE, "code": "2"}, "role": {"system": _ROLE, "code": "24"},  # 24: query
            "description": record.path or "(base)",
            "query": base64.b64encode(record.query.encode()).decode()})
    elif target is None:
        entities.append({"type": {"system": _ENTITY_TYPE, "code": "2"}, "description": record.path or "(base)"})
    entities.extend({"what": {"reference": f"Patient/{pid}"}, "type": {"system": _ENTITY_TYPE, "code": "1"},
                     "role": {"system": _ROLE, "code": "1"}} for pid in patients)
    return entities


def audit_event(record: AccessRecord, observer: str, event_id: str | None = None) -> dict[str, Any]:
    """The AuditEvent of one request; `observer` names this server (its base URL or host).
    The same record and id make the same event (a journal written again changes nothing)."""
    code, text = _outcome(record)
    event: dict[str, Any] = {
        "resourceType": "AuditEvent", "id": event_id or str(uuid.uuid4()),
        "type": _EVENT_TYPE, "action": _action(record), "recorded": _instant(record.time),
        "outcome": code, "outcomeDesc": text, "agent": [_agent(record)],
        "source": {"site": observer, "observer": {"display": f"ucmsc-fhir-adapter at {observer}"},
                   "type": [{"system": _SOURCE_TYPE, "code": "4", "display": "Application Server"}]},
        "entity": _entities(record)}
    subtype = _subtype(record)
    if subtype:
        event["subtype"] = subtype
    return _sanitised(event)


def minimal_event(event: dict[str, Any]) -> dict[str, Any]:
    """The event without what the request supplied (what it named, the reason of its outcome):
    stored when the whole event is refused, so that the access itself is still on the trail."""
    kept = {k: v for k, v in event.items() if k not in ("entity", "outcomeDesc")}
    return {**kept, "outcomeDesc": "the details of this request could not be stored"}


# What a request may carry that no JSON store holds as text: NUL (PostgreSQL's jsonb and text
# refuse it), the other C0 controls, and lone surrogates (not UTF-8 at all).
_UNSTORABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff]")


def _sanitised(node: Any) -> Any:
    if isinstance(node, str):
        return _UNSTORABLE.sub("\ufffd", node) if _UNSTORABLE.search(node) else node
    if isinstance(node, dict):
        return {k: _sanitised(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_sanitised(v) for v in node]
    return node
