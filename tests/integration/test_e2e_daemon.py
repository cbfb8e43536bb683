"""End to end through a real webserver and daemon: a backfill, a scheduled run and the revalidation sensor.

``dagster-webserver`` and ``dagster-daemon`` run from ``workspace.yaml`` on 127.0.0.1 with a temporary
DAGSTER_HOME (sqlite storage; run queue, concurrency limits and pools from ``deploy/dagster.yaml``).

* A backfill over GraphQL packages two days of the synthetic collection.
* At the same time the schedule ``package_previous_partition``, started over GraphQL, fires through
  the daemon's scheduler: its cron is every minute here (``partitions.schedule.cron``), and its
  ``lag`` reaches back from the tick's day to 2020-01-03, a day of the synthetic collection the backfill
  does not touch. Its run must package the partition the tick's time gives.
* Then one relocated copy is changed and its partition's relocated lock written again; the revalidation
  sensor, started over GraphQL, requests a ``revalidate`` run for that partition whose
  ``validation_clean`` check fails for exactly that object.
* The footprint map reaches the UI: GraphQL serves the items' materialization with its Markdown image.

Both servers start in their own session with INT/TERM at their defaults, and the whole process group
(code servers, run workers) is stopped at the end whatever happens.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest
import yaml

from devservers.process import free_port
from tests.integration.test_partitions import DAYS, partition_env  # noqa: F401 (fixture)

# Opt-in: 2-4 min on an idle 2-core machine (backfill about 110 s), up to 6.5 min measured under load,
# so it stays out of `make test`. Run it with STAC_PACKAGER_E2E=1.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(600),
              pytest.mark.skipif(os.environ.get("STAC_PACKAGER_E2E") != "1",
                                 reason="webserver + daemon end to end: set STAC_PACKAGER_E2E=1")]

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
LOCATION = {"repositoryLocationName": "stac_packager", "repositoryName": "__repository__"}


class Servers:
    def __init__(self, env: dict[str, str], logs: Path):
        self.env, self.logs, self.procs = env, logs, []

    def start(self, name: str, *args: str) -> None:
        log = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115 (closed with the process)
        proc = subprocess.Popen(["env", "--default-signal=INT,TERM", str(BIN / name), *args], cwd=REPO,
                                env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        self.procs.append((proc, log))

    def stop(self) -> None:
        for proc, _ in self.procs:
            _signal_group(proc, signal.SIGINT)
        deadline = time.monotonic() + 20
        for proc, log in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            _signal_group(proc, signal.SIGKILL)  # whatever is left of the group: code servers, run workers
            proc.wait(timeout=10)
            log.close()


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)  # start_new_session: the group id is the child's pid


class GraphQL:
    def __init__(self, port: int):
        self.url = f"http://127.0.0.1:{port}/graphql"

    def __call__(self, query: str, **variables) -> dict:
        response = httpx.post(self.url, json={"query": query, "variables": variables}, timeout=60)
        response.raise_for_status()
        body = response.json()
        assert "errors" not in body, body["errors"]
        return body["data"]


def _wait(what: str, check, timeout: float, every: float = 2.0):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def _up(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/server_info", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


RUNS = """query($filter: RunsFilter) { runsOrError(filter: $filter) { __typename
  ... on Runs { results { runId status tags { key value } } } ... on PythonError { message } } }"""


SCHEDULE = "package_previous_partition"
#: the day the scheduled run packages when it ticks today (UTC); tomorrow's tick gives the day after
SCHEDULED_DAY = dt.date(2020, 1, 3)


def test_backfill_schedule_and_sensor_revalidation(partition_env, s3_client, tmp_path):  # noqa: F811
    started = time.monotonic()
    settings = partition_env["settings"].model_copy(deep=True)
    settings.validation.sensor_interval_seconds = 5
    # every minute, packaging the day `lag` days before the tick's: 2020-01-03 (or 04 after midnight)
    lag = (dt.datetime.now(dt.UTC).date() - SCHEDULED_DAY).days
    settings.partitions.schedule.cron = "* * * * *"
    settings.partitions.schedule.lag = lag
    package, mirror = partition_env["package"], partition_env["mirror"]
    config = tmp_path / "settings.yaml"
    config.write_text(yaml.safe_dump(settings.model_dump(mode="json")))
    home = tmp_path / "dagster_home"
    home.mkdir()
    instance_config = yaml.safe_load((REPO / "deploy" / "dagster.yaml").read_text())
    del instance_config["storage"]  # sqlite in DAGSTER_HOME; the rest (queue, limits, pools) as deployed
    instance_config["run_coordinator"]["config"]["dequeue_interval_seconds"] = 1
    (home / "dagster.yaml").write_text(yaml.safe_dump(instance_config))
    env = {**os.environ, "DAGSTER_HOME": str(home), "STAC_PACKAGER_CONFIG": str(config),
           "DAGSTER_DISABLE_TELEMETRY": "1", "PYTHONUNBUFFERED": "1"}
    port = free_port()
    # Create the storage once before the two servers start: both would migrate a fresh sqlite home at once
    # and one dies on "table alembic_version already exists" (a deployment runs this step too).
    subprocess.run([str(Path(sys.executable).parent / "dagster"), "instance", "migrate"], env=env, cwd=REPO,
                   check=True, capture_output=True, timeout=300)
    servers = Servers(env, tmp_path)
    try:
        servers.start("dagster-webserver", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port))
        servers.start("dagster-daemon", "run", "-w", "workspace.yaml")
        _wait("the webserver", lambda: _up(port), 120)
        print(f"\n[{time.monotonic() - started:.0f} s] webserver up", flush=True)
        gql = GraphQL(port)

        chain = ["search_results", "items_parquet", "assets_lock", "relocated_assets", "validation_report"]
        launched = gql("""mutation($b: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $b) {
            __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }""",
                       b={"assetSelection": [{"path": [a]} for a in chain], "partitionNames": DAYS,
                          "tags": [{"key": "trigger", "value": "e2e-test"}]})["launchPartitionBackfill"]
        assert launched["__typename"] == "LaunchBackfillSuccess", launched
        backfill = launched["backfillId"]
        # the schedule starts now, so its first tick (the next minute) overlaps the backfill
        schedule_selector = {**LOCATION, "scheduleName": SCHEDULE}
        state = gql("""mutation($s: ScheduleSelector!) { startSchedule(scheduleSelector: $s) { __typename
            ... on ScheduleStateResult { scheduleState { status } } ... on PythonError { message } } }""",
                    s=schedule_selector)["startSchedule"]
        assert state["__typename"] == "ScheduleStateResult" and state["scheduleState"]["status"] == "RUNNING", state

        done: dict[str, float] = {}
        schedule = gql("""query($s: ScheduleSelector!) { scheduleOrError(scheduleSelector: $s) {
            ... on Schedule { id } } }""", s=schedule_selector)["scheduleOrError"]["id"]

        def backfill_status():
            status = gql("""query($id: String!) { partitionBackfillOrError(backfillId: $id) {
                ... on PartitionBackfill { status } } }""", id=backfill)["partitionBackfillOrError"]["status"]
            assert status in ("REQUESTED", "COMPLETED", "COMPLETED_SUCCESS"), f"backfill {status}"
            return status in ("COMPLETED", "COMPLETED_SUCCESS")

        def backfill_runs():
            return gql(RUNS, filter={"tags": [{"key": "dagster/backfill", "value": backfill}]})["runsOrError"]["results"]

        def backfill_done():
            # its runs, not its status: the backfill daemon marks it complete on its next pass (every 30 s),
            # which the sensor part below overlaps; the status is checked at the end
            found = backfill_runs()
            assert all(r["status"] not in ("FAILURE", "CANCELED") for r in found), found
            return len(found) == len(DAYS) and all(r["status"] == "SUCCESS" for r in found)

        def scheduled_runs():
            return gql(RUNS, filter={"tags": [{"key": "dagster/schedule_name", "value": SCHEDULE}]}
                       )["runsOrError"]["results"]

        def scheduled_done():
            found = scheduled_runs()
            if found and "stopped" not in done:  # one tick is enough: stop it before the next minute
                stopped = gql("""mutation($id: String!) { stopRunningSchedule(id: $id) { __typename
                    ... on ScheduleStateResult { scheduleState { status } } } }""", id=schedule)["stopRunningSchedule"]
                assert stopped["scheduleState"]["status"] == "STOPPED", stopped
                done["stopped"] = time.monotonic() - started
            assert all(r["status"] not in ("FAILURE", "CANCELED") for r in found), found
            return bool(found) and all(r["status"] == "SUCCESS" for r in found)

        def both_done():  # one loop waits for both, so the scheduled run costs no wall time of its own
            for name, check in (("backfill", backfill_done), ("schedule", scheduled_done)):
                if name not in done and check():
                    done[name] = time.monotonic() - started
                    print(f"[{done[name]:.0f} s] {name} done", flush=True)
            return "backfill" in done and "schedule" in done

        _wait("the backfill's and the scheduled run", both_done, 300, every=3)
        runs = backfill_runs()
        assert sorted(next(t["value"] for t in r["tags"] if t["key"] == "dagster/partition") for r in runs) == DAYS
        assert {r["status"] for r in runs} == {"SUCCESS"}
        backfill_seconds = done["backfill"]

        # the scheduled run(s): fired by the daemon's scheduler, the partition derived from the tick's time
        # (two only if a tick on each side of midnight came before the schedule was stopped)
        ticks = gql("""query($s: ScheduleSelector!) { scheduleOrError(scheduleSelector: $s) { ... on Schedule {
            scheduleState { status ticks(limit: 20) { timestamp status runIds } } } } }""", s=schedule_selector
                    )["scheduleOrError"]["scheduleState"]
        assert ticks["status"] == "STOPPED"
        scheduled_days = []
        for scheduled in scheduled_runs():
            [tick] = [t for t in ticks["ticks"] if scheduled["runId"] in t["runIds"]]
            tick_day = dt.datetime.fromtimestamp(tick["timestamp"], dt.UTC).date()
            day = (tick_day - dt.timedelta(days=lag)).isoformat()
            assert day in ("2020-01-03", "2020-01-04") and tick["status"] == "SUCCESS"
            tags = {t["key"]: t["value"] for t in scheduled["tags"]}
            assert scheduled["status"] == "SUCCESS"
            assert tags["dagster/schedule_name"] == SCHEDULE and tags["dagster/partition"] == day
            assert tags["stac-packager/package"] == f"s3://{package}/packages/synth/partitions/{day}"
            root = f"packages/synth/partitions/{day}"
            request = s3_client.get_object(Bucket=package, Key=f"{root}/search/request.json")["Body"].read()
            assert yaml.safe_load(request)["datetime"] == f"{day}T00:00:00Z/{day}T23:59:59.999999Z"
            assert s3_client.head_object(Bucket=package, Key=f"{root}/validation/report.parquet")
            scheduled_days.append(day)
            print(f"scheduled run {scheduled['runId'][:8]} packaged {day} (tick on {tick_day}, lag {lag} days)")

        # the footprint map, as the UI gets it: Markdown metadata of the items' materialization
        entries = gql("""query($k: AssetKeyInput!, $p: [String!]) { assetOrError(assetKey: $k) { ... on Asset {
            assetMaterializations(partitions: $p, limit: 1) { partition metadataEntries { label
              ... on MarkdownMetadataEntry { mdStr } } } } } }""", k={"path": ["items_parquet"]}, p=[DAYS[0]]
                      )["assetOrError"]["assetMaterializations"]
        footprints = next(e["mdStr"] for e in entries[0]["metadataEntries"] if e["label"] == "footprints")
        assert footprints.startswith("![Footprints of ") and "](data:image/png;base64,iVBORw0KGgo" in footprints

        # One copy of the second day changes; its relocated lock is written again after its validation.
        lock_key = f"packages/synth/partitions/{DAYS[1]}/relocated/assets.lock.parquet"
        body = s3_client.get_object(Bucket=package, Key=lock_key)["Body"].read()
        victim = pq.read_table(io.BytesIO(body)).to_pylist()[2]
        time.sleep(1.1)  # S3 times have 1 s resolution
        s3_client.put_object(Bucket=mirror, Key=victim["key"], Body=b"not the locked bytes")
        s3_client.put_object(Bucket=package, Key=lock_key, Body=body)

        state = gql("""mutation($s: SensorSelector!) { startSensor(sensorSelector: $s) { __typename
            ... on Sensor { sensorState { status } } ... on PythonError { message } } }""",
                    s={**LOCATION, "sensorName": "revalidate_packages"})["startSensor"]
        assert state["__typename"] == "Sensor" and state["sensorState"]["status"] == "RUNNING", state

        sensor_filter = {"tags": [{"key": "dagster/sensor_name", "value": "revalidate_packages"}]}

        def revalidated():
            found = gql(RUNS, filter=sensor_filter)["runsOrError"]["results"]
            finished = [r for r in found if r["status"] in ("SUCCESS", "FAILURE", "CANCELED")]
            return finished if finished and len(finished) == len(found) else None

        [run] = _wait("the sensor's revalidation run", revalidated, 150, every=3)
        tags = {t["key"]: t["value"] for t in run["tags"]}
        assert run["status"] == "SUCCESS"  # the asset is written; its check tells the drift
        assert tags["dagster/partition"] == DAYS[1] and tags["stac-packager/reason"] == "lock-changed"
        assert tags["stac-packager/package"] == f"s3://{package}/packages/synth/partitions/{DAYS[1]}"

        executions = gql("""query($k: AssetKeyInput!) { assetCheckExecutions(assetKey: $k,
            checkName: "validation_clean", limit: 10) { runId status partition
            evaluation { success metadataEntries { label ... on IntMetadataEntry { intValue } } } } }""",
                         k={"path": ["validation_report"]})["assetCheckExecutions"]
        print(f"[{time.monotonic() - started:.0f} s] revalidated", flush=True)
        [failed] = [e for e in executions if e["runId"] == run["runId"]]
        assert failed["status"] == "FAILED" and failed["partition"] == DAYS[1]
        metadata = {m["label"]: m.get("intValue") for m in failed["evaluation"]["metadataEntries"]}
        assert metadata["drifted"] == 1
        # the backfill's and the scheduled run's
        assert sorted(e["partition"] for e in executions if e["status"] == "SUCCEEDED") == \
            sorted([*DAYS, *scheduled_days])

        report_key = f"packages/synth/partitions/{DAYS[1]}/validation/report.parquet"
        report = pq.read_table(io.BytesIO(s3_client.get_object(Bucket=package, Key=report_key)["Body"].read()))
        assert [(r["item_id"], r["asset_key"]) for r in report.to_pylist() if r["status"] != "ok"] == \
            [(victim["item_id"], victim["asset_key"])]
        _wait("the backfill's completion", backfill_status, 60, every=3)
        print(f"\ne2e: backfill of {len(DAYS)} partitions done after {backfill_seconds:.0f} s, scheduled run "
              f"after {done['schedule']:.0f} s; whole test {time.monotonic() - started:.0f} s")
    finally:
        servers.stop()
        for name in ("dagster-webserver", "dagster-daemon"):
            log = tmp_path / f"{name}.log"
            if log.exists():
                print(f"--- {name} (tail)\n" + "\n".join(log.read_text(errors="replace").splitlines()[-15:]))
