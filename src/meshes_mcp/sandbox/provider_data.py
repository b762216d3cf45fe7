"""Deterministic data of the simulated providers: live action data and destination field catalogues.

Live action data (`GET /connections/{id}/actions`) is generated from the connection id, so a given
connection always shows the same lists, tags, channels, … and two connections of the same type
differ a little (like two real accounts). The collections served are exactly the data-item `key`s
the catalogue's actions use. A few items are fixed because the docs show them: HubSpot lists
"5" Newsletter Subscribers and "8" Active Subscriptions, and the `lifecycle_stage` property.

Item shapes (undocumented beyond `id` + `name`, chosen to look like each provider's own ids):
simple collections `{id, name, …}`; properties `{id, key, name, type, options[{key, value, label}]}`.
"""

from __future__ import annotations

import hashlib
import json
import random
import string
import uuid
from typing import Any

from meshes_mcp.sandbox.clock import iso

_ALNUM_UPPER = string.ascii_uppercase + string.digits
_ALNUM = string.ascii_letters + string.digits

# Name pools per collection; each connection takes a deterministic sample.
_POOLS: dict[str, list[str]] = {
    "lists": [
        "Newsletter",
        "Product Updates",
        "Trial Users",
        "Webinar Attendees",
        "Beta Testers",
        "Customers",
        "Churned Customers",
        "Enterprise Leads",
    ],
    "tags": ["new-user", "vip", "trial", "churn-risk", "beta", "enterprise", "onboarded"],
    "groups": ["Newsletter", "Customers", "Trial Users", "Beta Testers", "Event Attendees"],
    "segments": ["All Contacts", "Active Users", "Trial Users", "Paying Customers", "Inactive 30 days"],
    "templates": ["Welcome Email", "Password Reset", "Invoice Receipt", "Trial Ending", "Weekly Digest"],
    "campaigns": [
        "Spring Webinar 2026",
        "Newsletter Signups",
        "Product Launch",
        "Trade Show Leads",
        "Partner Referrals",
    ],
    "meetings": ["Onboarding Office Hours", "Customer Kickoff", "Weekly Product Q&A", "Implementation Review"],
    "webinars": ["Product Demo Webinar", "Quarterly Roadmap Briefing", "Getting Started Live"],
    "channels": ["general", "signups", "sales-alerts", "product-updates", "support", "announcements"],
    "labels": ["Hot lead", "Warm lead", "Cold lead", "Customer", "Partner"],
}

# Properties with options, per integration (advanced data items).
_PROPERTIES: dict[str, list[tuple[str, str, list[tuple[str, str]]]]] = {
    "hubspot": [
        (
            "lifecycle_stage",
            "Lifecycle Stage",
            [
                ("subscriber", "Subscriber"),
                ("lead", "Lead"),
                ("marketingqualifiedlead", "Marketing Qualified Lead"),
                ("salesqualifiedlead", "Sales Qualified Lead"),
                ("opportunity", "Opportunity"),
                ("customer", "Customer"),
                ("evangelist", "Evangelist"),
            ],
        ),
        (
            "hs_lead_status",
            "Lead Status",
            [
                ("NEW", "New"),
                ("OPEN", "Open"),
                ("IN_PROGRESS", "In Progress"),
                ("CONNECTED", "Connected"),
                ("UNQUALIFIED", "Unqualified"),
            ],
        ),
    ],
    "salesforce": [
        (
            "LeadSource",
            "Lead Source",
            [
                ("Web", "Web"),
                ("Phone Inquiry", "Phone Inquiry"),
                ("Partner Referral", "Partner Referral"),
                ("Purchased List", "Purchased List"),
                ("Other", "Other"),
            ],
        ),
        ("Level__c", "Level", [("Primary", "Primary"), ("Secondary", "Secondary"), ("Tertiary", "Tertiary")]),
    ],
    "pipedrive": [
        ("customer_tier", "Customer Tier", [("gold", "Gold"), ("silver", "Silver"), ("bronze", "Bronze")]),
        ("lead_source", "Lead Source", [("website", "Website"), ("referral", "Referral"), ("event", "Event")]),
    ],
}

_PLAN_PROPERTY = ("plan", "Plan", [("free", "Free"), ("pro", "Pro"), ("enterprise", "Enterprise")])


def _rng(connection_id: str, collection: str) -> random.Random:
    seed = hashlib.sha256(f"{connection_id}:{collection}".encode()).digest()
    return random.Random(int.from_bytes(seed[:8], "big"))


