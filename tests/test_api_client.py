"""The API layer over real HTTP against a scripted double: tokens, headers, errors, retries."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import anyio
import jwt
import pytest

from meshes_mcp import __version__
from meshes_mcp.api import errors
from meshes_mcp.api.auth import MachineKey
from meshes_mcp.api.client import MAX_RETRY_AFTER, MeshesClient, retry_after_seconds, retry_delay, should_retry
from meshes_mcp.api.models import EmitEventRequest
from meshes_mcp.api.problems import InvalidRequest
from tests.http_double import ACCESS_KEY, ORG, PUBLISHABLE_KEY, SECRET_KEY, ApiDouble, Scripted

EVENT = "0b6f3c1e-2d4a-4b5c-8d6e-7f8091a2b3c4"
RULE = "1c7a4d2f-3e5b-4c6d-9e7f-8091a2b3c4d5"
CONNECTION = "2d8b5e3a-4f6c-4d7e-af80-91a2b3c4d5e6"


@pytest.fixture
def double():
    server = ApiDouble().start()
    yield server
    server.stop()


def client_for(double: ApiDouble, **kwargs) -> MeshesClient:
    return MeshesClient(double.url, machine_key=MachineKey(ACCESS_KEY, SECRET_KEY, ORG), retry_base=0.01, **kwargs)


def test_machine_token_has_exactly_the_documented_header_and_claims():
    before = int(time.time())
    token = MachineKey(ACCESS_KEY, SECRET_KEY, ORG).mint()
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, SECRET_KEY, algorithms=["HS256"], audience="meshes-api")
    assert header == {"alg": "HS256", "typ": "JWT", "kid": ACCESS_KEY}
    assert claims["iss"] == f"urn:meshes:m2m:{ACCESS_KEY}"
    assert claims["aud"] == "meshes-api"
    assert claims["org"] == ORG
    assert before <= claims["iat"] <= int(time.time())
    assert claims["exp"] - claims["iat"] == 30
    assert set(claims) == {"iss", "aud", "org", "iat", "exp"}


@pytest.mark.anyio
async def test_every_request_carries_a_fresh_verified_token_and_user_agent(double):
    double.script("GET", "/integrations", Scripted(200, {"count": 0, "limit": 50, "records": []}))

    async with client_for(double) as client:
        await client.list_integrations()
        await anyio.sleep(1.1)  # a new second, so a cached token would show as an equal iat
        await client.list_integrations()

    first, second = double.requests
    assert first["claims"] is not None and second["claims"] is not None
    assert first["claims"]["iat"] < second["claims"]["iat"]
    assert first["headers"]["user-agent"].startswith(f"meshes-mcp/{__version__}")
    assert first["headers"]["accept"] == "application/json"


def test_machine_key_repr_masks_the_secret():
    key = MachineKey(ACCESS_KEY, SECRET_KEY, ORG)
    assert SECRET_KEY not in repr(key) and ACCESS_KEY not in repr(key)


@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        (400, errors.BadRequestError),
        (401, errors.AuthenticationError),
        (403, errors.PermissionDeniedError),
        (404, errors.NotFoundError),
        (409, errors.ConflictError),
        (422, errors.UnprocessableEntityError),
        (425, errors.TooEarlyError),
        (429, errors.RateLimitError),
        (500, errors.InternalServerError),
        (503, errors.InternalServerError),
    ],
)
@pytest.mark.anyio
async def test_each_status_maps_to_its_error_with_the_documented_body(double, status, error_type):
    body = {
        "message": "Bad Request",
        "error": {"name": "SomethingWrong", "message": "list 9 is gone", "data": [{"param": "id", "msg": "unknown"}]},
    }
    double.script("POST", f"/events/{EVENT}/rules/{RULE}/retry", Scripted(status, body))

    with pytest.raises(error_type) as caught:
        async with client_for(double, max_retries=0) as client:
            await client.retry_rule_event(EVENT, RULE)
    assert caught.value.status == status
    assert caught.value.name == "SomethingWrong"
    assert caught.value.message == "list 9 is gone"
    assert caught.value.details[0].param == "id"


@pytest.mark.anyio
async def test_error_body_that_is_not_json_still_gives_a_message(double):
    double.script("GET", f"/connections/{CONNECTION}", Scripted(502, text="<html>Bad gateway</html>"))

    with pytest.raises(errors.InternalServerError, match="Bad gateway"):
        async with client_for(double, max_retries=0) as client:
            await client.get_connection(CONNECTION)


@pytest.mark.anyio
async def test_reads_are_retried_on_503_then_succeed(double):
    connection = {"id": CONNECTION, "workspace": ORG, "type": "webhook", "name": "hook", "metadata": {}}
    double.script(
        "GET", f"/connections/{CONNECTION}", Scripted(503, {"message": "maintenance"}), Scripted(200, connection)
    )

    async with client_for(double) as client:
        fetched = await client.get_connection(CONNECTION)

    assert fetched.id == CONNECTION
    assert len(double.requests) == 2


@pytest.mark.anyio
async def test_writes_are_not_retried_on_5xx_so_nothing_is_sent_twice(double):
    double.script("POST", f"/events/{EVENT}/rules/{RULE}/retry", Scripted(503, {"message": "maintenance"}))

    with pytest.raises(errors.InternalServerError):
        async with client_for(double) as client:
            await client.retry_rule_event(EVENT, RULE)
    assert len(double.requests) == 1


@pytest.mark.anyio
async def test_429_is_retried_after_retry_after_even_for_writes(double):
    ok = {"id": RULE, "rule": RULE, "status": "processing"}
    double.script(
        "POST",
        f"/events/{EVENT}/rules/{RULE}/retry",
        Scripted(429, {"message": "Too Many Requests"}, headers={"Retry-After": "0"}),
        Scripted(200, ok),
    )

    async with client_for(double) as client:
        retried = await client.retry_rule_event(EVENT, RULE)

    assert retried.status == "processing"
    assert len(double.requests) == 2


@pytest.mark.anyio
async def test_429_exhausting_retries_carries_retry_after(double):
    double.script("GET", "/integrations", Scripted(429, {"message": "slow down"}, headers={"Retry-After": "0"}))

    with pytest.raises(errors.RateLimitError) as caught:
        async with client_for(double, max_retries=1) as client:
            await client.list_integrations()
    assert caught.value.retry_after == 0


@pytest.mark.anyio
async def test_connection_refused_is_reported_as_not_sent():
    with pytest.raises(errors.APIConnectionError) as caught:
        client = MeshesClient(
            "http://127.0.0.1:9/api/v1", machine_key=MachineKey(ACCESS_KEY, SECRET_KEY, ORG), max_retries=0
        )
        async with client:
            await client.retry_rule_event(EVENT, RULE)
    assert caught.value.sent is False


@pytest.mark.anyio
async def test_malformed_ids_are_refused_before_any_request(double):
    with pytest.raises(InvalidRequest) as caught:
        async with client_for(double) as client:
            await client.get_event("not-a-uuid")
    assert caught.value.problems[0].param == "event_id"
    assert "UUID" in caught.value.problems[0].msg
    assert double.requests == []


@pytest.mark.anyio
async def test_publishable_key_mode_sends_the_key_only_for_ingestion(double):
    double.script("POST", "/events", Scripted(201, {"event": {"id": EVENT, "workspace": ORG, "event": "user.signup"}}))

    async with MeshesClient(double.url, publishable_key=PUBLISHABLE_KEY) as client:
        await client.emit_event(EmitEventRequest(event="user.signup", payload={"email": "a@b.co"}))
        with pytest.raises(errors.ConfigurationError):
            await client.list_integrations()

    assert double.requests[0]["headers"]["x-meshes-publishable-key"] == PUBLISHABLE_KEY
    assert "authorization" not in double.requests[0]["headers"]
    assert len(double.requests) == 1


@pytest.mark.anyio
async def test_429_with_retry_after_as_an_http_date_carries_the_seconds_until_then(double):
    # RFC 9110 allows Retry-After as an HTTP date; the wait it asks for must reach the caller as seconds.
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    double.script("GET", "/integrations", Scripted(429, {"message": "slow down"}, headers={"Retry-After": when}))

    with pytest.raises(errors.RateLimitError) as caught:
        async with client_for(double, max_retries=0) as client:
            await client.list_integrations()
    assert caught.value.retry_after is not None
    assert 20 <= caught.value.retry_after <= 31


@pytest.mark.anyio
async def test_429_with_a_past_http_date_is_retried_at_once_and_succeeds(double):
    past = format_datetime(datetime.now(UTC) - timedelta(hours=1), usegmt=True)
    double.script(
        "GET",
        "/integrations",
        Scripted(429, {"message": "slow down"}, headers={"Retry-After": past}),
        Scripted(200, {"count": 0, "limit": 50, "records": []}),
    )

    async with client_for(double) as client:
        page = await client.list_integrations()

    assert page.records == []
    assert len(double.requests) == 2


NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("7", 7.0),
        (" 1.5 ", 1.5),
        ("-3", 0.0),
        ("Fri, 02 Jan 2026 03:04:35 GMT", 30.0),
        ("Friday, 02-Jan-26 03:04:15 GMT", 10.0),  # obsolete RFC 850 form, still valid to receive
        ("Thu, 01 Jan 2026 00:00:00 GMT", 0.0),  # in the past: now
        ("soon", None),
        ("nan", None),
        ("", None),
        ("\x00\ud800", None),
    ],
)
def test_retry_after_reads_seconds_or_an_http_date(header, seconds):
    assert retry_after_seconds({"retry-after": header}, now=NOW) == seconds


def test_retry_after_absent_is_none():
    assert retry_after_seconds({}, now=NOW) is None


def test_retry_delay_honours_retry_after_up_to_a_cap_and_jitters_otherwise():
    assert retry_delay(1, base=0.5, retry_after=3) == 3
    assert retry_delay(1, base=0.5, retry_after=float("inf")) == MAX_RETRY_AFTER
    for attempt in (1, 2, 3):
        assert 0 <= retry_delay(attempt, base=0.5) <= 0.5 * 2 ** (attempt - 1)
        assert 0 <= retry_delay(attempt, base=0.5, retry_after=0) <= 0.5 * 2 ** (attempt - 1)


def test_should_retry_repeats_reads_on_gateway_errors_and_writes_only_on_429():
    for status in (429, 502, 503, 504):
        assert should_retry(status, idempotent=True)
    assert should_retry(429, idempotent=False)
    for status in (500, 502, 503, 504):
        assert not should_retry(status, idempotent=False)
    for status in (400, 401, 404, 409, 425, 500):
        assert not should_retry(status, idempotent=True)


def test_require_uuid_lives_with_the_models_and_stays_importable_from_the_client():
    from meshes_mcp.api import client, models

    assert client.require_uuid is models.require_uuid
    with pytest.raises(InvalidRequest) as caught:
        models.require_uuid("rule_id", "../rules")
    assert caught.value.problems[0].param == "rule_id"


@pytest.mark.parametrize("count", [0, 101])
@pytest.mark.anyio
async def test_a_bulk_outside_1_to_100_events_is_refused_before_any_request(double, count):
    with pytest.raises(InvalidRequest) as caught:
        async with client_for(double) as client:
            await client.emit_events([EmitEventRequest(event="user.signup", payload={})] * count)
    assert caught.value.problems[0].param == "events" and "e.g." in caught.value.problems[0].msg
    assert double.requests == []
