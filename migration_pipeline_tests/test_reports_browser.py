"""The report and the Data Docs in a real browser (headless Chromium) with every network request refused: the
Data Docs index draws its table of suites, a suite's page its expectations, and the report its charts.
Screenshots go to artifacts/screenshots/."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .test_reports import SITE, _stage_and_report

SCREENSHOTS = Path(__file__).resolve().parents[1] / "artifacts" / "screenshots"
CHROMIUM = "/usr/bin/chromium"

pytestmark = pytest.mark.slow


@pytest.fixture
def offline_page() -> Iterator[tuple[Any, list[str]]]:
    """A Chromium page whose every request other than a file: URL is aborted (and listed)."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        pytest.skip("no Chromium at /usr/bin/chromium")
    refused: list[str] = []

    def only_files(route: Any) -> None:
        if route.request.url.startswith("file:"):
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.route("**/*", only_files)
            yield page, refused
        finally:
            browser.close()


def test_data_docs_and_the_report_render_with_no_network(
    database_url: str, tmp_path: Path, offline_page: tuple[Any, list[str]]
) -> None:
    page, refused = offline_page
    report = _stage_and_report(database_url, tmp_path / "reports", "run-a")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    index = report.parent / SITE / "index.html"
    page.goto(index.as_uri())
    page.wait_for_load_state("load")
    # bootstrap-table draws the index's rows from data in a script: blank when its scripts did not load.
    rows = page.locator("#section-1-content-block-2-1-body-table tbody tr")
    rows.first.wait_for(state="visible", timeout=15_000)
    assert rows.count() == 8
    for table in ("users", "blockchain_events", "kyc_documents"):
        assert page.locator("#section-1-content-block-2-1-body-table").get_by_role(
            "link", name=f"pend.{table}", exact=True).is_visible()
    # Font Awesome's success icon has a width only when its font and stylesheet loaded.
    icon = page.locator(".ge-success-icon").first.bounding_box()
    assert icon is not None and icon["width"] > 4
    page.screenshot(path=str(SCREENSHOTS / "data_docs_index.png"), full_page=True)

    suite = report.parent / SITE / "expectations" / "pend" / "kyc_documents.html"
    page.goto(suite.as_uri())
    page.wait_for_load_state("load")
    assert page.get_by_text("expect_column_values_to_be_in_set", exact=False).count() + page.get_by_text(
        "values must belong to this set", exact=False).count() > 0
    page.screenshot(path=str(SCREENSHOTS / "data_docs_suite.png"), full_page=True)

    page.goto(report.as_uri())
    page.wait_for_load_state("load")
    charts = page.locator("figure svg")
    assert charts.count() == 5
    for i in range(5):
        box = charts.nth(i).bounding_box()
        assert box is not None and box["width"] > 300 and box["height"] > 100
    bars = page.locator("figure svg rect.rect.reactive")
    assert bars.count() > 20  # pygal's bars (16 in the tables chart alone: live and staged per table)
    assert page.get_by_text("migration-pipeline cutover --store pend --approved-by NAME").is_visible()
    page.screenshot(path=str(SCREENSHOTS / "report_pend.png"), full_page=True)
    page.screenshot(path=str(SCREENSHOTS / "report_pend_top.png"))  # what a reviewer sees first
    for i in range(5):
        page.locator("figure").nth(i).screenshot(path=str(SCREENSHOTS / f"report_pend_chart_{i + 1}.png"))

    assert refused == []  # nothing even tried to load from the network
    assert errors == []
