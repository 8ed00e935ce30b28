"""The dashboard in a real browser: headless Debian Chromium driven by Playwright, over a real experiment.

One experiment runs for the whole module (function trials in spawned workers, its manager in a thread of
this process) and the dashboard serves its working directory. Trial #4 keeps reporting until a test kills
it from the page. Screenshots land in each test's ``tmp_path`` and in ``tests/webui/.screenshots/``.

Needs ``/usr/bin/chromium`` (``apt-get install -y chromium``) and the ``playwright`` pip package (never
``playwright install``: the browser is Debian's). Without them the module is skipped, and fails under
``CI=true``, where CI installs both.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).parent / ".screenshots"
EXP_ID = "webui001"
OLD_ID = "webui000"
XSS = "<img src=x onerror=window.__xss=1>"  # user data the page must show as text, never run
SPACE = {
    "x": {"_type": "uniform", "_value": [0, 1]},
    "opt": {"_type": "choice", "_value": ["adam", "sgd", XSS]},
    "layers": {"_type": "randint", "_value": [1, 4]},
}


def _missing(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI must install it (see .ci/run) rather than skip the browser tests")
    pytest.skip(reason, allow_module_level=True)


try:
    from playwright.sync_api import Browser, Page, sync_playwright
except ImportError:
    _missing("playwright is not installed: pip install playwright (never `playwright install`)")
if not CHROMIUM.exists():
    _missing(f"no browser at {CHROMIUM}: apt-get install -y chromium")
pytest.importorskip("fastapi", reason="the dashboard needs the webui extra: pip install 'nni-pl[webui]'")

from nni_pl.experiment import Experiment  # noqa: E402
from nni_pl.webui import serve  # noqa: E402
from tests._wait import wait_for  # noqa: E402
from tests.webui.trial_functions import SLOW_SEQUENCE, objective  # noqa: E402

# --- fixtures: one experiment, one dashboard, one browser per module ---------------------------------------------


def _experiment(workdir: Path, exp_id: str, max_trials: int) -> Experiment:
    return Experiment(
        trial=objective,
        id=exp_id,
        search_space=SPACE,
        tuner={"name": "Random", "classArgs": {"seed": 1}},
        max_trial_number=max_trials,
        trial_concurrency=2,
        experiment_name=f"browser test {exp_id}",
        experiment_working_directory=workdir,
    )


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A finished experiment, a running one (5 trials, #4 slow) and the dashboard over their directory."""
    root = tmp_path_factory.mktemp("webui-browser")
    workdir = root / "experiments"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NNI_PL_HOME", str(root / "home"))
        mp.setenv("NNI_PL_CONFIG_DIR", str(root / "config"))
        _experiment(workdir, OLD_ID, 2).run(display=False)
        exp = _experiment(workdir, EXP_ID, 5)
        errors: list[BaseException] = []

        def run() -> None:
            try:
                exp.run(display=False)
            except BaseException as e:  # reported by the tests that wait for the experiment
                errors.append(e)

        thread = threading.Thread(target=run, name="experiment-manager", daemon=True)
        thread.start()
        wait_for(lambda: (workdir / EXP_ID / "store.sqlite").exists(), 60, "the experiment's store creation")
        server = serve(None, workdir=workdir, port=0, experiment_id=EXP_ID)
        try:
            yield {"url": server.url, "workdir": workdir, "exp": exp, "thread": thread, "errors": errors}
        finally:
            server.stop()
            if thread.is_alive():
                exp.stop()
                thread.join(60)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh page that accepts confirm() dialogs and fails the test on a JavaScript error."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    pg.set_default_timeout(30_000)
    js_errors: list[str] = []
    pg.on("pageerror", lambda e: js_errors.append(str(e)))
    pg.on("dialog", lambda d: d.accept())
    yield pg
    context.close()
    assert not js_errors, f"JavaScript errors on the page: {js_errors}"


