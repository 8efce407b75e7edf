"""The spec checker must catch what a connector could get wrong, or its passes mean nothing."""
import pytest

from tests.support.openapi_check import validate_request


def test_a_well_formed_zendesk_ticket_update_passes():
    validate_request("zendesk", "PUT", "/api/v2/tickets/123", {
        "ticket": {"priority": "high", "group_id": 42, "additional_tags": ["esc_l2"], "remove_tags": ["esc_l1"],
                   "custom_fields": [{"id": 1, "value": "x"}], "safe_update": True,
                   "updated_stamp": "2026-01-01T00:00:00Z", "comment": {"body": "hi", "public": True}}})


@pytest.mark.parametrize("body, fragment", [
    ({"ticket": {"priority": "superhigh"}}, "'superhigh' is not one of"),
    ({"ticket": {"prority": "high"}}, "ticket.prority: not declared in the zendesk spec"),
])
def test_a_malformed_zendesk_ticket_update_is_rejected(body, fragment):
    with pytest.raises(AssertionError, match=fragment):
        validate_request("zendesk", "PUT", "/api/v2/tickets/123", body)


def test_an_unknown_endpoint_is_rejected():
    with pytest.raises(AssertionError, match="no such operation"):
        validate_request("zendesk", "PUT", "/api/v2/tickets/123/escalate", {})


def test_jsm_comment_and_jira_edit_are_checked():
    validate_request("jsm", "POST", "/rest/servicedeskapi/request/SUP-1/comment", {"body": "hi", "public": False})
    with pytest.raises(AssertionError):
        validate_request("jsm", "POST", "/rest/servicedeskapi/request/SUP-1/comment", {"body": "hi", "public": "no"})
    validate_request("jira", "PUT", "/rest/api/3/issue/SUP-1", {"fields": {"priority": {"name": "High"}},
                                                                "update": {"labels": [{"add": "esc-l2"}]}})
