"""`fleetflow ingest FILE` on the real stack: bad lines dead-lettered, a second ingest changes nothing."""
import subprocess
import sys
import time
import uuid

import pytest

pytestmark = pytest.mark.stack


def test_ingesting_the_same_partner_file_twice_adds_no_history(stack, shipment_status_job, cql, tmp_path):
    run = uuid.uuid4().hex[:8].upper()
    now_ms = int(time.time() * 1000)
    lines = ["tracking_id,carrier,raw_code,raw_text,event_time_ms,facility_id,lat,lon,vehicle_id,leg"]
    for i in range(5):
        lines.append(f"PF{run}{i},UPS,I,In transit,{now_ms - 3_600_000 + i * 60_000},HUB1,52.5,13.4,,1")
    lines.append(f"PF{run}X,UPS,I,bad coordinates,{now_ms - 60_000},HUB1,0,0,,1")
    path = tmp_path / f"ups-{run}.csv"
    path.write_text("\n".join(lines) + "\n")

    for _ in range(2):
        subprocess.run([sys.executable, "-m", "fleetflow.cli", "ingest", str(path), "--partner", "ups-sftp"],
                       check=True)

    session = cql()

    def history_rows():
        return sorted((r.tracking_id, r.event_id) for i in range(5) for r in session.execute(
            "SELECT tracking_id, event_id FROM shipment_history WHERE tracking_id = %s", (f"PF{run}{i}",)))

    deadline = time.monotonic() + 90
    rows = history_rows()
    while len(rows) < 5 and time.monotonic() < deadline:
        time.sleep(2)
        rows = history_rows()
    time.sleep(5)  # give a wrongly duplicated second ingest the chance to show up
    rows = history_rows()
    assert len(rows) == 5 and len({e for _, e in rows}) == 5
    bad = list(session.execute("SELECT event_id FROM shipment_history WHERE tracking_id = %s", (f"PF{run}X",)))
    assert bad == []
