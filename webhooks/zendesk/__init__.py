"""Zendesk webhooks: `payloads` turns bodies into neutral events, `view` is the Flask route."""
