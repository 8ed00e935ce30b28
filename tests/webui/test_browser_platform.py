"""The trials table in a real browser (headless Chromium, as ``test_browser.py``): a Platform column for an experiment
on several platforms, none for an experiment on one."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import sync_playwright

from nni_pl.experiment import store as st
from nni_pl.webui import serve
from tests.webui.test_browser import CHROMIUM, CHROMIUM_FLAGS, _missing
from tests.webui.test_platform import HYBRID, make_store

# the import above does not skip this module when test_browser.py was collected (and skipped) first in this
# process: pytest keeps that module, half-imported, in sys.modules
if not CHROMIUM.exists():
    _missing(f"no browser at {CHROMIUM}: apt-get install -y chromium")


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = st.sqlite_url(tmp_path_factory.mktemp("platform") / "store.sqlite")
    make_store(url, "hybr0001", ["remote", "local", None], HYBRID).close()
    make_store(url, "loca0001", ["local", "local"], {"platform": "local"}).close()
    server = serve(url, port=0)
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="module")
def page(dashboard: str) -> Iterator[object]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS)
        try:
            pg = browser.new_page()
            pg.set_default_timeout(30_000)
            errors: list[str] = []
            pg.on("pageerror", lambda e: errors.append(str(e)))
            yield pg
            assert not errors, f"JavaScript errors on the page: {errors}"
        finally:
            browser.close()


def test_a_hybrid_experiments_trials_table_shows_each_trials_platform(dashboard, page):
    page.goto(f"{dashboard}#/exp/hybr0001/trials")
    page.wait_for_function("document.querySelectorAll('#trials tbody tr').length === 3")
    assert page.locator("th[data-sort='platform']").is_visible()
    assert page.locator("#trials tbody td[data-col='platform']").all_inner_texts() == [
        "remote",
        "local",
        "\u2013",
    ]
    page.fill("#trial-filter", "remote")
    assert page.locator("#trials tbody tr").count() == 1
    page.fill("#trial-filter", "")  # the filter is kept across pages
    page.goto(f"{dashboard}#/exp/hybr0001/trial/t0")
    page.wait_for_selector("#trial-platform")
    assert page.locator("#trial-platform").inner_text() == "remote"


def test_a_single_platform_experiment_has_no_platform_column(dashboard, page):
    page.goto(f"{dashboard}#/exp/loca0001/trials")
    page.wait_for_function("document.querySelectorAll('#trials tbody tr').length === 2")
    assert not page.locator("th[data-sort='platform']").is_visible()
    assert page.locator("#trials tbody td[data-col='platform']").count() == 0
    assert (
        page.locator("#trials tbody tr").first.locator("td").count()
        == page.locator("#trials thead th:visible").count()
    )
