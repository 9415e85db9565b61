"""End to end, as a person would: `migration-pipeline ui` (real `dagster dev` on a real PostgreSQL), driven
with headless Chromium (Debian's package, /usr/bin/chromium), plus the validation report rendered to PNG.

Screenshots go to artifacts/screenshots/<test>/ in the repository (git-ignored), kept after the run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from migration_pipeline_tests.conftest import REPO, SAMPLES

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="headless browser missing: /usr/bin/chromium (apt-get install -y chromium; .ci/run installs it)")

LOCATION = "migration_pipeline.definitions"
# The gates of wallet/staged/wallets: its own four, and the store-wide ones (it is the store's first table).
WALLET_CHECKS = ("row_count_reconciliation", "checksum_reconciliation", "live_row_loss", "gx_suite_wallets",
                 "key_verification", "serving")
UI_START_TIMEOUT = 240  # `dagster dev` starts in 60-90 s on a shared two-core machine
RUN_TIMEOUT = 240


def screenshots(name: str) -> Path:
    """artifacts/screenshots/<name>/, emptied: a person looks at them after the run."""
    folder = REPO / "artifacts" / "screenshots" / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cli_env(tmp: Path) -> dict[str, str]:
    """The environment of a person in the repo: the instance, reports and backups in the test's tmp dir."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "DAGSTER_PG_URL", "MIGRATION_SOURCE_ROOT", "ENCRYPTION_SECRET")}
    env.update(DAGSTER_HOME=str(tmp / "dagster_home"), MIGRATION_REPORT_DIR=str(tmp / "reports"),
               MIGRATION_BACKUP_DIR=str(tmp / "backups"), PYTHONUNBUFFERED="1")
    return env


