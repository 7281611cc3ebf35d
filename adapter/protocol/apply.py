"""PlanDefinition/$apply for the protocol (https://hl7.org/fhir/R4/plandefinition-operation-apply.html
and "Applying a PlanDefinition" in https://hl7.org/fhir/R4/plandefinition.html).

Given a protocol PlanDefinition, a child (subject) and the date of the first injection (start),
each action's definition is applied, down to the ActivityDefinitions, so that the answer needs
no definition resolved to be read. A CarePlan holds, contained:
- a RequestGroup: one action per visit (the visit's title, its target day in timingTiming.event
  and its window in timingTiming.repeat.boundsPeriod, the protocol's relatedAction), nesting one
  action per activity of the visit's order set, whose resource is that activity's request;
- the requests (activities.py): a MedicationRequest per injection (the product, the route and the
  dose per kg in dosageInstruction) and a ServiceRequest per assessment, each dated.
CarePlan.activity[0] references the RequestGroup, as R4's $apply makes it; each further activity
references one request, in visit order, so a client that lists the activities sees every dated
request without walking the group. R4 $apply creates nothing; with persist=true the CarePlan is
stored (id `{plan}-{patient}`, so applying again updates it) and the child's ResearchSubject is
created or updated (status on-study, the arm of this plan, period.start = start).
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import date
from typing import Any

from adapter.fhir import jsonio
from adapter.fhir.outcomes import FhirError, Issue, bad_request, not_found
from adapter.fhir.search import encode_cursor, parse_search
from adapter.protocol.activities import activity_request
from adapter.protocol.schedule import DatedVisit, schedule
from adapter.store.repository import Repository

__all__ = ["apply_plan", "read_json", "search_all", "study_and_arm", "arm_protocol", "resource_id", "definition",
           "GROUP_ID"]

GROUP_ID = "schedule"  # the contained RequestGroup's id


def read_json(repo: Repository, resource_type: str, resource_id: str) -> dict[str, Any]:
    stored = repo.read(resource_type, resource_id)
    return jsonio.parse(stored.data or b"{}")  # type: ignore[no-any-return]


def search_all(repo: Repository, resource_type: str, params: list[tuple[str, str]]) -> Iterator[dict[str, Any]]:
    """Every match of a search, page after page."""
    cursor: tuple[Any, ...] | None = None
    while True:
        extra: list[tuple[str, str]] = [("_cursor", encode_cursor(cursor))] if cursor else []
        page = repo.search(parse_search(resource_type, params + [("_count", "1000"), ("_total", "none")] + extra))
        for entry in page.entries:
            yield jsonio.parse(entry.data or b"{}")
        cursor = page.next_cursor
        if cursor is None:
            return


def definition(repo: Repository, canonical: str, rtype: str, cache: dict[Any, Any]) -> dict[str, Any]:
    """The stored definition a canonical names (by its url; the protocol stores one version)."""
    url = canonical.split("|")[0]
    if url not in cache:
        found = next(search_all(repo, rtype, [("url", url)]), None)
        if found is None:
            raise bad_request(f"{rtype} {url} is not stored; load the protocol definitions first")
        cache[url] = found
    return cache[url]  # type: ignore[no-any-return]


def _reference_id(reference: str, expected: str) -> str:
    parts = reference.strip().split("/")
    if len(parts) != 2 or parts[0] != expected or not parts[1]:
        raise bad_request(f"subject must be a reference like {expected}/ID, not {reference!r}", "subject")
    return parts[1]


def arm_protocol(study: dict[str, Any], arm: str) -> str:
    """The id of the protocol PlanDefinition of a study's arm (ResearchStudy.protocol and .arm
    are written in the same order by the builder); a 422 when the study does not say."""
    arms = [a.get("name") for a in study.get("arm") or []]
    protocols = [p.get("reference", "") for p in study.get("protocol") or []]
    if arm not in arms or arms.index(arm) >= len(protocols) \
            or not protocols[arms.index(arm)].startswith("PlanDefinition/"):
        raise FhirError(422, [Issue("processing", f"ResearchStudy/{study.get('id')} names no protocol "
                                    f"PlanDefinition for arm {arm!r}", "ResearchStudy.protocol")])
    return protocols[arms.index(arm)].split("/", 1)[1]


def resource_id(*parts: str) -> str:
    """An id made of parts, hashed when it would pass FHIR's 64 characters (never cut: two
    children must not share a CarePlan).

    Examples:
        >>> resource_id("ucmsc-cp-arm-1", "demo-child-01")
        'ucmsc-cp-arm-1-demo-child-01'
    """
    joined = "-".join(parts)
    if len(joined) <= 64:
        return joined
    return f"{parts[0][:40]}-{hashlib.sha256(joined.encode()).hexdigest()[:23]}"


def study_and_arm(repo: Repository, plan_id: str) -> tuple[dict[str, Any], str]:
    """The ResearchStudy whose protocol is this PlanDefinition, and the arm it implements
    (ResearchStudy.protocol and .arm are written in the same order by the builder)."""
    for study in search_all(repo, "ResearchStudy", [("protocol", f"PlanDefinition/{plan_id}")]):
        refs = [p.get("reference") for p in study.get("protocol", [])]
        arms = study.get("arm") or []
        index = refs.index(f"PlanDefinition/{plan_id}")
        if index < len(arms):
            return study, arms[index]["name"]
    raise bad_request(f"PlanDefinition/{plan_id} is not the protocol of any ResearchStudy arm")


def _default_start(repo: Repository, patient_id: str) -> tuple[date, str]:
    """No start given: the child's ResearchSubject period.start, else today; and which it was."""
    for subject in search_all(repo, "ResearchSubject", [("individual", f"Patient/{patient_id}")]):
        try:
            start = date.fromisoformat(str((subject.get("period") or {}).get("start", ""))[:10])
        except ValueError:
            continue
        return start, f"ResearchSubject/{subject['id']} period.start"
    return date.today(), "today: the child has no ResearchSubject with a period.start"


