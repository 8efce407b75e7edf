"""Helpdesk connectors: one module per vendor behind `connectors.base.Connector`."""