def _make_id(kind: str, collection: str, rng: random.Random, index: int) -> str:
    """Ids shaped like the provider's own (Slack C…, SendGrid d-…, Salesforce 701…, snowflakes, …)."""
    if kind == "slack":
        return "C" + "".join(rng.choices(_ALNUM_UPPER, k=10))
    if kind == "discord":
        return str(rng.randint(10**17, 10**19 - 1))
    if kind == "sendgrid":
        return "d-" + f"{rng.getrandbits(128):032x}"
    if kind == "salesforce":
        return "701" + "".join(rng.choices(_ALNUM, k=15))
    if kind == "mailchimp":
        return f"{rng.getrandbits(40):010x}"
    if kind == "resend":
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))
    if kind == "zoom":
        return str(rng.randint(10**10, 10**11 - 1))
    if kind == "mailerlite":
        return str(rng.randint(10**16, 10**17 - 1))
    if kind == "aweber":
        return str(rng.randint(1_000_000, 9_999_999))
    # hubspot, activecampaign, intercom, pipedrive: small integers, unique within the collection.
    return str(10 + index * 7 + rng.randint(0, 6))


def _created(rng: random.Random) -> str:
    return iso(1_767_225_600 + rng.randint(0, 120 * 86_400) + rng.random())  # somewhere in early 2026


def _simple(integration_type: str, collection: str, connection_id: str) -> list[dict[str, Any]]:
    rng = _rng(connection_id, collection)
    items: list[dict[str, Any]] = []
    if integration_type == "hubspot" and collection == "lists":
        items += [
            {"id": "5", "name": "Newsletter Subscribers", "createdAt": "2026-02-20T05:17:49.969Z"},
            {"id": "8", "name": "Active Subscriptions", "createdAt": "2026-02-20T05:18:02.113Z"},
        ]
    pool = _POOLS.get(collection, [f"{collection.rstrip('s').title()} {n}" for n in range(1, 6)])
    taken = {i["name"] for i in items}
    names = [n for n in rng.sample(pool, k=min(len(pool), 3 + rng.randint(0, 1))) if n not in taken]
    for index, name in enumerate(names):
        item_id = _make_id(integration_type, collection, rng, index)
        while any(i["id"] == item_id for i in items) or item_id in ("5", "8"):
            item_id = _make_id(integration_type, collection, rng, index + 13)
        item: dict[str, Any] = {"id": item_id, "name": name, "createdAt": _created(rng)}
        if collection == "channels":
            item["type"] = "announcement" if name == "announcements" else "text"
            item["is_private"] = False
        elif collection in ("meetings", "webinars"):
            item["topic"] = name
            item["start_time"] = iso(1_780_000_000 + rng.randint(0, 60 * 86_400))
        elif collection == "templates":
            item["subject"] = name
        items.append(item)
    return items


def _properties(integration_type: str, connection_id: str) -> list[dict[str, Any]]:
    rng = _rng(connection_id, "properties")
    props = [*list(_PROPERTIES.get(integration_type, [])), _PLAN_PROPERTY]
    out = []
    for key, name, options in props:
        # Pipedrive's custom person fields are keyed by 40-hex hashes, with numeric option ids.
        prop_id = f"{rng.getrandbits(160):040x}" if integration_type == "pipedrive" else key
        opts = []
        for value, label in options:
            opt_value = str(rng.randint(10, 999)) if integration_type == "pipedrive" else value
            opts.append({"key": opt_value, "value": opt_value, "label": label})
        out.append({"id": prop_id, "key": prop_id, "name": name, "type": "enumeration", "options": opts})
    return out


def collections_of(integration: dict[str, Any]) -> dict[str, str]:
    """collection name → data-item kind (simple | advanced) over every action of the integration."""
    out: dict[str, str] = {}
    for action in integration.get("actions", {}).values():
        for item in action.get("data") or []:
            if item.get("kind") in ("simple", "advanced") and item.get("key"):
                out.setdefault(item["key"], item["kind"])
    return out


def action_data(integration: dict[str, Any], connection_id: str) -> dict[str, list[dict[str, Any]]]:
    """The live action data of a simulated connection: `{collection: [item, …]}`."""
    kind = integration["type"]
    data: dict[str, list[dict[str, Any]]] = {}
    for collection, item_kind in sorted(collections_of(integration).items()):
        if item_kind == "advanced" or collection == "properties":
            data[collection] = _properties(kind, connection_id)
        else:
            data[collection] = _simple(kind, collection, connection_id)
    return data


# -- destination field catalogues ------------------------------------------------------------------

