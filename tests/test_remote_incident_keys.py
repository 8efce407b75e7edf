"""`escalation validate --remote` for the incident keys (issue 11): each role's field can hold a person (Jira: a
user picker or text; Zendesk: a user lookup, text or dropdown field), and on Jira the corrective-actions project
(`incident.actions.project`) exists with the configured issue type, and the link type exists. One line per problem.
Jira requests validated against the platform spec, Zendesk ones through the fake account."""
from __future__ import annotations

import pytest

from connectors.jira.remote import check_remote as check_jira
from connectors.zendesk.connector import ZendeskConnector
from connectors.zendesk.remote import check_remote as check_zendesk
from connectors.ratelimit import TokenBucket
from connectors.retry import RetryPolicy
from matrix_config.schema import Matrix
from tests.support.jira_helpers import ENV, SITE, enterprise_matrix, recorded, validated_jira_http
from tests.support.zendesk_fake import validated_fake_zendesk, zendesk_settings

IC_FIELD = 360000100007


@pytest.fixture
def jira(monkeypatch):
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    with validated_jira_http() as rsps:
        options = recorded("level_options.json")
        options["values"].append({"id": "10304", "value": "L4", "disabled": False})
        rsps.get(f"{SITE}/rest/api/3/priority/search", json=recorded("priorities.json"))
        rsps.get(f"{SITE}/rest/api/3/field/customfield_10108/context", json=recorded("field_contexts.json"))
        rsps.get(f"{SITE}/rest/api/3/field/customfield_10108/context/10208/option", json=options)
        groups = recorded("groups_bulk.json")
        groups["values"].append({"groupId": "00000000-0000-4000-8000-000000000006", "name": "support-leadership"})
        groups["total"] += 1
        rsps.get(f"{SITE}/rest/api/3/group/bulk", json=groups)
        rsps.get(f"{SITE}/rest/api/3/issueLinkType", json=recorded("issue_link_types.json"))
        yield rsps


def with_actions(**actions) -> Matrix:
    data = enterprise_matrix().model_dump(mode="json")
    data["incident"]["actions"].update(actions)
    return Matrix.model_validate(data)


def test_jira_site_with_the_project_issue_type_link_type_and_person_fields_has_no_problem(jira):
    jira.get(f"{SITE}/rest/api/3/field", json=recorded("fields.json"))
    jira.get(f"{SITE}/rest/api/3/project/OPS", json=recorded("project_OPS.json"))
    assert check_jira(enterprise_matrix()) == []
    assert [c.request.url for c in jira.calls if "/project/" in c.request.url] == [f"{SITE}/rest/api/3/project/OPS"]


def test_jira_names_a_missing_project_a_missing_link_type_and_a_role_field_that_holds_no_person(jira):
    fields = recorded("fields.json")
    for field in fields:
        if field["id"] == "customfield_10106":  # the incident commander's field, made a number field
            field["schema"] = {"type": "number", "custom": "com.atlassian.jira.plugin.system.customfieldtypes:float",
                               "customId": 10106}
    jira.get(f"{SITE}/rest/api/3/field", json=fields)
    jira.get(f"{SITE}/rest/api/3/project/POST", status=404,
             json={"errorMessages": ["No project could be found with key 'POST'."], "errors": {}})
    assert check_jira(with_actions(project="POST", link_type="Caused by")) == [
        "fields.incident_commander.jira.field: role incident_commander names a person, but field customfield_10106 "
        "holds number values (use a user picker)",
        "incident.actions.project: Jira has no project 'POST' (or the API user may not browse it)",
        "incident.actions.link_type: Jira has no issue link type 'Caused by'",
    ]


def test_jira_names_an_issue_type_the_project_lacks(jira):
    jira.get(f"{SITE}/rest/api/3/field", json=recorded("fields.json"))
    jira.get(f"{SITE}/rest/api/3/project/OPS", json=recorded("project_OPS.json"))
    assert check_jira(with_actions(issue_type="Corrective action")) == [
        "incident.actions.issue_type: project OPS has no issue type 'Corrective action' (it has: bug, task)"]


def zendesk_connector(matrix: Matrix) -> ZendeskConnector:
    return ZendeskConnector(zendesk_settings(), matrix, rate_limiter=TokenBucket(10_000),
                            retry_policy=RetryPolicy(sleep=lambda s: None))


def test_zendesk_role_fields_must_hold_a_person():
    matrix = enterprise_matrix()
    with validated_fake_zendesk() as fake:
        assert check_zendesk(matrix, connector=zendesk_connector(matrix)) == []  # text fields name people
        ic = next(f for f in fake.ticket_fields if f["id"] == IC_FIELD)
        ic.update(type="lookup", relationship_target_type="zen:user")
        assert check_zendesk(matrix, connector=zendesk_connector(matrix)) == []
        ic.update(relationship_target_type="zen:organization")
        contact = next(f for f in fake.ticket_fields if f["id"] == IC_FIELD + 1)
        contact.update(type="date")
        assert check_zendesk(matrix, connector=zendesk_connector(matrix)) == [
            f"fields.incident_commander.zendesk.custom_field: role incident_commander names a person, but ticket "
            f"field {IC_FIELD} (Incident commander) is a lookup of zen:organization (use a user lookup field)",
            f"fields.customer_contact.zendesk.custom_field: role customer_contact names a person, but ticket "
            f"field {IC_FIELD + 1} (Customer contact) is a date field (use a user lookup field)",
        ]
