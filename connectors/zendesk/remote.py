"""`escalation validate --remote zendesk`: every group, ticket field, option and organization/user field the
matrix names must exist in the account."""
from __future__ import annotations

from connectors.base import ConfigurationError, ConnectorError
from connectors.zendesk.client import ZendeskClient
from connectors.zendesk.connector import ZendeskConnector, build_from_env
from matrix_config.schema import LEVEL_ATTRIBUTE, Matrix


# ------------------------------------------------------------------------------ remote validation
def check_remote(matrix: Matrix, *, connector: ZendeskConnector | None = None) -> list[str]:
    """`escalation validate --remote zendesk`: every group id, custom field id and option value the
    matrix names must exist in the account. One message per missing item; [] when all exist."""
    if connector is None:
        try:
            connector = build_from_env(matrix)
        except ConfigurationError as error:
            return [f"zendesk: {error}"]
        if connector is None:
            return ["zendesk: no credentials (set ZENDESK_SUBDOMAIN or ZENDESK_BASE_URL, and ZENDESK_EMAIL + "
                    "ZENDESK_API_TOKEN or ZENDESK_OAUTH_TOKEN) - cannot check the account"]
    client = connector.client
    errors: list[str] = []
    try:
        group_ids = {int(g["id"]) for g in client.get_all("/api/v2/groups", "groups") if not g.get("deleted")}
        fields = {int(f["id"]): f for f in client.get_all("/api/v2/ticket_fields", "ticket_fields")}
    except ConnectorError as error:
        return [f"zendesk: cannot read the account's groups and ticket fields: {error}"]
    for key, mapping in matrix.groups.items():
        if mapping.zendesk is not None and int(mapping.zendesk) not in group_ids:
            errors.append(f"groups.{key}.zendesk: group {mapping.zendesk} does not exist in Zendesk")
    for name, mapping in matrix.fields.items():
        zd = mapping.zendesk
        if zd is None or zd.custom_field is None:
            continue
        remote = fields.get(int(zd.custom_field))
        if remote is None:
            errors.append(f"fields.{name}.zendesk.custom_field: ticket field {zd.custom_field} does not exist in Zendesk")
            continue
        if remote.get("active") is False:
            errors.append(f"fields.{name}.zendesk.custom_field: ticket field {zd.custom_field} is inactive in Zendesk")
        options = remote.get("custom_field_options")
        if options is None:
            continue
        known = {str(o.get("value")) for o in options}
        for matrix_value, option in zd.values.items():
            if str(option) not in known:
                errors.append(f"fields.{name}.zendesk.values.{matrix_value}: option {option!r} does not exist "
                              f"on ticket field {zd.custom_field} ({remote.get('title', '')})")
        if name == LEVEL_ATTRIBUTE:
            # The service writes every level id (through the values map) into this dropdown.
            for level in matrix.levels:
                if level.id not in {str(k) for k in zd.values} and str(level.id) not in known:
                    errors.append(f"fields.level.zendesk: level {level.id} has no option on ticket field "
                                  f"{zd.custom_field} ({remote.get('title', '')}); add it or map it under `values`")
    errors.extend(_role_field_problems(matrix, fields))
    errors.extend(_customer_field_problems(client, matrix))
    return errors


# Ticket field types that can name a person: a user lookup field (the service shows the user's name), free
# text, or a dropdown of people.
PERSON_FIELD_TYPES = ("lookup", "text", "tagger")


def _role_field_problems(matrix: Matrix, fields: dict[int, dict]) -> list[str]:
    """Every incident role (a level's `roles:`) kept in a ticket field must be able to hold a person: a lookup
    field must look up users (`zen:user`), not organizations, tickets or custom objects."""
    errors: list[str] = []
    for name in dict.fromkeys(name for level in matrix.levels for name in level.roles):
        mapping = matrix.fields.get(name)
        zd = mapping.zendesk if mapping is not None else None
        remote = fields.get(int(zd.custom_field)) if zd is not None and zd.custom_field is not None else None
        if remote is None:
            continue  # missing fields are reported above
        kind, target = remote.get("type"), remote.get("relationship_target_type")
        if kind not in PERSON_FIELD_TYPES or (kind == "lookup" and target not in (None, "zen:user")):
            shown = f"a lookup of {target}" if kind == "lookup" else f"a {kind} field"
            errors.append(f"fields.{name}.zendesk.custom_field: role {name} names a person, but ticket field "
                          f"{zd.custom_field} ({remote.get('title', '')}) is {shown} (use a user lookup field)")
    return errors


def _customer_field_problems(client: ZendeskClient, matrix: Matrix) -> list[str]:
    """Every `organization_field` / `user_field` key the matrix reads must be an active custom field of
    the account's organizations / users."""
    errors: list[str] = []
    for source, collection, what in (("organization_field", "organization_fields", "organization field"),
                                     ("user_field", "user_fields", "user field")):
        mapped = {name: getattr(m.zendesk, source) for name, m in matrix.fields.items()
                  if m.zendesk is not None and getattr(m.zendesk, source) is not None}
        if not mapped:
            continue
        try:
            remote = {str(f.get("key")): f for f in client.get_all(f"/api/v2/{collection}", collection)}
        except ConnectorError as error:
            errors.append(f"zendesk: cannot read the account's {what}s: {error}")
            continue
        for name, key in mapped.items():
            found = remote.get(key)
            if found is None:
                known = ", ".join(sorted(remote)) or "none"
                errors.append(f"fields.{name}.zendesk.{source}: {what} {key!r} does not exist in Zendesk "
                              f"(its {what}s: {known})")
            elif found.get("active") is False:
                errors.append(f"fields.{name}.zendesk.{source}: {what} {key!r} is inactive in Zendesk")
    return errors