def _shot(page: Page, tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    SCREENSHOTS.mkdir(exist_ok=True)
    shutil.copyfile(path, SCREENSHOTS / f"{name}.png")
    return path


def _finals(page: Page) -> list[float | None]:
    texts = page.locator("#trials tbody td[data-col='final']").all_inner_texts()
    return [None if t.strip() in ("", "\u2013") else float(t) for t in texts]  # an en dash: no value


def _four_done_one_running(lab: dict[str, Any]) -> None:
    """Wait until trials #0-#3 succeeded and #4 runs (so a test can also run alone)."""
    store = lab["exp"].store

    def ready() -> bool:
        statuses = sorted(t.status for t in store.list_trials(EXP_ID))
        return statuses == ["RUNNING"] + ["SUCCEEDED"] * 4 or "USER_CANCELED" in statuses

    wait_for(ready, 60, "4 finished trials and a running one")


def _slow_row(page: Page) -> Any:
    row = page.locator(f"#trials tbody tr:has(td[data-col='sequence_id']:text-is('{SLOW_SEQUENCE}'))")
    row.wait_for()
    return row


# --- tests (in file order: the kill comes after everything that needs a running experiment) ----------------------


def test_trials_table_fills_in_live_and_sorts_by_a_clicked_column(lab, page, tmp_path):
    page.goto(f"{lab['url']}#/exp/{EXP_ID}/trials")
    page.evaluate("window.__sameDocument = true")  # gone if the page reloads
    page.wait_for_function(
        "document.querySelectorAll('#trials tbody tr[data-status=\"SUCCEEDED\"]').length >= 4", timeout=60_000
    )
    row = _slow_row(page)
    reports = row.locator("td[data-col='intermediate_count']")
    first = int(reports.inner_text())
    page.wait_for_function(
        f"""() => {{
            const row = [...document.querySelectorAll('#trials tbody tr')]
                .find(r => r.querySelector("td[data-col='sequence_id']").textContent === '{SLOW_SEQUENCE}');
            return row && Number(row.querySelector("td[data-col='intermediate_count']").textContent) > {first};
        }}"""
    )
    assert page.evaluate("window.__sameDocument === true"), "the page reloaded instead of polling"
    assert page.locator("#trials tbody tr").count() == 5
    assert row.get_attribute("data-status") == "RUNNING"
    assert page.locator("#trial-count").inner_text() == "5 of 5 trials"

    page.click("th[data-sort='final']")
    assert page.get_attribute("th[data-sort='final']", "aria-sort") == "ascending"
    finals = _finals(page)
    done = [f for f in finals if f is not None]
    assert len(done) == 4 and done == sorted(done) and finals[-1] is None  # no final yet: last either way
    page.click("th[data-sort='final']")
    assert page.get_attribute("th[data-sort='final']", "aria-sort") == "descending"
    finals = _finals(page)
    assert [f for f in finals if f is not None] == sorted(done, reverse=True) and finals[-1] is None

    page.fill("#trial-filter", "adam")
    shown = page.locator("#trials tbody tr td[data-col='parameters']").all_inner_texts()
    assert 0 < len(shown) < 5 and all('opt="adam"' in s for s in shown)
    page.fill("#trial-filter", "")
    page.select_option("#status-filter", "RUNNING")
    assert page.locator("#trials tbody tr").count() == 1
    page.select_option("#status-filter", "")
    page.click("#add-trial-form summary")  # the search space, with its HTML-looking choice, shown as text
    assert XSS in page.locator("#search-space").inner_text()
    assert page.evaluate("window.__xss") is None
    _shot(page, tmp_path, "trials")


def test_every_chart_renders_with_plotly(lab, page, tmp_path):
    _four_done_one_running(lab)
    page.goto(f"{lab['url']}#/exp/{EXP_ID}/charts")
    for chart in ("chart-metric", "chart-parcoords", "chart-duration", "chart-intermediate"):
        page.locator(f"#{chart} svg.main-svg").first.wait_for()
    page.locator("#chart-parcoords canvas").first.wait_for(state="attached")  # parcoords draws with WebGL
    # final values and the best-so-far line; one bar per started trial; one curve per reporting trial
    assert page.locator("#chart-metric .scatterlayer .trace").count() == 2
    assert page.locator("#chart-duration .bars .point").count() == 5
    assert page.locator("#chart-intermediate .scatterlayer .trace").count() == 5
    dims = page.locator("#chart-parcoords .y-axis .axis-title").all_text_contents()
    assert dims == ["x", "opt", "layers", "metric"]
    assert {"adam", "sgd"} <= set(page.locator("#chart-parcoords .tick text").all_text_contents())
    assert page.evaluate("window.__xss") is None
    page.select_option("#parcoords-topk", "5")  # the top-k filter redraws without errors
    page.locator("#chart-parcoords svg.main-svg").first.wait_for()
    _shot(page, tmp_path, "charts")


def test_limits_form_and_add_trial_form_show_the_api_reason(lab, page, tmp_path):
    page.goto(f"{lab['url']}#/exp/{EXP_ID}")
    page.locator("#stat-best").wait_for()
    assert page.locator("#edit-form").is_visible()
    assert page.input_value("#edit-max-trials") == "5"
    page.fill("#edit-concurrency", "0")
    page.click("#edit-submit")
    msg = page.locator("#edit-msg.error")
    msg.wait_for()
    assert "trialConcurrency" in msg.inner_text()
    page.fill("#edit-concurrency", "2")  # back to the current value: not sent
    page.fill("#edit-duration", "1h")
    page.click("#edit-submit")
    page.locator("#edit-msg.ok").wait_for()
    assert page.locator("#edit-msg").inner_text() == "Updated: maxExperimentDuration=1h"
    page.wait_for_function("document.querySelector('#progress-duration').textContent.includes('/ 1h 0m 0s')")
    assert (
        '"searchSpace"' in page.locator("#config").inner_text() or "x" in page.locator("#config").inner_text()
    )
    _shot(page, tmp_path, "overview")

    page.goto(f"{lab['url']}#/exp/{EXP_ID}/trials")
    page.locator("#add-trial-form").wait_for()
    page.fill("#add-trial-params", "{not json")
    page.click("#add-trial-submit")
    assert "not valid JSON" in page.locator("#add-trial-msg.error").inner_text()
    page.fill("#add-trial-params", '{"x": 0.5, "opt": "rmsprop", "layers": 2}')
    page.click("#add-trial-submit")
    page.wait_for_function("document.querySelector('#add-trial-msg').textContent.includes('opt')")
    assert page.locator("#add-trial-msg").get_attribute("class") == "msg error"
    assert page.locator("#trials tbody tr").count() == 5  # nothing was added


def test_kill_a_running_trial_from_the_page(lab, page, tmp_path):
    page.goto(f"{lab['url']}#/exp/{EXP_ID}/trials")
    row = _slow_row(page)
    page.wait_for_function(
        f"""() => [...document.querySelectorAll('#trials tbody tr[data-status="RUNNING"]')]
            .some(r => r.querySelector("td[data-col='sequence_id']").textContent === '{SLOW_SEQUENCE}')"""
    )
    row.locator("button[data-action='kill']").click()
    status = row.locator("td[data-col='status']")
    page.wait_for_function(
        f"""() => [...document.querySelectorAll('#trials tbody tr')]
            .some(r => r.querySelector("td[data-col='sequence_id']").textContent === '{SLOW_SEQUENCE}'
                       && r.dataset.status === 'USER_CANCELED')""",
        timeout=30_000,
    )
    assert status.inner_text() == "USER_CANCELED"
    assert row.locator("button[data-action='kill']").count() == 0

    row.locator("td[data-col='parameters']").click()  # a row opens the trial
    page.wait_for_url(re.compile(r"#/exp/webui001/trial/"))
    page.locator("#trial-status [data-status='USER_CANCELED']").wait_for()
    page.locator("#chart-trial-intermediate svg.main-svg").first.wait_for()
    page.wait_for_function("/step \\d+ x=/.test(document.querySelector('#trial-log').textContent)")
    _shot(page, tmp_path, "trial")

    # the experiment then ends (maxTrialNumber reached) and the page turns read-only without a reload
    lab["thread"].join(60)
    assert not lab["thread"].is_alive() and not lab["errors"]
    page.goto(f"{lab['url']}#/exp/{EXP_ID}")
    page.locator("#exp-status [data-status='DONE']").wait_for()
    assert page.locator("#edit-form").is_hidden()


def test_experiments_page_lists_every_experiment_and_opens_one(lab, page, tmp_path):
    page.goto(f"{lab['url']}#/")
    rows = page.locator("#experiments tbody tr")
    page.locator(f"#experiments tbody tr[data-exp-id='{EXP_ID}']").wait_for()
    assert rows.count() == 2
    assert set(page.locator("#experiments tbody tr").evaluate_all("rs => rs.map(r => r.dataset.expId)")) == {
        OLD_ID,
        EXP_ID,
    }
    old = page.locator(f"#experiments tbody tr[data-exp-id='{OLD_ID}']")
    assert "DONE" in old.inner_text() and "browser test webui000" in old.inner_text()
    _shot(page, tmp_path, "experiments")
    page.click(f"#experiments a[href='#/exp/{OLD_ID}']")
    page.locator("#stat-best").wait_for()
    assert page.locator("#exp-title").inner_text() == f"browser test {OLD_ID} ({OLD_ID})"


def test_token_in_the_page_url_is_sent_with_every_api_call(lab, page):
    server = serve(None, workdir=lab["workdir"], port=0, token="s3cret-token", experiment_id=EXP_ID)
    try:
        base = server.url.split("?")[0]
        assert server.url.endswith("?token=s3cret-token")
        refused = page.goto(base)
        assert refused is not None and refused.status == 401

        api_calls: list[dict[str, str]] = []
        page.on("request", lambda r: api_calls.append(r.headers) if "/api/v1/" in r.url else None)
        _four_done_one_running(lab)
        page.goto(server.url)  # a dashboard served for one experiment opens on it
        page.wait_for_url(re.compile(rf"#/exp/{EXP_ID}$"))
        page.locator("#stat-best").wait_for()
        page.click("#tabs a[data-tab='trials']")
        page.locator("#trials tbody tr").first.wait_for()
        assert page.locator("#trials tbody tr").count() == 5
        assert api_calls and all(h.get("authorization") == "Bearer s3cret-token" for h in api_calls)
        assert page.locator("#banner").is_hidden()
    finally:
        server.stop()


def test_read_only_dashboard_shows_no_controls(lab, page, tmp_path):
    server = serve(None, workdir=lab["workdir"], port=0, read_only=True)
    try:
        page.goto(f"{server.url}#/exp/{EXP_ID}/trials")
        page.locator("#trials tbody tr").first.wait_for()
        assert page.locator("#readonly-badge").is_visible()
        assert page.locator("#add-trial-form").is_hidden()
        assert page.locator("button[data-action='kill']").count() == 0
        page.goto(f"{server.url}#/exp/{EXP_ID}")
        page.locator("#stat-best").wait_for()
        assert page.locator("#edit-form").is_hidden()
        assert page.locator("#stop-experiment, #resume-experiment").count() == 0
        page.goto(f"{server.url}#/")
        page.locator("#experiments tbody tr").first.wait_for()
        assert page.locator("#experiments button").count() == 0
    finally:
        server.stop()