@contextmanager
def dagster_ui(database_url: str, source_root: Path, tmp: Path) -> Iterator[str]:
    """`migration-pipeline ui` in its own process group; yields its base URL; kills the group at the end."""
    port = _free_port()
    log_path = tmp / "dagster_ui.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "migration_pipeline.cli", "ui", "--database-url", database_url,
             "--env-file", str(SAMPLES / "sample.env"), "--source-root", str(source_root), "--port", str(port)],
            cwd=REPO, env=_cli_env(tmp), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + UI_START_TIMEOUT
        while True:
            if proc.poll() is not None:
                pytest.fail(f"migration-pipeline ui exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{base}/server_info", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"Dagster UI not up after {UI_START_TIMEOUT}s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        yield base
    finally:
        for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue


@contextmanager
def browser_page(width: int = 1600, height: int = 1000) -> Iterator:  # type: ignore[type-arg]
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.set_default_timeout(30_000)
            yield page
        finally:
            browser.close()


def _materialize_wallet_group(page, base: str, shots: Path, tag: str) -> str:  # type: ignore[no-untyped-def]
    """Open the wallet asset group, click "Materialize all", confirm; return the launched run's short id."""
    page.goto(f"{base}/locations/{LOCATION}/asset-groups/wallet")
    page.get_by_text("validation_report", exact=True).first.wait_for()
    page.screenshot(path=shots / f"{tag}_1_group.png")
    page.get_by_role("button", name="Materialize all").click()
    # migration_schema is upstream of the group but not in it: Dagster asks "Are you sure?" (the
    # fixture's database already has the schema applied).
    confirm = page.get_by_role("button", name="Confirm")
    launched = page.get_by_text(re.compile(r"Launched run [0-9a-f]{8}"))
    confirm.or_(launched).first.wait_for()
    if confirm.is_visible():
        page.screenshot(path=shots / f"{tag}_2_confirm.png")
        confirm.click()
    launched.wait_for()
    match = re.search(r"Launched run ([0-9a-f]{8})", launched.inner_text())
    assert match, launched.inner_text()
    return match.group(1)


def _wait_for_run(page, base: str, short_id: str) -> str:  # type: ignore[no-untyped-def]
    """Poll the Runs page until the run's row shows a final status; return that status as shown."""
    deadline = time.monotonic() + RUN_TIMEOUT
    status = ""
    while time.monotonic() < deadline:
        page.goto(f"{base}/runs")
        link = page.locator(f'a[href^="/runs/{short_id}"]').first
        link.wait_for()
        row = link.locator("xpath=ancestor::div[contains(@class, 'RunsFeedRow_rowGrid')]").first
        text = row.inner_text()
        found = re.search(r"\b(Success|Failure|Canceled|Queued|Starting|Started|Canceling)\b", text)
        status = found.group(1) if found else text
        if status in ("Success", "Failure", "Canceled"):
            return status
        time.sleep(2)
    pytest.fail(f"run {short_id} still {status!r} after {RUN_TIMEOUT}s")


def _check_statuses(page, base: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """The Checks tab of wallet/staged/wallets: check name -> status shown in the list ("Succeeded", "Failed")."""
    page.goto(f"{base}/assets/wallet/staged/wallets?view=checks")
    page.locator('div[title="key_verification"]').first.wait_for()
    page.get_by_text(re.compile(r"^Checks \(\d+\)$")).wait_for()
    statuses = {}
    for name in WALLET_CHECKS:
        # The list entry: <span><div title=NAME>…</div><span>STATUS</span></span>
        statuses[name] = page.locator(f'div[title="{name}"] + span').first.inner_text().strip()
    return statuses


def _latest_materialization(base: str, asset_key: list[str]) -> tuple[str, str]:
    """The run id and timestamp (ms, as the UI's `time` parameter takes it) of the asset's newest
    materialization, from the webserver's GraphQL API."""
    query = ("query($key: AssetKeyInput!) { assetOrError(assetKey: $key) { ... on Asset {"
             " assetMaterializations(limit: 1) { runId timestamp } } } }")
    body = json.dumps({"query": query, "variables": {"key": {"path": asset_key}}}).encode()
    request = urllib.request.Request(f"{base}/graphql", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as resp:
        materializations = json.load(resp)["data"]["assetOrError"]["assetMaterializations"]
    assert len(materializations) == 1, materializations
    return str(materializations[0]["runId"]), str(materializations[0]["timestamp"])


def _point_wallet_at_foreign_address(source_root: Path) -> tuple[str, str]:
    """Replace wallet_1_ethereum.json's address with another valid EIP-55 address: its key now derives a
    different address, which only key_verification can notice."""
    from migration_pipeline.core.keys import derive_address, to_checksum_address

    path = source_root / "wallet" / "storage" / "wallets" / "wallet_1_ethereum.json"
    text = path.read_text()
    old = json.loads(text)["address"]
    new = to_checksum_address(derive_address("0x" + "4c" * 32))
    assert new.lower() != old.lower()
    path.write_text(text.replace(old, new))
    return old, new


@needs_chromium
def test_materialize_wallet_in_the_dagster_ui(database_url: str, tmp_path: Path) -> None:
    shots = screenshots("materialize_wallet")
    source_root = tmp_path / "source"
    shutil.copytree(SAMPLES / "wallet", source_root / "wallet")

    with dagster_ui(database_url, source_root, tmp_path) as base, browser_page() as page:
        # 1. A clean store: every gate passes, the wallet tables are promoted.
        run1 = _materialize_wallet_group(page, base, shots, "run1")
        status = _wait_for_run(page, base, run1)
        page.screenshot(path=shots / "run1_3_runs.png")
        assert status == "Success", f"run {run1} shows {status} in the Runs page (see {shots})"

        statuses = _check_statuses(page, base)
        page.get_by_text("key_verification", exact=True).first.click()
        page.get_by_text("all 13 keys decrypt and derive their stored address").wait_for()
        page.screenshot(path=shots / "run1_4_checks.png")
        assert statuses == {name: "Succeeded" for name in WALLET_CHECKS}, statuses
        assert page.get_by_text("Passed", exact=True).first.is_visible()

        # 2. One wallet's address replaced by another valid one: its key derives a different address.
        _point_wallet_at_foreign_address(source_root)
        run2 = _materialize_wallet_group(page, base, shots, "run2")
        status = _wait_for_run(page, base, run2)
        page.screenshot(path=shots / "run2_3_runs.png")
        assert status == "Failure", f"run {run2} shows {status} in the Runs page (see {shots})"

        statuses = _check_statuses(page, base)
        page.get_by_text("key_verification", exact=True).first.click()
        page.get_by_text("1 of 13 wallet keys fail verification").first.wait_for()
        page.screenshot(path=shots / "run2_4_checks.png")
        assert statuses["key_verification"] == "Failed", statuses
        assert all(s == "Succeeded" for n, s in statuses.items() if n != "key_verification"), statuses

        # The run page: wallet__live was not executed because the blocking gate failed.
        page.goto(f"{base}/runs")
        page.locator(f'a[href^="/runs/{run2}"]').first.click()
        page.get_by_text(re.compile(r"^Not executed \(2\)$")).wait_for()
        page.get_by_text("Dependencies for step wallet__live failed").first.wait_for()
        page.screenshot(path=shots / "run2_5_run.png")

        # wallet/wallets (live): the failed run did not materialize it; the last materialization is still run 1's.
        page.goto(f"{base}/assets/wallet/wallets?view=events")
        banner = page.get_by_text(re.compile(rf"Run\s+{run2}\s+failed, and did not materialize this asset"))
        banner.wait_for()
        page.screenshot(path=shots / "run2_6_live_events.png")
        # The tab opens on the newest event, run 2's observation of the staged table; the newest
        # materialization (as Dagster's API tells it) is run 1's, and its detail says so on screen.
        run_id, timestamp = _latest_materialization(base, ["wallet", "wallets"])
        assert run_id.startswith(run1), (run_id, run1)
        page.goto(f"{base}/assets/wallet/wallets?view=events&time={timestamp}")
        page.get_by_text(re.compile(rf"Materialized in run\s+{run1}")).first.wait_for()
        page.screenshot(path=shots / "run2_7_live_materialization.png")
        assert page.get_by_text(re.compile(rf"Materialized in run\s+{run2}")).count() == 0


def _backfill_all_shards(page, base: str, shots: Path) -> None:  # type: ignore[no-untyped-def]
    """wallet/shards → Materialize… → (upstream warning) Confirm → All 16 partitions → Launch backfill."""
    page.goto(f"{base}/assets/wallet/shards")
    page.locator("button", has_text="Materialize").first.click()
    confirm = page.get_by_role("button", name="Confirm")
    launch = page.get_by_role("button", name="Launch backfill")
    confirm.or_(launch).first.wait_for()
    if confirm.is_visible():  # migration_schema and wallet/backup were never materialized on this instance
        confirm.click()
    page.get_by_role("button", name="All", exact=True).click()
    page.get_by_text("16 partitions", exact=True).first.wait_for()
    page.screenshot(path=shots / "backfill_1_modal.png")
    launch.click()
    launch.wait_for(state="hidden")


def _wait_for_partitions(page, base: str, shots: Path, asset: str = "wallet/shards",  # type: ignore[no-untyped-def]
                         total: int = 16, shot: str = "backfill_2_partitions.png") -> str:
    """Poll the asset's Partitions tab until all `total` partitions are materialized or one failed."""
    deadline = time.monotonic() + RUN_TIMEOUT
    summary = ""
    while time.monotonic() < deadline:
        page.goto(f"{base}/assets/{asset}?view=partitions")
        page.get_by_text(re.compile(r"^Missing \(\d+\)$")).first.wait_for()
        counts = {k: int(v) for k, v in re.findall(r"(Failed|Materialized|Missing) \((\d+)\)",
                                                     page.locator("body").inner_text())}
        summary = str(counts)
        if counts.get("Materialized") == total or counts.get("Failed"):
            page.screenshot(path=shots / shot)
            return summary
        time.sleep(2)
    pytest.fail(f"backfill of {asset} not done after {RUN_TIMEOUT}s: {summary}")


def _backfill_status(page, base: str, partitions: str = "16 partitions") -> str:  # type: ignore[no-untyped-def]
    """The status shown on the Backfills page for the one backfill, once it is final."""
    deadline = time.monotonic() + RUN_TIMEOUT
    status = ""
    while time.monotonic() < deadline:
        page.goto(f"{base}/overview/backfills")
        page.get_by_text(partitions, exact=True).first.wait_for()
        found = re.search(r"\b(Success|Failed|Canceled|Started|In progress)\b",
                          page.locator("main, body").first.inner_text().split("Duration", 1)[-1])
        status = found.group(1) if found else ""
        if status not in ("Started", "In progress", ""):
            return status
        time.sleep(2)
    return status


@needs_chromium
def test_backfill_of_the_shards_from_the_dagster_ui(database_url: str, tmp_path: Path) -> None:
    """A data engineer backfills all 16 shards from the asset's Materialize… dialog (one run, by the
    backfill policy), then materializes the wallet group: staging finds every unit loaded and only
    finishes, gates and promotes."""
    from migration_pipeline.core.database import connect

    shots = screenshots("backfill_shards")
    source_root = tmp_path / "source"
    shutil.copytree(SAMPLES / "wallet", source_root / "wallet")

    with dagster_ui(database_url, source_root, tmp_path) as base, browser_page() as page:
        _backfill_all_shards(page, base, shots)
        assert _wait_for_partitions(page, base, shots) == str({"Failed": 0, "Materialized": 16, "Missing": 0})

        # The Backfills page lists it: 16 partitions of wallet/shards; the daemon marks it done shortly after.
        assert _backfill_status(page, base) == "Success", f"see {shots}"
        page.screenshot(path=shots / "backfill_3_backfills.png")

        with connect(database_url) as conn:
            backfill_runs = conn.execute(
                "SELECT DISTINCT run_id FROM migration.unit_progress WHERE store = 'wallet'").fetchall()
        assert len(backfill_runs) == 1  # every unit was committed by the backfill's single run

        run = _materialize_wallet_group(page, base, shots, "after_backfill")
        assert _wait_for_run(page, base, run) == "Success"
        with connect(database_url) as conn:
            loaders = conn.execute(
                "SELECT DISTINCT run_id FROM migration.unit_progress WHERE store = 'wallet'").fetchall()
            phase = conn.execute("SELECT phase FROM migration.store_phase WHERE store = 'wallet'").fetchone()
            wallets = conn.execute("SELECT count(*) FROM wallet.wallets").fetchone()
    assert loaders == backfill_runs  # the group's run read no file again
    assert phase == ("promoted",)
    assert wallets == (16,)  # data_samples/wallet/EXPECTED.md: "Loaded (16 wallets)"


@needs_chromium
def test_validation_report_renders(database_url: str, tmp_path: Path) -> None:
    env = _cli_env(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "migration_pipeline.cli", "run", "--database-url", database_url,
         "--env-file", str(SAMPLES / "sample.env"), "--source-root", str(SAMPLES), "--store", "wallet"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    reports = sorted((tmp_path / "reports" / "wallet").glob("*/report.html"), key=lambda p: p.stat().st_mtime)
    assert reports, f"no report.html under {tmp_path / 'reports'}:\n{done.stdout}"
    report = reports[-1]

    png = tmp_path / "report.png"
    with browser_page(width=1280, height=900) as page:
        page.goto(report.as_uri())
        page.wait_for_load_state("load")
        page.screenshot(path=png, full_page=True)
        text = page.locator("body").inner_text()

    for table in ("wallets", "users", "wallet_metadata", "wallet_audit_log"):
        assert table in text, table
    assert "passed" in text
    for reason in ("bad_checksum", "duplicate_key", "empty_file", "fid_mismatch", "invalid_address",
                   "invalid_iv", "invalid_json", "not_an_object"):
        assert reason in text, reason
    assert png.stat().st_size > 20_000, png.stat().st_size


def _open_asset(page, base: str, path: str, wait_for: str) -> str:  # type: ignore[no-untyped-def]
    """The asset's page once `wait_for` shows (and its row count, on the Overview); return the page's text."""
    page.goto(f"{base}/assets/{path}")
    page.get_by_text(wait_for, exact=True).first.wait_for(timeout=90_000)
    if "?view=" not in path:
        page.get_by_text(re.compile(r"^Row count$")).first.wait_for(timeout=90_000)
    return str(page.locator("body").inner_text())


def _launchpad(page, base: str, job: str, op: str, config: dict[str, str]):  # type: ignore[no-untyped-def]
    """The job's Launchpad with `config` for `op` filled in (the config as YAML in the URL, as "Open in
    Launchpad" does); returns the Launch Run button once the config was validated."""
    yaml = f"ops:\n  {op}:\n    config:\n" + "".join(f"      {k}: '{v}'\n" for k, v in config.items())
    page.goto(f"{base}/locations/{LOCATION}/jobs/{job}/playground/setup?" + urllib.parse.urlencode({"config": yaml}))
    button = page.get_by_role("button", name="Launch Run")
    button.wait_for()
    page.get_by_text(re.compile(r"^(ERRORS|No errors)$")).first.wait_for()
    time.sleep(1)  # the validation of the config as typed settles
    return button


def _launch(page, button) -> str:  # type: ignore[no-untyped-def]
    """Click Launch Run; return the new run's full id (the UI opens its page)."""
    button.click()
    page.wait_for_url(re.compile(r"/runs/[0-9a-f-]{36}"), timeout=60_000)
    match = re.search(r"/runs/([0-9a-f-]{36})", page.url)
    assert match, page.url
    return match.group(1)


@needs_chromium
def test_per_table_assets_typed_launchpad_and_no_false_alarms(database_url: str, tmp_path: Path) -> None:
    """A clean demo in the UI: Materialize all of the wallet group (no upstream prompt, tagged with its store),
    each table an asset with its row count and its column schema from the catalog, the Launchpad refusing an
    unknown store before the run and an empty approver in one line, a cutover recorded on the live tables, and
    no Unsynced badge at the end."""
    shots = screenshots("per_table_assets")
    source_root = tmp_path / "source"
    shutil.copytree(SAMPLES / "wallet", source_root / "wallet")

    with dagster_ui(database_url, source_root, tmp_path) as base, browser_page() as page:
        page.goto(f"{base}/locations/{LOCATION}/asset-groups/wallet")
        page.get_by_text("validation_report", exact=True).first.wait_for()
        page.get_by_role("button", name=re.compile("Materialize all")).click()
        launched = page.get_by_text(re.compile(r"Launched run [0-9a-f]{8}"))
        launched.wait_for()  # at once: no "upstream not materialized" prompt for the correct graph
        match = re.search(r"Launched run ([0-9a-f]{8})", launched.inner_text())
        assert match
        run = match.group(1)
        assert _wait_for_run(page, base, run) == "Success"
        row = page.locator(f'a[href^="/runs/{run}"]').first.locator(
            "xpath=ancestor::div[contains(@class, 'RunsFeedRow_rowGrid')]").first
        assert "migration/store: wallet" in row.inner_text()  # tagged like a CLI run
        page.screenshot(path=shots / "1_runs.png")

        # A staged table: its row count, its storage, its columns with types, nullability and keys.
        _open_asset(page, base, "wallet/staged/wallets", "Columns")
        for expected in ("wallet__staging.wallets", "PRIMARY KEY (id)", "UNIQUE (fid, chain)", "encrypted_private_key",
                         "character varying(42)"):
            page.get_by_text(expected, exact=True).first.wait_for()
        page.screenshot(path=shots / "2_staged_wallets.png", full_page=True)
        text = str(page.locator("body").inner_text())
        assert re.search(r"Row count\s+16\b", text), text[:2000]
        text = _open_asset(page, base, "wallet/staged/wallets?view=checks", "key_verification")
        page.get_by_text("Checks (6)", exact=True).wait_for()
        page.screenshot(path=shots / "2b_staged_wallets_checks.png")

        # The live table, produced by the promotion: 16 rows in wallet.wallets, downstream of the staged one.
        _open_asset(page, base, "wallet/wallets", "Columns")
        page.get_by_text("wallet.wallets", exact=True).first.wait_for()
        page.screenshot(path=shots / "3_live_wallets.png", full_page=True)
        assert re.search(r"Row count\s+16\b", str(page.locator("body").inner_text()))

        # The Launchpad refuses a store that is not registered before any run starts.
        button = _launchpad(page, base, "cutover_store", "cut_over_store", {"store": "walet", "approved_by": "Alice"})
        page.get_by_text("Value at path root:ops:cut_over_store:config:store not in enum type StoreName got walet"
                         ).wait_for()
        page.screenshot(path=shots / "4_launchpad_unknown_store.png")
        assert button.is_disabled()

        # An empty approver: the run's only step refuses it, in one line, and nothing changes.
        button = _launchpad(page, base, "cutover_store", "cut_over_store", {"store": "wallet", "approved_by": "  "})
        refused = _launch(page, button)
        assert _wait_for_run(page, base, refused[:8]) == "Failure"
        page.goto(f"{base}/runs/{refused}")
        page.get_by_text("approved_by is empty: give the name of the person (it is recorded)").first.wait_for()
        page.screenshot(path=shots / "5_empty_approver_run.png")

        # The cutover by a person: what is approved is logged first; the live tables record who and when.
        button = _launchpad(page, base, "cutover_store", "cut_over_store",
                            {"store": "wallet", "approved_by": "Alice Reviewer"})
        cut = _launch(page, button)
        assert _wait_for_run(page, base, cut[:8]) == "Success"
        page.goto(f"{base}/runs/{cut}")
        page.get_by_text(re.compile(r"wallet: about to approve plan [0-9a-f]+ of run [0-9a-f-]{36} \(")).first.wait_for()
        page.screenshot(path=shots / "6_cutover_run.png")
        page.goto(f"{base}/assets/wallet/wallets?view=events")
        page.get_by_text("wallet cut over, approved by Alice Reviewer").first.wait_for(timeout=90_000)
        page.screenshot(path=shots / "7_live_events.png")

        # After the demo every asset is synced: no Unsynced badge on the group.
        page.goto(f"{base}/locations/{LOCATION}/asset-groups/wallet")
        page.get_by_text("validation_report", exact=True).first.wait_for()
        page.get_by_text("Materialized", exact=True).nth(9).wait_for(timeout=90_000)
        time.sleep(3)
        page.screenshot(path=shots / "8_group_after_demo.png")
        assert page.get_by_text("Unsynced").count() == 0


PEND_DAYS = ("2024-03-01", "2024-03-02")  # data_samples/pend/explorer-data/: the two day folders


def _wait_for_pend_days(page, base: str) -> None:  # type: ignore[no-untyped-def]
    """The Partitions tab of pend/days, once the partition sensor (on by default) added both day folders."""
    deadline = time.monotonic() + UI_START_TIMEOUT
    while time.monotonic() < deadline:
        page.goto(f"{base}/assets/pend/days?view=partitions")
        page.get_by_role("button", name=re.compile("Materialize")).first.wait_for()
        time.sleep(2)
        if re.search(r"Missing \(2\)", page.locator("body").inner_text()):
            return
        time.sleep(3)
    pytest.fail(f"the pend partition sensor did not add {PEND_DAYS} within {UI_START_TIMEOUT}s")


@needs_chromium
def test_backfill_of_the_pend_days_from_the_dagster_ui(database_url: str, tmp_path: Path) -> None:
    """The partition sensor adds the two explorer day folders as partitions of pend/days; a data engineer
    backfills All of them from the asset's Materialize… dialog (one run, by the backfill policy): both days
    show as materialized, and their events are in pend's staging."""
    from migration_pipeline.core.database import connect

    shots = screenshots("backfill_pend_days")
    source_root = tmp_path / "source"
    shutil.copytree(SAMPLES / "pend", source_root / "pend")

    with dagster_ui(database_url, source_root, tmp_path) as base, browser_page() as page:
        _wait_for_pend_days(page, base)
        page.screenshot(path=shots / "1_partitions_before.png")
        page.get_by_role("button", name=re.compile("Materialize")).first.click()
        confirm = page.get_by_role("button", name="Confirm")
        launch = page.get_by_role("button", name="Launch backfill")
        confirm.or_(launch).first.wait_for()
        if confirm.is_visible():  # migration_schema and pend/backup were never materialized on this instance
            page.screenshot(path=shots / "2_confirm.png")
            confirm.click()
        page.get_by_role("dialog").get_by_role("button", name="All", exact=True).first.click()
        page.get_by_text("2 partitions", exact=True).first.wait_for()
        page.screenshot(path=shots / "3_launch_dialog.png")
        launch.click()
        launch.wait_for(state="hidden")

        assert _wait_for_partitions(page, base, shots, "pend/days", 2, "4_partitions_after.png") == str(
            {"Failed": 0, "Materialized": 2, "Missing": 0})
        for day in PEND_DAYS:
            assert page.get_by_text(day).count() > 0, day
        assert _backfill_status(page, base, "2 partitions") == "Success", f"see {shots}"
        page.screenshot(path=shots / "5_backfills.png")

        with connect(database_url) as conn:
            runs = conn.execute("SELECT DISTINCT run_id FROM migration.unit_progress WHERE store = 'pend'").fetchall()
            days = conn.execute("SELECT day::text, count(*) FROM pend__staging.blockchain_events GROUP BY day ORDER BY day"
                                ).fetchall()
    assert len(runs) == 1  # both days were loaded by the backfill's single run
    # data_samples/pend/EXPECTED.md: 2024-03-01 loads 2 ethereum + 2 polygon events, 2024-03-02 one base event;
    # ethereum's [2] repeats [0]'s key and stays staged until the staged table is finished (whole-store
    # duplicates are quarantined then, not by a day's load).
    assert days == [("2024-03-01", 5), ("2024-03-02", 1)]
