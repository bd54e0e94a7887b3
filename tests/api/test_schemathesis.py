"""Property-based API testing: schemathesis generates requests from the OpenAPI schema
and checks every response against it (no 5xx, documented status codes, bodies and
headers that match the schema) on the real server with real Redis, Cassandra, Kafka.

`/v1/alerts/stream` is left out: it is an endless SSE stream by design (tested in
test_alerts.py). Geofences the run creates are retired at the end so random shapes do
not stay on the shared compacted topic.
"""
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import positive_data_acceptance

pytestmark = pytest.mark.stack

created_fences: set[str] = set()


@pytest.fixture(scope="session")
def api_schema(live_api):
    return schemathesis.openapi.from_url(f"{live_api}/openapi.json")


@pytest.fixture(scope="session")
def admin_headers(make_key, live_api):
    import httpx
    h = make_key("admin")
    yield h
    for gid in sorted(created_fences):
        httpx.delete(f"{live_api}/v1/geofences/{gid}", headers=h, timeout=30)


schema = schemathesis.pytest.from_fixture("api_schema").exclude(path="/v1/alerts/stream")


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case, admin_headers):
    # positive_data_acceptance is left out: some schema-valid requests are rightly refused
    # with a documented 400 (a page token this API never issued, a reversed time range,
    # a search without any filter), which no schema can express.
    response = case.call_and_validate(headers=admin_headers, timeout=30,
                                      excluded_checks=[positive_data_acceptance])
    if case.method.upper() == "POST" and case.path == "/v1/geofences" and response.status_code == 201:
        created_fences.add(response.json()["geofence_id"])
