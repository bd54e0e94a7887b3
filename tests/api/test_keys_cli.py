"""`fleetflow keys create|list|revoke` against the real Cassandra; the key works on the API."""
import pytest

from fleetflow.cli.main import main
from tests.api.conftest import assert_error

pytestmark = pytest.mark.stack


def test_keys_create_list_revoke(stack, capsys, client):
    assert main(["keys", "create", "--role", "partner", "--carrier", "dhl", "--name", "cli-test",
                 "--rate-limit", "50"]) == 0
    raw = capsys.readouterr().out.strip().splitlines()[-1]
    key_id = raw.split("_")[1]
    assert raw.startswith("ffk_")
    assert client.get("/v1/shipments/NOSUCHCLI", headers={"X-API-Key": raw}).status_code == 404

    assert main(["keys", "list"]) == 0
    listing = capsys.readouterr().out
    row = next(line for line in listing.splitlines() if key_id in line)
    assert "partner" in row and "DHL" in row and "50" in row and raw.split("_", 2)[2] not in listing

    assert main(["keys", "revoke", key_id]) == 0
    assert main(["keys", "revoke", "0000000000000000"]) == 1
    assert main(["keys", "create", "--role", "partner"]) == 1  # partner keys need a carrier
    # A fresh process (empty key cache) refuses the revoked key at once.
    from fastapi.testclient import TestClient

    from api.main import create_app
    with TestClient(create_app(client.app.state.settings)) as fresh:
        assert_error(fresh.get("/v1/shipments/NOSUCHCLI", headers={"X-API-Key": raw}), 401)
