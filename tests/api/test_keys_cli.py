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


def test_keys_vehicle_patterns_create_show_list_and_set(stack, capsys):
    assert main(["keys", "create", "--role", "partner", "--carrier", "FEDEX", "--name", "cli-vehicles",
                 "--vehicles", "FX-VAN*", "--vehicles", "FX-TRUCK?,FX-VAN*"]) == 0
    out = capsys.readouterr().out
    raw = out.strip().splitlines()[-1]
    key_id = raw.split("_")[1]
    assert "FX-VAN*, FX-TRUCK?" in out
    assert main(["keys", "show", key_id]) == 0
    shown = capsys.readouterr().out
    assert key_id in shown and "FX-VAN*, FX-TRUCK?" in shown and raw.split("_", 2)[2] not in shown
    assert main(["keys", "list"]) == 0
    assert "FX-VAN*, FX-TRUCK?" in next(line for line in capsys.readouterr().out.splitlines() if key_id in line)
    assert main(["keys", "set-vehicles", key_id]) == 0  # no patterns: no pings
    assert main(["keys", "show", key_id]) == 0
    assert "none" in next(line for line in capsys.readouterr().out.splitlines() if key_id in line)
    # Refused with a message: a pattern matching every van, patterns on an admin key, an unknown key.
    assert main(["keys", "set-vehicles", key_id, "--vehicles", "*"]) == 1
    assert main(["keys", "create", "--role", "admin", "--vehicles", "FX*"]) == 1
    assert main(["keys", "show", "0000000000000000"]) == 1
    err = capsys.readouterr()
    assert "matches every vehicle" in err.out + err.err and "only partner keys" in err.out + err.err
    assert main(["keys", "revoke", key_id]) == 0