def _visit_action(repo: Repository, dated: DatedVisit, action: dict[str, Any], patient: dict[str, Any],
                  cache: dict[Any, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The RequestGroup action of one dated visit and the requests it nests: the visit's order
    set applied, each of its actions' ActivityDefinition made the request it defines."""
    timing = {"event": [dated.target.isoformat()],
              "repeat": {"boundsPeriod": {"start": dated.earliest.isoformat(), "end": dated.latest.isoformat()}}}
    order_set = definition(repo, action["definitionCanonical"], "PlanDefinition", cache)
    requests, nested = [], []
    for i, step in enumerate(order_set.get("action", [])):
        if not step.get("definitionCanonical"):
            raise FhirError(422, [Issue("processing", f"PlanDefinition/{order_set.get('id')}: a visit's "
                                        "activity needs a definitionCanonical", f"PlanDefinition.action[{i}]")])
        activity = definition(repo, step["definitionCanonical"], "ActivityDefinition", cache)
        request = activity_request(activity, resource_id(dated.visit.id, str(step.get("id") or i)), patient, timing)
        requests.append(request)
        nested.append({"id": request["id"], "title": step.get("title") or activity.get("title") or request["id"],
                       "resource": {"reference": f"#{request['id']}"}})
    if not nested:  # R4 rqg-1: a RequestGroup action has a resource or actions
        raise FhirError(422, [Issue("processing", f"PlanDefinition/{order_set.get('id')}: a visit without "
                                    "actions cannot be applied", "PlanDefinition.action")])
    # the protocol's timing relations, without the window extension (its context is PlanDefinition):
    # the window itself is in the timing
    related = [{k: r[k] for k in ("actionId", "relationship", "offsetDuration") if k in r}
               for r in action.get("relatedAction", [])]
    grouped: dict[str, Any] = {"id": dated.visit.id, "title": dated.visit.title, "timingTiming": timing}
    if related:
        grouped["relatedAction"] = related
    grouped["action"] = nested
    return grouped, requests


def apply_plan(repo: Repository, plan_id: str, subject: str, start: date | None,
               persist: bool = False) -> dict[str, Any]:
    plan = read_json(repo, "PlanDefinition", plan_id)
    types = {c.get("code") for c in (plan.get("type") or {}).get("coding", [])}
    if "clinical-protocol" not in types:
        raise bad_request(f"PlanDefinition/{plan_id} is not a clinical-protocol PlanDefinition")
    patient_id = _reference_id(subject, "Patient")
    try:
        repo.read("Patient", patient_id)
    except FhirError as exc:  # 404 or 410, said as the subject's problem
        raise not_found(f"subject Patient/{patient_id} is not known") from exc
    source = None
    if start is None:
        start, source = _default_start(repo, patient_id)
    visits = schedule(plan, start)
    actions = {a["id"]: a for a in plan.get("action", [])}
    canonical = f"{plan['url']}|{plan['version']}" if plan.get("version") else plan["url"]
    patient = {"reference": f"Patient/{patient_id}"}
    cache: dict[Any, Any] = {}
    grouped, requests, shown = [], [], []
    for dated in visits:
        action, made = _visit_action(repo, dated, actions[dated.visit.id], patient, cache)
        grouped.append(action)
        requests += made
        shown += [f"{dated.visit.title}: {step['title']}" for step in action["action"]]
    group = {"resourceType": "RequestGroup", "id": GROUP_ID, "instantiatesCanonical": [canonical],
             "status": "active", "intent": "plan", "subject": patient, "action": grouped}
    title = plan.get("title", plan_id)
    care_plan: dict[str, Any] = {
        "resourceType": "CarePlan", "id": resource_id(plan_id, patient_id), "contained": [group, *requests],
        "instantiatesCanonical": [canonical], "status": "active", "intent": "plan", "title": title,
        "subject": patient,
        "period": {"start": min(v.earliest for v in visits).isoformat(),
                   "end": max(v.latest for v in visits).isoformat()},
        "activity": [{"reference": {"reference": f"#{GROUP_ID}", "display": title}}] + [
            {"reference": {"reference": f"#{request['id']}", "display": display}}
            for request, display in zip(requests, shown, strict=True)],
    }
    if source:  # whoever reads the plan must know where its dates come from
        care_plan["note"] = [{"text": f"No start was given: the first injection is planned on "
                                      f"{start.isoformat()}, from {source}."}]
    if persist:
        study, arm = study_and_arm(repo, plan_id)
        stored = repo.update(care_plan)
        care_plan = jsonio.parse(stored.data or b"{}")
        repo.update({"resourceType": "ResearchSubject", "id": resource_id(study["id"], patient_id),
                     "status": "on-study", "period": {"start": start.isoformat()},
                     "study": {"reference": f"ResearchStudy/{study['id']}"},
                     "individual": {"reference": f"Patient/{patient_id}"}, "assignedArm": arm})
    return care_plan
