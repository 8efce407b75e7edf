"""Zendesk SLA policy sync: plan from the matrix, apply against an in-memory account, confirm by re-reading."""
from __future__ import annotations

import json

import pytest

from connectors.ratelimit import TokenBucket
from connectors.retry import RetryPolicy
from connectors.zendesk.client import ZendeskClient
from connectors.zendesk.settings import ZendeskSettings
from connectors.zendesk.sla import SlaConfigError, apply_plan, list_policies, plan, sync
from matrix_config.loader import load_matrix
from matrix_config.schema import Matrix
from tests.support.openapi_check import validate_request
from tests.support.zendesk_fake import load_fixture, validated_fake_zendesk

EXAMPLE = "matrix_config/examples/enterprise.yaml"


def _sla_cli(*args: str) -> int:
    """`escalation sla ...` run as a user would; its stdout and stderr are passed on (capsys reads them)."""
    import sys

    from click.testing import CliRunner

    from cli.main import cli

    result = CliRunner().invoke(cli, ["sla", *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    return result.exit_code


def example(**sla_overrides) -> Matrix:
    data = load_matrix(EXAMPLE).matrix.model_dump(mode="json")
    data["vendors"]["zendesk"]["sla"].update(sla_overrides)
    return Matrix.model_validate(data)


def quiet_data() -> dict:
    """The example matrix without anything the service posts publicly on its own: no entry replies, no
    data requests, update cadences as internal reminders. Only agents can make the first public reply."""
    data = load_matrix(EXAMPLE).matrix.model_dump(mode="json")
    for level in data["levels"]:
        level["on_enter"]["reply"] = None
        level["data_request"] = None
        level["required_data"] = []
        if level.get("update_cadence"):
            level["update_cadence"]["mode"] = "remind"
    return data


def metrics_by_level(found) -> dict[str, set[str]]:
    return {policy["title"].split()[1]: {m["metric"] for m in policy["policy_metrics"]} for policy in found.desired}


@pytest.fixture
def fake():
    with validated_fake_zendesk() as zendesk:
        yield zendesk


@pytest.fixture
def client(fake) -> ZendeskClient:
    settings = ZendeskSettings(_env_file=None, subdomain="acme", email="bot@acme.example", api_token="t0k3n")
    return ZendeskClient(settings, rate_limiter=TokenBucket(10_000), retry_policy=RetryPolicy(sleep=lambda s: None))


def writes(fake) -> list[tuple[str, str]]:
    return [(method, path) for method, path, _ in fake.writes]


# ---------------------------------------------------------------------------------------- plan
def test_plan_from_the_example_matrix():
    result = plan(example(), [])
    assert [item.action for item in result.items] == ["create"] * 4
    l2 = result.items[1].policy
    assert l2["title"] == "[matrix] L2 Product specialists"
    assert l2["filter"] == {"all": [{"field": "current_tags", "operator": "includes", "value": "esc_l2"}], "any": []}
    by_metric = {(m["priority"], m["metric"]): m["target"] for m in l2["policy_metrics"]}
    # Every example level posts an entry reply: no first_reply_time anywhere (it would measure the service).
    assert by_metric == {
        **{(p, "periodic_update_time"): 480 for p in ("low", "normal", "high", "urgent")},  # every 8h
        **{(p, "requester_wait_time"): 3 * 24 * 60 for p in ("low", "normal", "high", "urgent")},  # 3d
    }
    assert all(m["business_hours"] is True for m in l2["policy_metrics"])
    assert any("diagnose and interim_fix" in note for note in result.notes)
    [omitted] = [note for note in result.notes if "first_reply_time is left out" in note]
    assert "levels L1, L2, L3, L4" in omitted and "entry reply" in omitted and "service's own clocks" in omitted
    [hours] = [note for note in result.notes if "business_hours" in note]
    assert "account's business-hours schedule" in hours and "mirror the matrix calendar" in hours


def test_plan_honours_metric_choices():
    result = plan(example(update_metric="next_reply_time", resolve_metric="total_resolution_time",
                          business_hours=False), [])
    metrics = {m["metric"] for m in result.items[0].policy["policy_metrics"]}
    assert metrics == {"next_reply_time", "total_resolution_time"}
    assert not any(m["business_hours"] for m in result.items[0].policy["policy_metrics"])
    assert not any("business_hours" in note for note in result.notes)


def test_first_reply_time_only_where_agents_reply_first():
    data = quiet_data()
    found = plan(Matrix.model_validate(data), [])
    assert all("first_reply_time" in metrics for metrics in metrics_by_level(found).values())
    l2 = {(m["priority"], m["metric"]): m["target"] for m in found.desired[1]["policy_metrics"]}
    assert l2[("urgent", "first_reply_time")] == 30
    assert any(note.startswith("first_reply_time is once per ticket") for note in found.notes)
    assert not any("left out" in note for note in found.notes)

    # An entry reply at L3: a ticket at L3 or above may already carry the service's public comment.
    data["levels"][2]["on_enter"]["reply"] = "l3_incident"
    by_level = metrics_by_level(plan(Matrix.model_validate(data), []))
    assert ["first_reply_time" in by_level[level] for level in ("L1", "L2", "L3", "L4")] == [True, True, False, False]

    # A status update sent at L1 precedes everything above it.
    data["levels"][2]["on_enter"]["reply"] = None
    data["levels"][0]["update_cadence"]["mode"] = "send"
    data["levels"][0]["update_cadence"]["template"] = "status_update"
    assert not any("first_reply_time" in m for m in metrics_by_level(plan(Matrix.model_validate(data), [])).values())

    # A data request is posted while the ticket still waits below the gated level: no level measures agents.
    data = quiet_data()
    data["levels"][3]["required_data"] = ["account_id"]
    data["levels"][3]["data_request"] = "data_request"
    found = plan(Matrix.model_validate(data), [])
    assert not any("first_reply_time" in m for m in metrics_by_level(found).values())
    assert any("data request" in note and "left out" in note for note in found.notes)
    # A data_request template without required_data is never sent.
    data["levels"][3]["required_data"] = []
    assert all("first_reply_time" in m for m in metrics_by_level(plan(Matrix.model_validate(data), [])).values())


def test_plan_needs_a_level_marker():
    data = load_matrix(EXAMPLE).matrix.model_dump(mode="json")
    data["fields"]["level"]["zendesk"] = None
    with pytest.raises(SlaConfigError, match="fields.level.zendesk"):
        plan(Matrix.model_validate(data), [])


def test_plan_json_and_text_render(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    for name in ("ZENDESK_SUBDOMAIN", "ZENDESK_BASE_URL", "ZENDESK_EMAIL", "ZENDESK_API_TOKEN", "ZENDESK_OAUTH_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    from pathlib import Path

    matrix_path = str(Path(__file__).resolve().parent.parent / EXAMPLE)
    assert _sla_cli("plan", "--format", "json", matrix_path) == 0
    data = json.loads(capsys.readouterr().out)
    assert [item["action"] for item in data["items"]] == ["create"] * 4
    assert any("no Zendesk credentials" in note for note in data["notes"])
    assert _sla_cli("plan", matrix_path) == 0
    assert "+ create  '[matrix] L1 Frontline'" in capsys.readouterr().out
    assert _sla_cli("apply", matrix_path) == 2
    assert "credentials missing" in capsys.readouterr().err


# --------------------------------------------------------------------------------------- apply
def test_apply_creates_then_replan_is_empty_and_reapply_writes_nothing(fake, client):
    matrix = example()
    result = apply_plan(client, plan(matrix, list_policies(client)))
    assert result.confirmed and result.writes == 4
    assert [p["title"] for p in sorted(fake.policies, key=lambda p: p["position"])] == [
        "[matrix] L1 Frontline", "[matrix] L2 Product specialists", "[matrix] L3 Senior engineering",
        "[matrix] L4 Leadership"]
    before = len(fake.writes)
    again = plan(matrix, list_policies(client))
    assert again.empty and "No changes" in again.render()
    assert apply_plan(client, again).writes == 0 and len(fake.writes) == before


def test_unmanaged_policy_survives_and_managed_go_first(fake, client):
    fake.policies = load_fixture("sla_policies_unmanaged.json")["sla_policies"]
    unmanaged_before = json.loads(json.dumps(fake.policies[0]))
    matrix = example(position="first")
    found = plan(matrix, list_policies(client))
    assert [i.action for i in found.items] == ["create"] * 4 + ["reorder"]
    result = apply_plan(client, found)
    assert result.confirmed
    ordered = sorted(fake.policies, key=lambda p: p["position"])
    assert [p["title"] for p in ordered][-1] == "Gold customers"
    survivor = ordered[-1]
    assert {k: survivor[k] for k in ("id", "title", "filter", "policy_metrics", "description")} == \
        {k: unmanaged_before[k] for k in ("id", "title", "filter", "policy_metrics", "description")}
    assert writes(fake)[-1] == ("PUT", "/api/v2/slas/policies/reorder")
    assert not any(path.endswith(str(survivor["id"])) for _, path in writes(fake))


def test_position_last_needs_no_reorder_after_unmanaged(fake, client):
    fake.policies = load_fixture("sla_policies_unmanaged.json")["sla_policies"]
    found = plan(example(position="last"), list_policies(client))
    assert [i.action for i in found.items] == ["create"] * 4  # created policies are appended at the end
    assert apply_plan(client, found).confirmed
    assert sorted(fake.policies, key=lambda p: p["position"])[0]["title"] == "Gold customers"


def test_agent_reordering_is_put_back(fake, client):
    matrix = example()
    apply_plan(client, plan(matrix, list_policies(client)))
    fake.policies[0]["position"], fake.policies[3]["position"] = 4, 1  # someone dragged L4 to the top
    found = plan(matrix, list_policies(client))
    assert [i.action for i in found.items] == ["reorder"]
    before = len(fake.writes)
    assert apply_plan(client, found).confirmed
    assert writes(fake)[before:] == [("PUT", "/api/v2/slas/policies/reorder")]


def test_a_changed_target_is_exactly_one_update(fake, client):
    apply_plan(client, plan(example(), list_policies(client)))
    data = load_matrix(EXAMPLE).matrix.model_dump(mode="json")
    data["levels"][1]["sla"]["resolve"] = "2d"
    changed = Matrix.model_validate(data)
    found = plan(changed, list_policies(client))
    assert [(i.action, i.title) for i in found.items] == [("update", "[matrix] L2 Product specialists")]
    assert list(found.items[0].diff) == ["policy_metrics"]
    assert "requester_wait_time=2880m" in found.render()
    before = len(fake.writes)
    assert apply_plan(client, found).confirmed
    assert len(fake.writes) == before + 1 and fake.writes[-1][0] == "PUT"


def test_acknowledge_target_of_a_level_with_an_entry_reply_changes_nothing_in_zendesk(fake, client):
    apply_plan(client, plan(example(), list_policies(client)))
    data = load_matrix(EXAMPLE).matrix.model_dump(mode="json")
    data["levels"][1]["sla"]["acknowledge"] = "20m"
    assert plan(Matrix.model_validate(data), list_policies(client)).empty


def test_quiet_matrix_round_trip_and_acknowledge_change_is_one_update(fake, client):
    data = quiet_data()
    assert apply_plan(client, plan(Matrix.model_validate(data), list_policies(client))).confirmed
    assert all(any(m["metric"] == "first_reply_time" for m in p["policy_metrics"]) for p in fake.policies)
    assert plan(Matrix.model_validate(data), list_policies(client)).empty
    data["levels"][1]["sla"]["acknowledge"] = "20m"
    found = plan(Matrix.model_validate(data), list_policies(client))
    assert [(i.action, i.title) for i in found.items] == [("update", "[matrix] L2 Product specialists")]
    assert "first_reply_time=20m" in found.render()
    before = len(fake.writes)
    assert apply_plan(client, found).confirmed and len(fake.writes) == before + 1


def test_adding_an_entry_reply_takes_first_reply_time_off_those_levels(fake, client):
    data = quiet_data()
    apply_plan(client, plan(Matrix.model_validate(data), list_policies(client)))
    data["levels"][2]["on_enter"]["reply"] = "l3_incident"
    found = plan(Matrix.model_validate(data), list_policies(client))
    assert [(i.action, i.title) for i in found.items] == [
        ("update", "[matrix] L3 Senior engineering"), ("update", "[matrix] L4 Leadership")]
    assert all("first_reply_time" not in str(i.diff["policy_metrics"]["to"]) for i in found.items)
    assert apply_plan(client, found).confirmed
    assert plan(Matrix.model_validate(data), list_policies(client)).empty


def test_removed_level_deletes_only_its_managed_policy(fake, client):
    fake.policies = load_fixture("sla_policies_unmanaged.json")["sla_policies"]
    apply_plan(client, plan(example(), list_policies(client)))
    data = load_matrix(EXAMPLE).matrix.model_dump(mode="json")
    data["levels"] = data["levels"][:3]
    data["levels"][2]["on_breach"] = {}
    found = plan(Matrix.model_validate(data), list_policies(client))
    assert [(i.action, i.title) for i in found.items] == [("delete", "[matrix] L4 Leadership")]
    assert apply_plan(client, found).confirmed
    assert sorted(p["title"] for p in fake.policies) == [
        "Gold customers", "[matrix] L1 Frontline", "[matrix] L2 Product specialists", "[matrix] L3 Senior engineering"]


def test_hand_edited_managed_policy_is_restored(fake, client):
    matrix = example()
    apply_plan(client, plan(matrix, list_policies(client)))
    fake.policies[2]["filter"]["all"][0]["value"] = "something_else"
    found = plan(matrix, list_policies(client))
    assert [(i.action, list(i.diff)) for i in found.items] == [("update", ["filter"])]


def test_sync_applies_a_non_empty_plan_then_finds_nothing(fake, client):
    matrix = example()
    found = sync(matrix, client)
    assert [i.action for i in found.items] == ["create"] * 4 and len(fake.policies) == 4
    assert sync(matrix, client).empty


def _periodic_sla_sync(monkeypatch, tmp_path, **settings_values) -> None:
    """The worker's periodic job (service.periodic.sla_sync) with ZENDESK_* pointing at the fake account."""
    from pathlib import Path

    from service.settings import Settings
    from service.periodic import sla_sync
    from service.runtime import Runtime

    monkeypatch.chdir(tmp_path)
    for name, value in (("ZENDESK_SUBDOMAIN", "acme"), ("ZENDESK_EMAIL", "bot@acme.example"),
                        ("ZENDESK_API_TOKEN", "t0k3n")):
        monkeypatch.setenv(name, value)
    settings = Settings(DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite'}", QUEUE_URL="memory://",
                        MATRIX_PATH=str(Path(__file__).resolve().parent.parent / EXAMPLE), **settings_values)
    runtime = Runtime(settings, huey=None)
    try:
        sla_sync(runtime)
    finally:
        runtime.db.dispose()


def test_the_periodic_job_syncs_only_with_sla_sync_auto(fake, monkeypatch, tmp_path):
    monkeypatch.delenv("SLA_SYNC", raising=False)
    _periodic_sla_sync(monkeypatch, tmp_path, _env_file=None)
    assert fake.writes == []
    _periodic_sla_sync(monkeypatch, tmp_path, _env_file=None, SLA_SYNC="auto")
    assert len(fake.policies) == 4


def test_sla_sync_set_in_a_dotenv_file_is_honoured(fake, monkeypatch, tmp_path):
    monkeypatch.delenv("SLA_SYNC", raising=False)
    (tmp_path / ".env").write_text("SLA_SYNC=auto\n", encoding="utf-8")
    _periodic_sla_sync(monkeypatch, tmp_path)
    assert len(fake.policies) == 4


def test_sync_follows_the_settings_it_is_given(fake, monkeypatch, tmp_path):
    monkeypatch.setenv("SLA_SYNC", "auto")
    _periodic_sla_sync(monkeypatch, tmp_path, _env_file=None, SLA_SYNC="off")
    assert fake.writes == []


@pytest.mark.parametrize("word", ["on", "true", "1"])
def test_an_sla_sync_word_other_than_off_or_auto_is_refused(word, capsys, monkeypatch, tmp_path):
    # It used to mean "off" without a word; now start-up (and the sla commands) name the setting.
    from pathlib import Path

    from pydantic import ValidationError

    from service.settings import Settings

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SLA_SYNC", word)
    with pytest.raises(ValidationError, match="SLA_SYNC") as raised:
        Settings(_env_file=None)
    assert raised.value.errors()[0]["msg"] == "Input should be 'off' or 'auto'"
    assert _sla_cli("plan", str(Path(__file__).resolve().parent.parent / EXAMPLE)) == 2
    err = capsys.readouterr().err
    assert "invalid configuration: SLA_SYNC: Input should be 'off' or 'auto'" in err and f"'{word}'" not in err


# ------------------------------------------------------------------------- the spec check itself
POLICY = {"title": "[matrix] L2", "filter": {"all": [{"field": "current_tags", "operator": "includes",
                                                      "value": "esc_l2"}], "any": []},
          "policy_metrics": [{"priority": "high", "metric": "first_reply_time", "target": 60, "business_hours": True}]}


@pytest.mark.parametrize("policy, fragment", [
    ({**POLICY, "id": 25}, "Tried to write read-only property"),
    ({"title": "[matrix] L2"}, "'filter' is a required property"),
    ({**POLICY, "titel": "x"}, "sla_policy.titel: not declared in the zendesk spec"),
    ({**POLICY, "policy_metrics": [{**POLICY["policy_metrics"][0], "target": "60"}]}, "is not of type 'integer'"),
    ({**POLICY, "policy_metrics": [{**POLICY["policy_metrics"][0], "busines_hours": True}]},
     r"sla_policy.policy_metrics\[0\].busines_hours: not declared"),
])
def test_policy_bodies_are_checked_against_the_spec_policy_object(policy, fragment):
    validate_request("zendesk", "POST", "/api/v2/slas/policies", {"sla_policy": POLICY})
    validate_request("zendesk", "PUT", "/api/v2/slas/policies/25", {"sla_policy": POLICY})
    for method, path in (("POST", "/api/v2/slas/policies"), ("PUT", "/api/v2/slas/policies/25")):
        with pytest.raises(AssertionError, match=fragment):
            validate_request("zendesk", method, path, {"sla_policy": policy})
    with pytest.raises(AssertionError, match="'sla_policy' is a required property"):
        validate_request("zendesk", "POST", "/api/v2/slas/policies", POLICY)


def test_reorder_bodies_are_checked():
    validate_request("zendesk", "PUT", "/api/v2/slas/policies/reorder", {"sla_policy_ids": [3, 1]})
    with pytest.raises(AssertionError, match="is not of type 'integer'"):
        validate_request("zendesk", "PUT", "/api/v2/slas/policies/reorder", {"sla_policy_ids": ["3"]})


def test_plan_and_apply_refuse_incomplete_credentials(capsys, monkeypatch, tmp_path):
    from pathlib import Path

    monkeypatch.chdir(tmp_path)
    for name in ("ZENDESK_BASE_URL", "ZENDESK_API_TOKEN", "ZENDESK_OAUTH_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ZENDESK_SUBDOMAIN", "acme")
    monkeypatch.setenv("ZENDESK_EMAIL", "bot@acme.example")
    matrix_path = str(Path(__file__).resolve().parent.parent / EXAMPLE)
    assert _sla_cli("plan", matrix_path) == 2
    assert "missing ZENDESK_API_TOKEN or ZENDESK_OAUTH_TOKEN" in capsys.readouterr().err
    assert _sla_cli("apply", matrix_path) == 2
    assert "Zendesk settings incomplete" in capsys.readouterr().err


def test_sla_apply_prints_the_plan_then_what_the_re_read_confirmed(fake, capsys, monkeypatch, tmp_path):
    from pathlib import Path

    monkeypatch.chdir(tmp_path)
    for name, value in (("ZENDESK_SUBDOMAIN", "acme"), ("ZENDESK_EMAIL", "bot@acme.example"),
                        ("ZENDESK_API_TOKEN", "t0k3n"), ("DATABASE_URL", f"sqlite:///{tmp_path / 'db.sqlite'}")):
        monkeypatch.setenv(name, value)
    matrix_path = str(Path(__file__).resolve().parent.parent / EXAMPLE)
    assert _sla_cli("apply", matrix_path) == 0
    out = capsys.readouterr().out
    assert "+ create  '[matrix] L1 Frontline'" in out
    assert out.strip().endswith("Applied 4 change(s); re-read confirms the policies match the matrix.")
    assert len(fake.policies) == 4
    assert _sla_cli("apply", matrix_path) == 0
    assert capsys.readouterr().out.startswith("No changes: Zendesk SLA policies match the matrix.")
