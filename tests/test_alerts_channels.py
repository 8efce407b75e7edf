"""Alert channel formats and error mapping (connectors.alert_channels), against local receivers."""
from __future__ import annotations

import pytest

from connectors.alert_channels import send, slack_payload
from connectors.base import NotFound, Permanent, RateLimited, Transient, Unauthorized
from integration.alerts import AlertMessage
from matrix_config.schema import AlertChannel
from tests.support.alert_receivers import HttpReceiver

MESSAGE = AlertMessage(alert_id="zendesk:1:breach", event="breach", title="[L3] Ticket 1: SLA breach at L3",
                       text='Ticket 1 "<!channel> checkout & login down" is at L3', vendor="zendesk", ticket_id="1",
                       ticket_url="https://acme.zendesk.com/agent/tickets/1", level="L3", level_name="Senior",
                       owner="Senior engineering")


def test_slack_text_cannot_mention_the_channel_or_forge_a_link():
    payload = slack_payload(MESSAGE)
    assert "<!channel>" not in payload["text"]
    assert payload["blocks"][1]["text"]["text"] == (
        'Ticket 1 "&lt;!channel&gt; checkout &amp; login down" is at L3\n'
        "<https://acme.zendesk.com/agent/tickets/1|Open ticket 1>")


@pytest.fixture
def receiver():
    receiver = HttpReceiver()
    yield receiver
    receiver.close()


@pytest.mark.parametrize("status, error", [(500, Transient), (503, Transient), (429, RateLimited),
                                           (401, Unauthorized), (403, Unauthorized), (404, NotFound),
                                           (410, NotFound), (400, Permanent)])
def test_http_answers_map_to_the_connector_errors(receiver, status, error):
    receiver.script = [status]
    channel = AlertChannel(teams={"webhook_url_env": "HOOK_URL"}, timeout_seconds=2)
    with pytest.raises(error) as raised:
        send("ops_teams", channel, MESSAGE, environ={"HOOK_URL": receiver.url("/workflows/abc?sig=s3cr3t-signature")})
    assert str(raised.value).startswith(f"channel 'ops_teams': HTTP {status}")
    assert "s3cr3t" not in str(raised.value)
    if error is RateLimited:
        assert raised.value.retry_after == 1.0


@pytest.mark.parametrize("reply, error", [("451 4.3.0 mailbox busy, try later", Transient),
                                          ("554 5.7.1 message refused", Permanent)])
def test_smtp_replies_map_to_the_connector_errors(reply, error):
    from tests.support.alert_receivers import SmtpReceiver

    smtp = SmtpReceiver("bot@acme.example", "smtp-pass-123").start()
    try:
        smtp.data_replies = [reply]
        channel = AlertChannel(email={"host": "127.0.0.1", "port": smtp.port, "security": "none",
                                      "username": "bot@acme.example", "password_env": "MAIL_PASSWORD",
                                      "sender": "bot@acme.example", "to": ["leads@acme.example"]})
        environ = {"MAIL_PASSWORD": "smtp-pass-123"}
        with pytest.raises(error) as raised:
            send("leads_mail", channel, MESSAGE, environ=environ)
        assert str(raised.value).startswith(f"channel 'leads_mail': SMTP {reply[:3]}")
        send("leads_mail", channel, MESSAGE, environ=environ)  # the next attempt goes through
        assert [m["Subject"] for m in smtp.messages] == ["[L3] Ticket 1: SLA breach at L3"]
    finally:
        smtp.close()


@pytest.mark.parametrize("echo", [b"bad hook {path}", b"bad hook url=https%3A%2F%2Fhost{quoted_path}"])
def test_a_receiver_quoting_the_webhook_path_back_does_not_leak_it(receiver, echo):
    receiver.script = [400]
    receiver.error_body = echo
    channel = AlertChannel(slack={"webhook_url_env": "HOOK_URL"}, timeout_seconds=2)
    with pytest.raises(Permanent) as raised:
        send("ops_slack", channel, MESSAGE, environ={"HOOK_URL": receiver.url("/services/T01/B02/xoxb-secret-path-99")})
    assert "xoxb-secret-path-99" not in str(raised.value) and "bad hook" in str(raised.value)
