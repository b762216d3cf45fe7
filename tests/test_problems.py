"""Pydantic validation errors become problems an agent can act on: a param path, a rule, an example."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError

from meshes_mcp.api import models
from meshes_mcp.api.problems import (
    InvalidRequest,
    Problem,
    check,
    join_param,
    json_type_name,
    problems_from_validation_error,
)

WS = "3f0c9a52-8d1e-4a7b-9c55-0e4b1f2a6d10"
CANARY = "sk_live_CANARY"


def problems_of(model_cls, data, **kwargs) -> dict[str, str]:
    """param → msg of the problems `check` raises (fails the test if nothing is raised)."""
    with pytest.raises(InvalidRequest) as info:
        check(model_cls, data, **kwargs)
    return {p.param: p.msg for p in info.value.problems}


def valid_rule(**overrides):
    body = {"workspace": WS, "connection": WS, "event": "user.signup", "metadata": {"action": "add_to_list", "id": "5"}}
    return body | overrides


def mapping(field: dict) -> dict:
    return {"schema": {"schema_version": 1, "fields": [field]}}


# --- the types ----------------------------------------------------------------------------------


def test_invalid_request_reads_one_line_per_problem():
    exc = InvalidRequest([Problem("workspace", "must be a UUID"), Problem("event", "must not be empty")])
    assert str(exc) == "workspace: must be a UUID\nevent: must not be empty"
    assert isinstance(exc, ValueError)
    assert exc.error_data() == [
        {"param": "workspace", "msg": "must be a UUID"},
        {"param": "event", "msg": "must not be empty"},
    ]


def test_check_returns_the_model_when_valid():
    rule = check(models.CreateRuleRequest, valid_rule())
    assert isinstance(rule, models.CreateRuleRequest)
    assert rule.metadata.action == "add_to_list"


def test_join_param_puts_no_dot_before_an_index():
    assert join_param("events[3]", "payload.email") == "events[3].payload.email"
    assert join_param("events", "[3]") == "events[3]"
    assert join_param("", "event") == "event"
    assert join_param("events[0]", "") == "events[0]"


@pytest.mark.parametrize(
    ("value", "name"),
    [
        (None, "null"),
        (True, "boolean"),
        (3, "integer"),
        (1.5, "number"),
        ("x", "string"),
        ({}, "object"),
        ([], "array"),
    ],
)
def test_json_type_name(value, name):
    assert json_type_name(value) == name


# --- one rule per pydantic error type -----------------------------------------------------------


def test_missing_field_is_required_with_an_example():
    assert problems_of(models.CreateWorkspaceRequest, {}) == {"name": 'is required, e.g. "Production"'}


def test_uuid_pattern_says_uuid_and_shows_one():
    msg = problems_of(models.CreateRuleRequest, valid_rule(workspace="ws-1"))["workspace"]
    assert "must be a UUID" in msg
    assert WS in msg
    assert "[0-9a-fA-F]" not in msg  # the plain words replace the regex


def test_resource_id_pattern_gives_rule_and_example():
    msg = problems_of(models.CreateRuleRequest, valid_rule(resource_id="a b"))["resource_id"]
    assert "1–64" in msg
    assert "^[A-Za-z0-9._:-]{1,64}$" in msg
    assert '"usr_2048"' in msg


def test_workspace_name_rules():
    assert "letters, digits, spaces, _ or -" in problems_of(models.CreateWorkspaceRequest, {"name": "Prod!"})["name"]
    assert "at least 3 characters" in problems_of(models.CreateWorkspaceRequest, {"name": "ab"})["name"]
    too_long = problems_of(models.CreateWorkspaceRequest, {"name": "a" * 51})["name"]
    assert "at most 50 characters" in too_long
    assert '"Production"' in too_long


def test_empty_string_must_not_be_empty():
    msg = problems_of(models.CreateRuleRequest, valid_rule(event=""))["event"]
    assert msg == 'must not be empty, e.g. "user.signup"'


def test_list_too_long_counts_items():
    data = {"workspace_id": WS, "allowed_origins": ["https://a.example"] * 11}
    msg = problems_of(models.CreateSessionRequest, data)["allowed_origins"]
    assert "at most 10 items" in msg
    assert "got 11" in msg


@pytest.mark.parametrize("limit", [0, 500])
def test_limit_range_in_plain_words(limit):
    msg = problems_of(models.EventListQuery, {"limit": limit})["limit"]
    assert "from 1 to 200" in msg
    assert "e.g. 50" in msg


def test_greater_than_and_greater_equal():
    msg = problems_of(
        models.UpdateMappingsRequest,
        mapping({"dest": "a", "source": {"type": "path", "value": "a"}}) | {"expected_version": 0},
    )["expected_version"]
    assert "positive integer" in msg
    start = {
        "dest": "a",
        "source": {"type": "path", "value": "a"},
        "transforms": [{"type": "substring", "params": {"start": -1}}],
    }
    problems = problems_of(models.UpdateMappingsRequest, mapping(start))
    assert "≥ 0" in problems["schema.fields[0].transforms[0].params.start"]


def test_range_without_a_hint_names_the_bound():
    # `length` has a hint; a field without one still gets the bound from pydantic's context.
    params = {"start": 0, "length": 0}
    field = {
        "dest": "a",
        "source": {"type": "path", "value": "a"},
        "transforms": [{"type": "substring", "params": params}],
    }
    assert (
        "> 0"
        in problems_of(models.UpdateMappingsRequest, mapping(field))["schema.fields[0].transforms[0].params.length"]
    )
    ttl = problems_of(models.CreateSessionRequest, {"workspace_id": WS, "ttl_seconds": 5})["ttl_seconds"]
    assert "300 to 3600" in ttl


def test_literal_lists_allowed_values():
    msg = problems_of(models.WorkspaceEventQuery, {"status": "bogus"})["status"]
    assert "'pending'" in msg
    assert "'failed'" in msg
    assert "bogus" not in msg
    assert problems_of(models.UpdateMappingsRequest, {"schema": {"schema_version": 2, "fields": []}}) == {
        "schema.schema_version": "must be 1"
    }


def test_enum_lists_integration_types():
    data = {"workspace": WS, "type": "hubspott", "name": "HubSpot", "metadata": {}}
    msg = problems_of(models.CreateConnectionRequest, data)["type"]
    assert msg.startswith("must be one of")
    assert "'hubspot'" in msg
    assert "'webhook'" in msg


@pytest.mark.parametrize(
    ("model_cls", "data", "param", "words"),
    [
        (models.EventListQuery, {"limit": "fifty"}, "limit", "must be an integer (got string)"),
        (models.CreateRuleRequest, valid_rule(event=5), "event", "must be a string (got integer)"),
        (models.CreateRuleRequest, valid_rule(hidden=[]), "hidden", "must be true or false (got array)"),
        (models.CreateRuleRequest, valid_rule(metadata=[]), "metadata", "must be an object (got array)"),
        (
            models.CreateSessionRequest,
            {"workspace_id": WS, "allowed_origins": "x"},
            "allowed_origins",
            "must be a list",
        ),
    ],
)
def test_type_errors_name_the_expected_and_given_type(model_cls, data, param, words):
    assert words in problems_of(model_cls, data)[param]


def test_type_error_uses_the_field_example():
    msg = problems_of(models.CreateSessionRequest, {"workspace_id": WS, "external_user_id": 5})["external_user_id"]
    assert msg == 'must be a string (got integer), e.g. "user_123"'


class Unhinted(BaseModel):
    model_config = ConfigDict(extra="forbid")
    zz_flag: bool
    zz_count: int


def test_type_error_without_a_field_example_shows_one_of_the_type():
    problems = problems_of(Unhinted, {"zz_flag": [], "zz_count": "x"})
    assert problems == {
        "zz_flag": "must be true or false (got array), e.g. true",
        "zz_count": "must be an integer (got string), e.g. 1",
    }


def test_unknown_field_lists_the_allowed_ones():
    msg = problems_of(models.CreateRuleRequest, valid_rule(evnet="x"))["evnet"]
    assert msg.startswith("unknown field; allowed:")
    assert "workspace, connection, event, metadata" in msg


def test_unknown_nested_field_lists_the_nested_model_fields():
    problems = problems_of(models.UpdateMappingsRequest, {"schema": {"schema_version": 1, "fields": [], "zzz": 1}})
    assert problems["schema.zzz"] == "unknown field; allowed: schema_version, fields, meta"


def test_unknown_field_without_the_model():
    with pytest.raises(ValidationError) as info:
        models.CreateRuleRequest.model_validate(valid_rule(evnet="x"))
    assert Problem("evnet", "not a field of this request") in problems_from_validation_error(info.value)


def test_value_error_uses_the_validator_message_and_its_field():
    problems = problems_of(models.EmitEventRequest, {"event": "user.signup", "payload": {"email": "nope"}})
    assert problems == {"payload.email": 'must be an email address, e.g. "jane@example.com"'}
    assert "Value error" not in str(problems)


def test_value_error_on_the_same_field_drops_the_repeated_name():
    assert problems_of(models.EmitEventRequest, {"event": "  ", "payload": {}}) == {
        "event": 'must not be blank, e.g. "user.signup"'
    }


def test_model_level_value_error_is_pinned_on_the_field_it_names():
    problems = problems_of(models.CreateSessionRequest, {"workspace_id": WS, "session_type": "resource"})
    assert "resource_id" in problems["session_type"]


def test_rule_metadata_extra_must_be_a_string():
    problems = problems_of(models.CreateRuleRequest, valid_rule(metadata={"action": "add_to_list", "id": 5}))
    assert "must be a string" in problems["metadata.id"]


def test_union_tag_invalid_lists_the_tags_on_the_discriminator():
    field = {"dest": "a", "source": {"type": "path", "value": "a"}, "transforms": [{"type": "titlecase"}]}
    msg = problems_of(models.UpdateMappingsRequest, mapping(field))["schema.fields[0].transforms[0].type"]
    assert "'trim'" in msg
    assert "'substring'" in msg
    assert "titlecase" not in msg


def test_union_tag_not_found_says_which_tags():
    problems = problems_of(models.UpdateMappingsRequest, mapping({"dest": "a", "source": {}}))
    assert problems == {"schema.fields[0].source.type": "is required: one of 'literal', 'path'"}


def test_discriminated_union_tag_is_dropped_from_the_path():
    problems = problems_of(
        models.UpdateMappingsRequest, mapping({"dest": "a", "source": {"type": "path", "value": "1x"}})
    )
    assert list(problems) == ["schema.fields[0].source.value"]
    assert "payload path" in problems["schema.fields[0].source.value"]


def test_plain_union_members_are_reported_once():
    problems = problems_of(
        models.UpdateMappingsRequest, mapping({"dest": "a", "source": {"type": "literal", "value": ""}})
    )
    assert list(problems) == ["schema.fields[0].source.value"]
    msg = problems["schema.fields[0].source.value"]
    assert "must not be empty" in msg
    assert "must be a number" in msg
    assert msg.count("e.g.") == 1


def test_internal_union_labels_dropped_even_without_the_model():
    with pytest.raises(ValidationError) as info:
        models.UpdateMappingsRequest.model_validate(mapping({"dest": "a", "source": {"type": "literal", "value": ""}}))
    params = {p.param for p in problems_from_validation_error(info.value)}
    assert params == {"schema.fields[0].source.literal.value"}  # no `constrained-str`, `float`, `bool`


def test_prefix_names_the_item_of_a_batch():
    problems = problems_of(models.EmitEventRequest, {"event": "", "payload": {"email": "x"}}, prefix="events[3]")
    assert set(problems) == {"events[3].event", "events[3].payload.email"}


def test_root_type_error_is_named():
    assert problems_of(models.CreateWorkspaceRequest, "Production") == {"request": "must be an object (got string)"}
    assert problems_of(models.EmitEventRequest, 5, prefix="events[0]") == {
        "events[0]": "must be an object (got integer)"
    }


def test_no_pydantic_voice_left():
    problems = problems_of(models.CreateRuleRequest, {"workspace": 1, "event": "", "metadata": {}, "active": "maybe"})
    assert all("Input should" not in msg for msg in problems.values())


# --- secrets ------------------------------------------------------------------------------------


def test_rejected_values_are_never_echoed():
    data = {
        "workspace": CANARY,
        "type": CANARY,
        "name": CANARY + "!",
        "metadata": CANARY,
        "hidden": CANARY,
        "extra_key": CANARY,
    }
    with pytest.raises(InvalidRequest) as info:
        check(models.CreateConnectionRequest, data)
    assert {p.param for p in info.value.problems} == {"workspace", "type", "name", "metadata", "hidden", "extra_key"}
    assert CANARY not in str(info.value) + repr(info.value.problems)
    # pydantic's own error (which quotes inputs) must not ride along as the cause or context.
    assert info.value.__cause__ is None
    assert info.value.__context__ is None


def test_value_error_on_a_secret_field_does_not_quote_it():
    payload = {"email": CANARY}
    with pytest.raises(InvalidRequest) as info:
        check(models.EmitEventRequest, {"event": "user.signup", "payload": payload})
    assert CANARY not in str(info.value)
