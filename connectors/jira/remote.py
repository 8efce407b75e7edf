"""`escalation validate --remote jira`: everything the matrix names on the Jira side that the site lacks."""
from __future__ import annotations

from typing import Any

from connectors.base import ConfigurationError, ConnectorError, NotFound, Permanent
from connectors.jira.connector import JiraConnector, build_from_env, jql_quote
from matrix_config.schema import LEVEL_ATTRIBUTE, Matrix


# ------------------------------------------------------------------------------------------ remote validation
def _paged_values(connector: JiraConnector, path: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Jira's startAt/maxResults/isLast pages."""
    values: list[dict[str, Any]] = []
    start = 0
    while True:
        page = connector.client.get_json(path, {**(params or {}), "startAt": start, "maxResults": 50})
        batch = page.get("values") or []
        values.extend(batch)
        if page.get("isLast", True) or not batch:
            return values
        start += len(batch)


def _field_options(connector: JiraConnector, field_id: str) -> set[str]:
    options: set[str] = set()
    for context in _paged_values(connector, connector.client.platform(f"field/{field_id}/context")):
        for option in _paged_values(connector, connector.client.platform(f"field/{field_id}/context/{context['id']}/option")):
            if option.get("value") is not None:
                options.add(str(option["value"]).lower())
    return options


def remote_problems(connector: JiraConnector, matrix: Matrix) -> list[str]:
    """Everything the matrix names on the Jira side that the site does not have, one line per item."""
    problems: list[str] = []
    jira_vendor = matrix.vendors.jira

    priorities = {str(p.get("name", "")).lower() for p in _paged_values(connector, connector.client.platform("priority/search"))}
    for neutral, name in jira_vendor.priorities.items():
        if name.lower() not in priorities:
            problems.append(f"vendors.jira.priorities.{neutral}: Jira has no priority named {name!r}")

    fields = {f["id"]: f for f in connector.all_fields() if f.get("id")}

    def field_problem(where: str, field_id: str) -> bool:
        if field_id not in fields:
            problems.append(f"{where}: Jira has no field {field_id!r}")
            return True
        return False

    option_kinds = ("option", "option-with-child")
    for name, mapping in matrix.fields.items():
        jira = mapping.jira
        if jira is None or jira.field is None or field_problem(f"fields.{name}.jira.field", jira.field):
            continue
        schema = fields[jira.field].get("schema") or {}
        is_option = schema.get("type") in option_kinds or (
            schema.get("type") == "array" and schema.get("items") == "option")
        if not is_option:
            continue
        wanted = list(jira.values.values())
        if name == LEVEL_ATTRIBUTE:
            wanted += [jira.values.get(level.id, level.id) for level in matrix.levels]
        if not wanted:
            continue
        options = _field_options(connector, jira.field)
        for value in dict.fromkeys(str(v) for v in wanted):
            if value.lower() not in options:
                problems.append(f"fields.{name}.jira: field {jira.field} has no option {value!r}")

    problems.extend(_incident_problems(connector, matrix, fields))

    settings = connector.settings
    for env_name, field_id in (("JIRA_ORGANIZATION_FIELD", settings.organization_field),
                               ("JIRA_REQUEST_TYPE_FIELD", settings.request_type_field)):
        if field_id:
            field_problem(env_name, field_id)
    # JSM organization properties have no site-wide schema (each organization holds its own keys), so
    # only the way to the organizations can be checked.
    for name, mapping in matrix.fields.items():
        if mapping.jira is not None and mapping.jira.organization_property is not None \
                and not settings.organization_field:
            problems.append(f"fields.{name}.jira.organization_property: JIRA_ORGANIZATION_FIELD is not set, so "
                            "the request's organizations (and their properties) cannot be read")

    group_ids = {key: g.jira for key, g in matrix.groups.items() if g.jira}
    for key, group in matrix.groups.items():
        if not group.jira:
            problems.append(f"groups.{key}.jira: no Jira id given")
    group_field = jira_vendor.group_field
    kind = jira_vendor.group_field_kind
    if not group_field and group_ids:
        problems.append("vendors.jira.group_field: not set; owner groups cannot be assigned on Jira")
    if group_field and field_problem("vendors.jira.group_field", group_field):
        group_field = None
    if kind == "group" and group_ids:
        names = sorted(set(group_ids.values()))
        found: set[str] = set()
        for start in range(0, len(names), 50):
            batch = names[start:start + 50]
            found |= {str(g.get("name", "")).lower()
                      for g in _paged_values(connector, connector.client.platform("group/bulk"), {"groupName": batch})}
        for key, name in group_ids.items():
            if name.lower() not in found:
                problems.append(f"groups.{key}.jira: Jira has no group {name!r}")
    elif kind == "select" and group_field and group_ids:
        options = _field_options(connector, group_field)
        for key, value in group_ids.items():
            if value.lower() not in options:
                problems.append(f"groups.{key}.jira: field {group_field} has no option {value!r}")
    elif kind == "team" and group_field and group_ids:
        # No Jira REST API lists Atlassian teams; JQL rejects (400) a Team value that does not exist.
        number = group_field.removeprefix("customfield_")
        for key, team_id in group_ids.items():
            try:
                next(iter(connector.search(f"cf[{number}] = {jql_quote(team_id)}", ["id"], page_size=1)), None)
            except Permanent as exc:
                problems.append(f"groups.{key}.jira: team {team_id!r} not accepted by Jira ({exc})")
    return problems


# Field value kinds that can name a person: a user picker (its displayName is shown) or free text.
PERSON_KINDS = ("user", "string")


def _incident_problems(connector: JiraConnector, matrix: Matrix, fields: dict[str, dict[str, Any]]) -> list[str]:
    """Incident keys: every role's field can hold a person, and the corrective-actions project
    (`incident.actions`) exists with its issue type, and the link type exists."""
    problems: list[str] = []
    roles = dict.fromkeys(name for level in matrix.levels for name in level.roles)
    for name in roles:
        mapping = matrix.fields.get(name)
        field_id = mapping.jira.field if mapping is not None and mapping.jira is not None else None
        if field_id is None or field_id not in fields:
            continue  # unmapped roles are the loader's business, missing fields are reported above
        schema = fields[field_id].get("schema") or {}
        kind = schema.get("items") if schema.get("type") == "array" else schema.get("type")
        if kind not in PERSON_KINDS:
            problems.append(f"fields.{name}.jira.field: role {name} names a person, but field {field_id} "
                            f"holds {kind or 'unknown'} values (use a user picker)")
    actions = matrix.incident.actions if matrix.incident is not None else None
    if actions is None:
        return problems
    client = connector.client
    try:
        project = client.get_json(client.platform(f"project/{actions.project}")) or {}
    except NotFound:
        problems.append(f"incident.actions.project: Jira has no project {actions.project!r} "
                        "(or the API user may not browse it)")
    else:
        types = {str(t.get("name", "")).lower() for t in project.get("issueTypes") or []}
        if types and actions.issue_type.lower() not in types:
            problems.append(f"incident.actions.issue_type: project {actions.project} has no issue type "
                            f"{actions.issue_type!r} (it has: {', '.join(sorted(types))})")
    link_types = {str(t.get("name", "")).lower()
                  for t in (client.get_json(client.platform("issueLinkType")) or {}).get("issueLinkTypes") or []}
    if actions.link_type.lower() not in link_types:
        problems.append(f"incident.actions.link_type: Jira has no issue link type {actions.link_type!r}")
    return problems


def check_remote(matrix: Matrix, *, connector: JiraConnector | None = None) -> list[str]:
    """`escalation validate --remote jira`: one error line per missing priority, field, option, group or team."""
    try:
        connector = connector or build_from_env(matrix)
    except ConfigurationError as exc:
        return [f"jira: {exc}"]
    if connector is None:
        return ["jira: set JIRA_URL, JIRA_EMAIL and JIRA_API_TOKEN to validate against Jira"]
    try:
        return remote_problems(connector, matrix)
    except ConnectorError as exc:
        return [f"jira: remote validation stopped: {exc}"]