# (key, label, type, format, required, default payload path)
_F = tuple[str, str, str, str | None, bool, str | None]
_EMAIL: _F = ("email", "Email", "string", "email", True, "email")
_FIELDS: dict[str, list[_F]] = {
    "activecampaign": [
        _EMAIL,
        ("firstName", "First Name", "string", None, False, "first_name"),
        ("lastName", "Last Name", "string", None, False, "last_name"),
        ("phone", "Phone", "string", "phone", False, "phone"),
    ],
    "aweber": [
        _EMAIL,
        ("name", "Name", "string", None, False, "name"),
        ("ip_address", "IP Address", "string", None, False, "ip_address"),
    ],
    "customer_io": [
        _EMAIL,
        ("userId", "User ID", "string", None, False, "id"),
        ("traits", "Traits", "object", None, False, None),
    ],
    "hubspot": [
        _EMAIL,
        ("firstname", "First Name", "string", None, False, "first_name"),
        ("lastname", "Last Name", "string", None, False, "last_name"),
        ("phone", "Phone Number", "string", "phone", False, "phone"),
        ("company", "Company Name", "string", None, False, "company"),
        ("website", "Website URL", "string", "url", False, "resource_url"),
    ],
    "intercom": [
        _EMAIL,
        ("external_id", "External ID", "string", None, False, "id"),
        ("name", "Name", "string", None, False, "name"),
        ("phone", "Phone", "string", "phone", False, "phone"),
    ],
    "mailchimp": [
        _EMAIL,
        ("ip_signup", "Signup IP", "string", None, False, "ip_address"),
        ("FNAME", "First Name", "string", None, False, "first_name"),
        ("LNAME", "Last Name", "string", None, False, "last_name"),
    ],
    "mailerlite": [
        _EMAIL,
        ("name", "First Name", "string", None, False, "first_name"),
        ("last_name", "Last Name", "string", None, False, "last_name"),
        ("phone", "Phone", "string", "phone", False, "phone"),
    ],
    "pipedrive": [
        _EMAIL,
        ("name", "Name", "string", None, False, "name"),
        ("phone", "Phone", "string", "phone", False, "phone"),
    ],
    "resend": [
        _EMAIL,
        ("firstName", "First Name", "string", None, False, "first_name"),
        ("lastName", "Last Name", "string", None, False, "last_name"),
        ("template_variables", "Template Variables", "object", None, False, None),
    ],
    "salesforce": [
        ("Email", "Email", "string", "email", True, "email"),
        ("FirstName", "First Name", "string", None, False, "first_name"),
        ("LastName", "Last Name", "string", None, False, "last_name"),
        ("Phone", "Business Phone", "string", "phone", False, "phone"),
    ],
    "sendgrid": [
        _EMAIL,
        ("name", "Recipient Name", "string", None, False, "name"),
        ("template_variables", "Template Variables", "object", None, False, None),
    ],
    "zoom": [
        _EMAIL,
        ("first_name", "First Name", "string", None, False, "first_name"),
        ("last_name", "Last Name", "string", None, False, "last_name"),
    ],
    # Slack and Discord post messages rendered from the payload: no contact fields to map.
    "slack": [],
    "discord": [],
}


def has_field_mapping(integration_type: str) -> bool:
    """Webhooks send the event as-is: no field catalogue and no default mapping (docs: no field mapping)."""
    return integration_type in _FIELDS


def field_defs(integration: dict[str, Any], connection_id: str) -> list[dict[str, Any]]:
    kind = integration["type"]
    out: list[dict[str, Any]] = []
    for key, label, ftype, fmt, required, source in _FIELDS.get(kind, []):
        constraints: dict[str, Any] = {"required": required}
        if fmt:
            constraints["format"] = fmt
        field: dict[str, Any] = {"key": key, "label": label, "type": ftype, "constraints": constraints}
        if source:
            field["provider_meta"] = {"suggested_source": source}
        out.append(field)
    # Picklist properties of the account are mappable enum fields too.
    if "properties" in collections_of(integration):
        for prop in _properties(kind, connection_id):
            out.append(
                {
                    "key": prop["key"],
                    "label": prop["name"],
                    "type": "enum",
                    "constraints": {"required": False, "allowed_values": [o["value"] for o in prop["options"]]},
                    "provider_meta": {"property_id": prop["id"]},
                }
            )
    return out


def catalog_version(fields: list[dict[str, Any]]) -> str:
    """A hash of the normalized field list, as the reference describes `catalog_version`."""
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


def generated_schema(fields: list[dict[str, Any]]) -> dict[str, Any]:
    """The mapping Meshes would propose before one is stored: each field with a well-known payload
    key is mapped from it (`email` ← `email`, `firstname` ← `first_name`, …)."""
    mapped = [
        {"dest": f["key"], "source": {"type": "path", "value": f["provider_meta"]["suggested_source"]}}
        for f in fields
        if (f.get("provider_meta") or {}).get("suggested_source")
    ]
    return {
        "schema_version": 1,
        "fields": mapped,
        "meta": {"name": "Default mapping", "notes": "Generated from the field catalogue"},
    }
