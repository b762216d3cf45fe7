"""The integration catalogue and the connection / rule metadata rules it drives."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from meshes_mcp.api.catalog import (
    DataItem,
    IntegrationSpec,
    describe_action,
    example_rule_metadata,
    is_loopback_url,
    load_catalog,
    validate_connection_metadata,
    validate_rule_metadata,
)
from meshes_mcp.api.models import INTEGRATION_TYPES
from meshes_mcp.api.problems import Problem

CANARY = "sk_live_CANARY"

HUBSPOT_ACTION_DATA = {
    "lists": [
        {"id": "5", "name": "Newsletter Subscribers", "createdAt": "2026-02-20T05:17:49.969Z"},
        {"id": "8", "name": "Active Subscriptions"},
    ],
    "properties": [
        {
            "id": "lifecycle_stage",
            "key": "lifecycle_stage",
            "name": "Lifecycle Stage",
            "options": [
                {"key": "lead", "value": "lead", "label": "Lead"},
                {"key": "customer", "value": "customer", "label": "Customer"},
            ],
        }
    ],
}


def spec(integration_type: str) -> IntegrationSpec:
    found = load_catalog().get(integration_type)
    assert found is not None
    return found


def by_param(problems: list[Problem]) -> dict[str, str]:
    return {p.param: p.msg for p in problems}


def conn(integration_type: str, metadata, **kwargs) -> dict[str, str]:
    return by_param(validate_connection_metadata(spec(integration_type), metadata, **kwargs))


def rule(integration_type: str, metadata, action_data=None) -> dict[str, str]:
    return by_param(validate_rule_metadata(spec(integration_type), metadata, action_data))


WEBHOOK = {"url": "https://example.com/hooks/meshes"}


# --- the catalogue ------------------------------------------------------------------------------


def test_embedded_catalogue_has_every_documented_type():
    catalog = load_catalog()
    assert sorted(catalog.types()) == sorted(INTEGRATION_TYPES)
    assert catalog.source == "embedded"
    assert catalog.get("nope") is None
    assert spec("hubspot").name == "HubSpot"
    assert spec("hubspot").is_oauth


def test_load_catalog_is_cached():
    assert load_catalog() is load_catalog()


def test_catalog_is_not_read_at_import_time():
    code = "import meshes_mcp.api.catalog as c; print(c.load_catalog.cache_info().currsize)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "0"


def test_records_are_api_shaped_copies():
    records = load_catalog().records()
    hubspot = next(r for r in records if r["type"] == "hubspot")
    assert set(hubspot) >= {"name", "type", "authentication", "actions"}
    assert hubspot["actions"]["add_to_list"]["fields"] == ["id"]
    hubspot["actions"].clear()
    assert "add_to_list" in next(r for r in load_catalog().records() if r["type"] == "hubspot")["actions"]


def test_typed_views_tolerate_unknown_keys_and_default_what_is_missing():
    item = DataItem.model_validate({"kind": "simple", "key": "lists", "future": 1})
    assert item.metadata_key == "id"
    assert item.is_required
    typed = DataItem.model_validate({"kind": "field", "key": "title"})
    assert typed.metadata_key == "title"
    assert not typed.is_required


# --- refreshed(): the live catalogue is authoritative, but partial --------------------------------


def test_refreshed_keeps_types_the_live_answer_lacks():
    live = load_catalog().refreshed([{"type": "webhook", "name": "Webhook", "authentication": {"type": "none"}}])
    assert live.source == "live"
    assert sorted(live.types()) == sorted(INTEGRATION_TYPES)
    assert live.get("hubspot") == load_catalog().get("hubspot")


def test_refreshed_live_values_win_and_missing_keys_are_filled_from_ours():
    live_webhook = {
        "type": "webhook",
        "name": "Webhooks",
        "brand_new_key": {"anything": True},
        "authentication": {"type": "none", "fields": [{"key": "url", "type": "text", "required": True}]},
    }
    webhook = load_catalog().refreshed([live_webhook]).get("webhook")
    assert webhook.name == "Webhooks"
    assert [f.key for f in webhook.authentication.fields] == ["url"]  # live field list wins
    assert "send_webhook" in webhook.actions  # live said nothing about actions: ours kept
    assert validate_connection_metadata(webhook, {"url": "https://x.example", "auth_scheme": "none"}) == [
        Problem("metadata.auth_scheme", "is not a Webhooks connection field; valid keys: url")
    ]
    record = next(r for r in load_catalog().refreshed([live_webhook]).records() if r["type"] == "webhook")
    assert record["brand_new_key"] == {"anything": True}


def test_refreshed_live_action_set_is_the_truth_and_borrows_missing_action_keys():
    live = [
        {"type": "hubspot", "authentication": {"type": "oauth"}, "actions": [{"key": "add_to_list", "label": "Add"}]}
    ]
    hubspot = load_catalog().refreshed(live).get("hubspot")
    assert list(hubspot.actions) == ["add_to_list"]
    assert hubspot.name == "HubSpot"  # missing name filled from ours
    assert hubspot.actions["add_to_list"].picks[0].key == "lists"  # `data` borrowed from ours
    assert validate_rule_metadata(hubspot, {"action": "update_property", "id": "x", "value": "y"})[0].msg.startswith(
        "is not an action of HubSpot; actions are add_to_list"
    )


def test_refreshed_adds_new_types_accepts_the_envelope_and_skips_garbage():
    envelope = {
        "count": 3,
        "records": [
            {"type": "linear", "name": "Linear", "authentication": {"type": "api_key"}, "actions": {}},
            {"name": "no type"},
            "not even an object",
            {"type": "hubspot", "authentication": "weird", "actions": 7},
        ],
    }
    live = load_catalog().refreshed(envelope)
    assert live.get("linear").name == "Linear"
    assert live.get("hubspot").authentication.type == "oauth"
    assert "update_property" in live.get("hubspot").actions
    assert len(live.types()) == len(INTEGRATION_TYPES) + 1


def test_refreshed_does_not_change_the_embedded_catalogue():
    load_catalog().refreshed([{"type": "webhook", "name": "Changed", "authentication": {"type": "none"}}])
    assert spec("webhook").name == "Webhook"


# --- connection metadata ------------------------------------------------------------------------


def test_oauth_integration_is_refused_with_the_dashboard_route():
    problems = validate_connection_metadata(spec("hubspot"), {})
    assert [p.param for p in problems] == ["type"]
    msg = problems[0].msg
    assert "OAuth" in msg
    assert "Meshes dashboard" in msg
    assert "Connections → New connection → HubSpot" in msg
    assert "list_connections" in msg


def test_oauth_update_is_not_refused():
    assert validate_connection_metadata(spec("slack"), {"team": "T1"}, for_update=True) == []


def test_api_key_integration_requires_its_fields():
    problems = conn("activecampaign", {})
    assert set(problems) == {"metadata.api_url", "metadata.api_key"}
    assert "API Key" in problems["metadata.api_key"]
    assert "Settings > Developer" in problems["metadata.api_key"]
    assert '"https://myaccount.api-us1.com"' in problems["metadata.api_url"]


def test_empty_string_counts_as_missing():
    assert conn("resend", {"api_key": ""}).keys() == {"metadata.api_key"}
    assert conn("resend", {"api_key": "re_123"}) == {}


def test_unknown_key_is_refused_listing_valid_keys():
    problems = conn("resend", {"api_key": "re_123", "api_token": "re_123"})
    assert problems == {
        "metadata.api_token": "is not a Resend connection field; valid keys: api_key (did you mean api_key?)"
    }


def test_values_must_be_strings():
    msg = conn("mailerlite", {"api_key": 12345})["metadata.api_key"]
    assert msg.startswith("must be a string")
    assert "integer" in msg


def test_select_value_must_be_an_option_value():
    msg = conn("webhook", WEBHOOK | {"http_method": "post"})["metadata.http_method"]
    assert 'must be one of "POST", "PUT", "PATCH"' in msg
    assert 'did you mean "POST"' in msg
    assert conn("webhook", WEBHOOK | {"http_method": "PATCH"}) == {}
    # a label is not a value: strict, but the value it stands for is suggested
    assert 'did you mean "basic"' in conn("webhook", WEBHOOK | {"auth_scheme": "Basic Auth"})["metadata.auth_scheme"]


def test_required_select_lists_its_values():
    msg = conn("customer_io", {"cdpApiKey": "k"})["metadata.region"]
    assert msg == 'is required: one of "us", "eu"'


def test_select_given_a_boolean_lists_the_string_values():
    msg = conn("webhook", WEBHOOK | {"skip_url_test": True})["metadata.skip_url_test"]
    assert '"false", "true"' in msg
    assert "boolean" in msg


def test_regex_field_must_match_and_shows_the_help_example():
    msg = conn("mailchimp", {"api_key": "k-us6", "data_center": "US-6"})["metadata.data_center"]
    assert "^[a-z]{2,4}[0-9]{1,3}$" in msg
    assert '"us6"' in msg
    assert conn("mailchimp", {"api_key": "k-us6", "data_center": "us6"}) == {}


# webhook dependsOn


def test_basic_auth_needs_username_and_password():
    problems = conn("webhook", WEBHOOK | {"auth_scheme": "basic"})
    assert set(problems) == {"metadata.auth_username", "metadata.auth_password"}
    assert 'when auth_scheme is "basic"' in problems["metadata.auth_username"]
    assert conn("webhook", WEBHOOK | {"auth_scheme": "basic", "auth_username": "u", "auth_password": "p"}) == {}


def test_bearer_token_with_auth_scheme_none_is_refused():
    msg = conn("webhook", WEBHOOK | {"auth_scheme": "none", "auth_token": "t0k"})["metadata.auth_token"]
    assert 'only used when auth_scheme is "bearer"' in msg
    assert '(it is "none")' in msg
    assert conn("webhook", WEBHOOK | {"auth_scheme": "bearer", "auth_token": "t0k"}) == {}


def test_dependent_field_without_its_controller_uses_the_default():
    msg = conn("webhook", WEBHOOK | {"auth_token": "t0k"})["metadata.auth_token"]
    assert 'defaults to "none"' in msg


def test_bearer_scheme_requires_the_token():
    assert set(conn("webhook", WEBHOOK | {"auth_scheme": "bearer"})) == {"metadata.auth_token"}


def test_signing_secret_depends_on_a_list_of_values():
    assert set(conn("webhook", WEBHOOK | {"signing_algorithm": "sha512"})) == {"metadata.signing_secret"}
    assert conn("webhook", WEBHOOK | {"signing_algorithm": "sha256", "signing_secret": "s"}) == {}
    msg = conn("webhook", WEBHOOK | {"signing_secret": "s"})["metadata.signing_secret"]
    assert '"sha256" or "sha512"' in msg


def test_empty_hidden_fields_are_ignored():
    assert conn("webhook", WEBHOOK | {"auth_scheme": "none", "auth_token": "", "auth_username": None}) == {}


# URLs


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/hooks/meshes",
        "https://example.com:8443/x?y=1",
        "http://127.0.0.1:8787/hook",
        "http://127.5.5.5/hook",
        "http://localhost:3000/hook",
        "http://[::1]:8080/hook",
    ],
)
def test_accepted_urls(url):
    assert conn("webhook", {"url": url}) == {}


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/hook",
        "http://10.0.0.1/hook",
        "ftp://example.com",
        "/hooks/meshes",
        "example.com",
        "https://",
    ],
)
def test_refused_urls(url):
    msg = conn("webhook", {"url": url})["metadata.url"]
    assert "https://" in msg
    assert '"https://example.com/hooks/meshes"' in msg
    assert "loopback" in msg


def test_url_rule_applies_to_every_url_field():
    assert "metadata.api_url" in conn("activecampaign", {"api_key": "k", "api_url": "http://acme.api-us1.com"})


@pytest.mark.parametrize(
    ("url", "loopback"),
    [
        ("http://127.0.0.1/x", True),
        ("http://127.255.0.1:9/x", True),
        ("http://localhost/x", True),
        ("http://LOCALHOST:80", True),
        ("http://[::1]/x", True),
        ("http://128.0.0.1/x", False),
        ("http://localhost.example.com/x", False),
        ("http://0.0.0.0/x", False),
        ("https://example.com", False),
        ("not a url", False),
        ("http://[::1/x", False),
    ],
)
def test_is_loopback_url(url, loopback):
    assert is_loopback_url(url) is loopback


# custom headers


@pytest.mark.parametrize("headers", [{"X-Team": "growth"}, '{"X-Team": "growth", "X-Env": "prod"}'])
def test_custom_headers_object_or_json_text(headers):
    assert conn("webhook", WEBHOOK | {"custom_headers": headers}) == {}


@pytest.mark.parametrize(
    ("headers", "words"),
    [
        ("not json", "JSON object"),
        ('["X-Team"]', "JSON object"),
        (7, "JSON object"),
        ({f"X-H{i}": "v" for i in range(6)}, "at most 5"),
        ({"authorization": "Bearer x"}, "reserved"),
        ({"Content-Type": "text/plain"}, "reserved"),
        ({"X-Meshes-Signature": "abc"}, "reserved"),
        ({"x-meshes-event": "abc"}, "reserved"),
        ({"Host": "evil"}, "reserved"),
        ({"Bad Name": "v"}, "not a valid HTTP header name"),
        ({"X-Team": 5}, "string value"),
    ],
)
def test_custom_headers_refused(headers, words):
    problems = validate_connection_metadata(spec("webhook"), WEBHOOK | {"custom_headers": headers})
    assert problems
    assert all(p.param == "metadata.custom_headers" for p in problems)
    assert any(words in p.msg for p in problems)


# control characters: a key pasted with its newline is refused at save time, not at every delivery

CONTROL_CASES = [
    ("webhook", WEBHOOK | {"auth_scheme": "bearer", "auth_token": CANARY + "\r\n"}, "metadata.auth_token"),
    (
        "webhook",
        WEBHOOK | {"auth_scheme": "basic", "auth_username": "svc\n", "auth_password": "pw"},
        "metadata.auth_username",
    ),
    (
        "webhook",
        WEBHOOK | {"auth_scheme": "basic", "auth_username": "svc", "auth_password": CANARY + "\x00"},
        "metadata.auth_password",
    ),
    (
        "webhook",
        WEBHOOK | {"auth_scheme": "custom_header", "auth_header_name": "X-Key", "auth_header_value": "\t" + CANARY},
        "metadata.auth_header_value",
    ),
    (
        "webhook",
        WEBHOOK | {"signing_algorithm": "sha256", "signing_secret": CANARY + "\x7f"},
        "metadata.signing_secret",
    ),
    ("webhook", {"url": "https://example.com/h\r\n"}, "metadata.url"),
    ("mailchimp", {"data_center": "us6", "api_key": CANARY + "-us6\n"}, "metadata.api_key"),
    ("customer_io", {"region": "us", "cdpApiKey": CANARY + "\x85"}, "metadata.cdpApiKey"),
]


@pytest.mark.parametrize(("integration_type", "metadata", "param"), CONTROL_CASES)
def test_control_characters_are_refused_naming_the_field(integration_type, metadata, param):
    found = conn(integration_type, metadata)
    assert param in found, found
    assert "control character" in found[param] and "e.g." in found[param]
    assert CANARY not in json.dumps(found)


@pytest.mark.parametrize("value", [CANARY + "\r\n", "a\nb", "\x00" + CANARY])
def test_custom_header_values_with_control_characters_are_refused(value):
    found = conn("webhook", WEBHOOK | {"custom_headers": {"X-Api-Key": value}})
    message = found["metadata.custom_headers"]
    assert '"X-Api-Key"' in message and "control character" in message and CANARY not in message
    as_text = conn("webhook", WEBHOOK | {"custom_headers": json.dumps({"X-Api-Key": value})})
    assert "control character" in as_text["metadata.custom_headers"]


@pytest.mark.parametrize("field", ["auth_header_name", "signing_header"])
def test_header_name_fields_must_be_header_names(field):
    base = {"auth_scheme": "custom_header", "auth_header_value": "v"} if field == "auth_header_name" else {}
    base |= {"signing_algorithm": "sha256", "signing_secret": "s"} if field == "signing_header" else {}
    assert "HTTP header name" in conn("webhook", WEBHOOK | base | {field: "X Key: " + CANARY})[f"metadata.{field}"]
    assert CANARY not in json.dumps(conn("webhook", WEBHOOK | base | {field: "X Key: " + CANARY}))
    assert conn("webhook", WEBHOOK | base | {field: "X-Key"}) == {}


def test_update_runs_the_same_checks():
    assert conn("webhook", {"url": "http://example.com"}, for_update=True).keys() == {"metadata.url"}
    assert conn("resend", {}, for_update=True).keys() == {"metadata.api_key"}


def test_planted_secrets_never_appear_in_messages():
    cases = [
        ("activecampaign", {"api_key": CANARY, "api_url": "ftp://nope"}),
        ("mailchimp", {"api_key": CANARY, "data_center": CANARY}),
        ("resend", {"api_key": 42, "apikey": CANARY}),
        ("webhook", {"url": f"http://example.com/?token={CANARY}", "auth_token": CANARY}),
        ("webhook", WEBHOOK | {"auth_scheme": CANARY, "auth_header_value": CANARY}),
        ("webhook", WEBHOOK | {"custom_headers": {"Authorization": CANARY, "X-A": CANARY, "X-B": [CANARY]}}),
        ("webhook", WEBHOOK | {"custom_headers": CANARY}),
        ("webhook", WEBHOOK | {"custom_headers": {f"Authorization: Bearer {CANARY}": "x"}}),
        ("webhook", WEBHOOK | {"http_method": CANARY, "skip_url_test": CANARY}),
    ]
    for integration_type, metadata in cases:
        problems = validate_connection_metadata(spec(integration_type), metadata)
        assert problems, metadata
        assert all(CANARY not in p.msg for p in problems), problems


# --- rule metadata ------------------------------------------------------------------------------


def test_action_is_required_and_listed():
    msg = rule("hubspot", {})["metadata.action"]
    assert "is required" in msg
    assert "add_to_list, remove_from_list, update_property" in msg
    assert '{"action": "add_to_list", "id": "5"}' in msg


def test_unknown_action_lists_the_actions():
    msg = rule("hubspot", {"action": "add_to_lists"})["metadata.action"]
    assert "add_to_list, remove_from_list, update_property" in msg
    assert "did you mean add_to_list" in msg
    assert "must be a string" in rule("hubspot", {"action": 3})["metadata.action"]


def test_required_pick_names_what_it_holds():
    assert rule("hubspot", {"action": "add_to_list"}) == {
        "metadata.id": 'is required: the id of a HubSpot list from get_connection_actions, e.g. "5"'
    }


def test_advanced_pick_requires_id_and_value():
    problems = rule("hubspot", {"action": "update_property"})
    assert set(problems) == {"metadata.id", "metadata.value"}
    assert "property" in problems["metadata.id"]
    assert "option values" in problems["metadata.value"]
    assert '"customer"' in problems["metadata.value"]


def test_required_typed_fields():
    assert set(rule("sendgrid", {"action": "send_email"})) == {"metadata.subject", "metadata.from", "metadata.body"}
    assert '"Team <team@example.com>"' in rule("sendgrid", {"action": "send_email"})["metadata.from"]
    assert set(rule("slack", {"action": "send_message", "id": "C0123456789"})) == {"metadata.template"}
    assert set(rule("discord", {"action": "send_message", "id": "C1"})) == {"metadata.title"}


def test_optional_typed_fields_may_be_left_out_or_given():
    assert rule("resend", {"action": "send_email_template", "id": "tpl_1"}) == {}
    assert rule("resend", {"action": "send_email_template", "id": "tpl_1", "subject": "Hi", "from": "A <a@b.co>"}) == {}


def test_keys_outside_the_action_are_refused_naming_the_allowed():
    assert rule("webhook", {"action": "send_webhook", "id": "x"}) == {
        "metadata.id": "is not used by send_webhook; it takes no fields beyond action"
    }
    msg = rule("hubspot", {"action": "add_to_list", "id": "5", "value": "x"})["metadata.value"]
    assert "it takes id" in msg


def test_rule_values_must_be_strings():
    assert "must be a string (got integer)" in rule("hubspot", {"action": "add_to_list", "id": 5})["metadata.id"]


def test_action_only_rules_pass():
    assert rule("webhook", {"action": "send_webhook"}) == {}
    assert rule("pipedrive", {"action": "sync_person"}) == {}


# live action data


def test_live_id_must_exist_and_the_message_lists_what_does():
    problems = rule("hubspot", {"action": "add_to_list", "id": "9"}, HUBSPOT_ACTION_DATA)
    assert problems == {
        "metadata.id": 'list "9" does not exist; lists are 5 Newsletter Subscribers, 8 Active Subscriptions'
    }
    assert rule("hubspot", {"action": "add_to_list", "id": "8"}, HUBSPOT_ACTION_DATA) == {}


def test_live_listing_is_capped():
    lists = [{"id": str(i), "name": f"List {i}"} for i in range(25)]
    msg = rule("mailchimp", {"action": "add_to_list", "id": "99"}, {"lists": lists})["metadata.id"]
    assert "19 List 19 and 5 more" in msg
    assert "List 20" not in msg


def test_live_empty_collection_and_numeric_ids():
    assert "has no tags" in rule("intercom", {"action": "add_tag", "id": "1"}, {"tags": []})["metadata.id"]
    assert rule("intercom", {"action": "add_tag", "id": "123"}, {"tags": [{"id": 123, "name": "new-user"}]}) == {}


def test_live_collection_absent_is_not_judged():
    assert rule("hubspot", {"action": "add_to_list", "id": "9"}, {"properties": []}) == {}


def test_live_option_must_be_one_of_the_property_options():
    metadata = {"action": "update_property", "id": "lifecycle_stage", "value": "vip"}
    msg = rule("hubspot", metadata, HUBSPOT_ACTION_DATA)["metadata.value"]
    assert msg == '"vip" is not an option of property lifecycle_stage; options are lead (Lead), customer (Customer)'
    assert rule("hubspot", metadata | {"value": "customer"}, HUBSPOT_ACTION_DATA) == {}


def test_live_unknown_property_reports_the_id_only():
    metadata = {"action": "update_property", "id": "plan", "value": "vip"}
    assert rule("hubspot", metadata, HUBSPOT_ACTION_DATA) == {
        "metadata.id": 'property "plan" does not exist; properties are lifecycle_stage Lifecycle Stage'
    }


# descriptions and examples


def test_describe_action():
    assert describe_action(spec("hubspot"), "add_to_list") == "add_to_list: id (a list id from get_connection_actions)"
    assert describe_action(spec("webhook"), "send_webhook") == "send_webhook: no fields beyond action"
    update = describe_action(spec("hubspot"), "update_property")
    assert "id (a property id from get_connection_actions)" in update
    assert "value (one of that property's option values)" in update
    assert "subject (optional subject)" in describe_action(spec("resend"), "send_email_template")


def test_example_rule_metadata():
    assert example_rule_metadata(spec("hubspot"), "add_to_list") == {"action": "add_to_list", "id": "5"}
    assert example_rule_metadata(spec("hubspot"), "update_property") == {
        "action": "update_property",
        "id": "lifecycle_stage",
        "value": "customer",
    }


def test_every_example_passes_its_own_validation():
    catalog = load_catalog()
    for integration_type in catalog.types():
        integration = catalog.get(integration_type)
        for action_key in integration.actions:
            example = example_rule_metadata(integration, action_key)
            assert validate_rule_metadata(integration, example) == [], (integration_type, action_key)
            assert json.dumps(example)  # plain JSON, fit for a message
