"""The page for analysts (GET /, static/) in a real browser: headless Debian Chromium driven by
Playwright, against a real `python -m server` process.

What the page shows is checked against what the API itself answers over HTTP: the table's rows
(keys and numbers, in order) and the chart's bars (one per entry, same keys, same order) are
compared with the result of the very job the page ran, fetched with GET /api/get_results. Errors
must appear as the API's reason text next to the field at fault.

Every view is also checked by axe-core (tests/vendor/, a test-only file, run inside the page): no
serious or critical violation.

Needs /usr/bin/chromium (Debian's `chromium`) and the `playwright` Python package; .ci/setup.sh
installs both (never `playwright install`). Screenshots go to tests/artifacts/ (git-ignored), and one
per view to docs/screenshots/ (committed, shown in the README).
"""

import ast
import contextlib
import csv
import io
import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"
SAMPLE_ROWS = SHARED_DATA_DIR / "assignment-sample-rows.csv"
ARTIFACTS = PROJECT_ROOT / "tests" / "artifacts"
SCREENSHOTS = PROJECT_ROOT / "docs" / "screenshots"
AXE = PROJECT_ROOT / "tests" / "vendor" / "axe-core-4.14.1" / "axe.min.js"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
READY_TIMEOUT_S = 30
EXIT_TIMEOUT_S = 30
UI_TIMEOUT_MS = 20_000

OBESITY = "Percent of adults aged 18 years and older who have obesity"

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - depends on the environment
    sync_playwright = None

pytestmark = [
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="/usr/bin/chromium is missing: run .ci/setup.sh (apt package 'chromium')"
    ),
    pytest.mark.skipif(sync_playwright is None, reason="the 'playwright' Python package is missing: run .ci/setup.sh"),
]


# ---------------------------------------------------------------------------------------------
# The server, over plain HTTP
# ---------------------------------------------------------------------------------------------


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Api:
    """Direct HTTP calls to the server the page talks to."""

    def __init__(self, base):
        self.base = base

    def call(self, method, path, body=None, headers=None):
        """(status, decoded JSON reply)."""
        data = body
        headers = dict(headers or {})
        if body is not None and not isinstance(body, bytes):
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def result(self, job_id):
        """The `data` of a finished job, waiting for it if needed."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            status, reply = self.call("GET", f"/api/get_results/{job_id}?wait=5")
            assert status == 200, reply
            if reply["status"] == "done":
                return reply["data"]
            assert reply["status"] == "running", reply
        raise AssertionError(f"{job_id} still running after 30 s")

    def query(self, kind, body):
        status, reply = self.call("POST", f"/api/{kind}", body)
        assert status == 200, reply
        return self.result(reply["job_id"])

    def upload(self, path, name=None):
        """POST /api/datasets with a multipart form field "file"."""
        boundary = uuid.uuid4().hex
        body = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name or path.name}"\r\n'
                f"Content-Type: text/csv\r\n\r\n"
            ).encode()
            + path.read_bytes()
            + f"\r\n--{boundary}--\r\n".encode()
        )
        return self.call("POST", "/api/datasets", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})

    def datasets(self):
        status, reply = self.call("GET", "/api/datasets")
        assert status == 200, reply
        return {entry["dataset"]: entry for entry in reply["datasets"]}


@contextlib.contextmanager
def running_server(state_dir, env=None):
    """`python -m server` on a free port of 127.0.0.1, ready; SIGTERM at the end, killed if it lingers."""
    port = free_port()
    with open(state_dir.parent / f"server-{port}.out", "w+") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "server", "--port", str(port), "--state-dir", str(state_dir), "--workers", "2"],
            cwd=PROJECT_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,  # the server and its workers form one process group
        )
        try:
            api = Api(f"http://127.0.0.1:{port}")
            deadline = time.monotonic() + READY_TIMEOUT_S
            while True:
                if process.poll() is not None:
                    log.seek(0)
                    pytest.fail(f"the server exited with {process.returncode} before it was ready:\n{log.read()}")
                try:
                    if api.call("GET", "/api/num_jobs")[0] == 200:
                        break
                except (OSError, ValueError):
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(f"the server was not ready within {READY_TIMEOUT_S} s")
                time.sleep(0.1)
            status, reply = api.call("GET", "/api/datasets")
            assert status == 200, f"GET /api/datasets: {status} {reply} (the page needs the data-set routes)"
            yield api
            process.send_signal(signal.SIGTERM)
            assert process.wait(EXIT_TIMEOUT_S) == 0
        finally:
            # Still running (a failure above), or gone with a crash that may have left workers behind.
            if process.poll() is None or process.returncode != 0:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("browser-state")) as api:
        yield api


@pytest.fixture(scope="module")
def sample_rows():
    if not SAMPLE_ROWS.exists():
        pytest.skip(f"{SAMPLE_ROWS} is absent (the shared real-data directory beside the project)")
    return SAMPLE_ROWS


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def artifacts():
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="module")
def screenshots():
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


# ---------------------------------------------------------------------------------------------
# The page
# ---------------------------------------------------------------------------------------------


class Page:
    """One page of the site in its own browser context, failing on any script error."""

    def __init__(self, browser, api, width=1280, height=900, path="/"):
        self.context = browser.new_context(viewport={"width": width, "height": height}, accept_downloads=True)
        self.context.set_default_timeout(UI_TIMEOUT_MS)
        self.page = self.context.new_page()
        self.problems = []
        self.page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        # A 400 the page provokes on purpose logs "Failed to load resource" in the console: not a problem.
        self.page.on(
            "console",
            lambda message: (
                message.type == "error"
                and not message.text.startswith("Failed to load resource")
                and self.problems.append(f"console: {message.text}")
            ),
        )
        self.page.on(
            "response",
            lambda response: response.status >= 500 and self.problems.append(f"{response.status}: {response.url}"),
        )
        self.page.on("requestfailed", lambda request: self.problems.append(f"request failed: {request.url}"))
        self.page.goto(api.base + path)
        self.page.wait_for_selector("body[data-ready]")

    def close(self):
        self.context.close()

    def select_dataset(self, dataset_id):
        self.page.select_option("#dataset", dataset_id)

    def upload(self, path):
        self.page.set_input_files("#file", str(path))
        self.page.click("#upload-button")

    def run(self, kind, question, state=None):
        """Fill the form, submit, and wait for the job to finish; returns the job id the page shows."""
        self.page.select_option("#question", question)
        self.page.select_option("#query", kind)
        if state is not None:
            self.page.select_option("#state", state)
        before = self.page.get_attribute("#job-status", "data-job-id")
        self.page.click("#submit")
        return self.wait_done(before)

    def wait_done(self, before=None):
        """Wait for a job other than `before` to finish; returns the job id the page shows."""
        self.page.wait_for_function(
            """(before) => { const box = document.getElementById('job-status');
                 return ['done', 'error'].includes(box.dataset.phase)
                     && box.dataset.jobId && box.dataset.jobId !== before; }""",
            arg=before,
        )
        status = self.page.locator("#job-status")
        job_id = status.get_attribute("data-job-id")
        assert status.get_attribute("data-phase") == "done", status.inner_text()
        assert job_id in status.inner_text()
        return job_id

    def table_rows(self):
        return self.page.eval_on_selector_all(
            "#result table.result-table tbody tr",
            """rows => rows.map(tr => ({
                 key: tr.dataset.key,
                 cells: [...tr.children].map(cell => cell.textContent),
                 value: Number(tr.querySelector('td.num').dataset.value),
               }))""",
        )

    def bars(self):
        return self.page.eval_on_selector_all(
            "#result svg.chart rect.bar",
            """rects => rects.map(rect => ({
                 key: rect.dataset.key,
                 value: Number(rect.dataset.value),
                 label: rect.getAttribute('aria-label'),
                 title: rect.querySelector('title')?.textContent,
                 cls: rect.parentNode.getAttribute('class'),
               }))""",
        )

    def screenshot(self, path):
        self.page.screenshot(path=str(path), full_page=True)

    def view_screenshot(self, path, height=900, selector=".results"):
        """One part of the page (the results panel), at most `height` pixels of it: a small picture."""
        box = self.page.evaluate(
            """(selector) => { const r = document.querySelector(selector).getBoundingClientRect();
                 return { x: r.left + scrollX, y: r.top + scrollY, width: r.width, height: r.height }; }""",
            selector,
        )
        box["height"] = min(box["height"], height)
        self.page.screenshot(path=str(path), full_page=True, clip=box)

    def check_axe(self, where):
        """axe-core over the whole page as it is now: no serious or critical violation."""
        if not self.page.evaluate("() => Boolean(window.axe)"):
            self.page.add_script_tag(path=str(AXE))
        checked = self.page.evaluate(
            """async () => { const result = await axe.run(document);
                 return { passes: result.passes.length,
                          violations: result.violations.filter(v => ['serious', 'critical'].includes(v.impact))
                            .map(v => ({ id: v.id, impact: v.impact, help: v.help,
                                         nodes: v.nodes.slice(0, 5).map(n => n.target.join(' ')) })) }; }"""
        )
        assert checked["passes"] > 10, f"axe checked almost nothing on {where}: {checked}"
        assert not checked["violations"], f"axe on {where}: {json.dumps(checked['violations'], indent=1)}"

    def download(self, selector):
        """Click `selector`, which downloads a file; returns (suggested name, bytes)."""
        with self.page.expect_download() as info:
            self.page.click(selector)
        download = info.value
        return download.suggested_filename, Path(download.path()).read_bytes()


@pytest.fixture
def page_factory(browser, server):
    pages = []

    def make(width=1280, height=900, path="/", api=server):
        page = Page(browser, api, width, height, path)
        pages.append(page)
        return page

    yield make
    problems = [problem for page in pages for problem in page.problems]
    for page in pages:
        page.close()
    assert not problems, problems


def assert_number_cell(text, value):
    assert abs(float(text.replace(",", "").replace("+", "")) - value) <= 0.005 + 1e-9, (text, value)


def uploaded_dataset(page, sample):
    """Upload `sample` through the page; returns the new data set's id, which the page selects."""
    before = set(page.page.eval_on_selector_all("#dataset option", "os => os.map(o => o.value)"))
    page.upload(sample)
    page.page.wait_for_function(
        "(before) => [...document.querySelectorAll('#dataset option')].some(o => !before.includes(o.value))",
        arg=sorted(before),
    )
    page.page.wait_for_function("() => document.getElementById('upload-status').textContent.startsWith('Uploaded')")
    dataset_id = page.page.input_value("#dataset")
    assert dataset_id not in before
    return dataset_id


# ---------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------


def test_upload_then_states_mean_and_mean_by_category(server, page_factory, sample_rows, artifacts):
    page = page_factory()
    dataset_id = uploaded_dataset(page, sample_rows)
    listed = server.datasets()
    assert dataset_id in listed and listed[dataset_id]["removable"]
    info = page.page.inner_text("#dataset-info")
    assert f"{listed[dataset_id]['rows']} rows" in info.replace(",", "")
    questions = page.page.eval_on_selector_all("#question option", "os => os.map(o => o.value)")
    assert sorted(questions) == sorted(listed[dataset_id]["questions"])
    groups = page.page.eval_on_selector_all("#question optgroup", "gs => gs.map(g => g.label)")
    assert "Obesity and weight" in groups

    # states_mean: the table and the bars are the API's result, in its order.
    job_id = page.run("states_mean", OBESITY)
    data = server.result(job_id)
    assert data, "the sample has values for the obesity question"
    rows = page.table_rows()
    assert [row["key"] for row in rows] == list(data)
    assert [row["cells"][0] for row in rows] == list(data)
    assert [row["value"] for row in rows] == list(data.values())
    for row in rows:
        assert_number_cell(row["cells"][1], data[row["key"]])
    bars = page.bars()
    assert [bar["key"] for bar in bars] == list(data)
    assert [bar["value"] for bar in bars] == list(data.values())
    for bar in bars:
        assert bar["label"].startswith(f"{bar['key']}: ") and bar["title"] == bar["label"]
    # Lower is better for obesity, and states_mean is ascending: the first state is best, the last worst.
    ranked = [key for key in data if key != "National"]
    if len(ranked) >= 2:
        assert [bar["key"] for bar in bars if "best" in bar["cls"].split()] == [ranked[0]]
        assert [bar["key"] for bar in bars if "worst" in bar["cls"].split()] == [ranked[-1]]
    # The national mean line is the API's global_mean of the same question and data set.
    national = server.query("global_mean", {"question": OBESITY, "dataset": dataset_id})["global_mean"]
    line = page.page.text_content("#result svg.chart .national-line text")
    assert_number_cell(line.rsplit(" ", 1)[1], national)
    caption = page.page.inner_text("#result table caption")
    assert "Mean per state" in caption and dataset_id in caption
    assert page.page.locator("#result table thead th[scope=col]").count() == 3
    assert page.page.locator("#result table tbody th[scope=row]").count() == len(data)
    assert page.page.get_attribute("#result svg.chart", "role") == "img"
    assert page.page.get_attribute("#result svg.chart", "aria-label")
    page.screenshot(artifacts / "browser-states_mean-desktop.png")

    # mean_by_category: tuple-string keys become (state, category, segment) columns.
    job_id = page.run("mean_by_category", OBESITY)
    data = server.result(job_id)
    assert data
    rows = page.table_rows()
    assert [row["key"] for row in rows] == list(data)
    for row, (key, value) in zip(rows, data.items(), strict=True):
        assert row["cells"][:3] == list(ast.literal_eval(key))
        assert row["value"] == value
        assert_number_cell(row["cells"][3], value)
    # One bar per key (in each category, segments in their natural order: checked below).
    bars = page.bars()
    assert sorted(bar["key"] for bar in bars) == sorted(data)
    assert all(bar["value"] == data[bar["key"]] for bar in bars)
    states = list(dict.fromkeys(ast.literal_eval(key)[0] for key in data))
    panels = page.page.eval_on_selector_all("#result .chart-panel", "ps => ps.map(p => p.dataset.state)")
    assert panels == states
    for bar in bars:
        _, category, segment = ast.literal_eval(bar["key"])
        assert bar["label"].startswith(f"{category}, {segment}: ")
    page.screenshot(artifacts / "browser-mean_by_category-desktop.png")


def test_state_query_without_a_state_is_refused_by_the_form_and_clears_the_result(
    server, page_factory, artifacts, screenshots
):
    page = page_factory()
    page.run("states_mean", OBESITY)
    assert page.page.locator("#result table").count() == 1
    posts = []
    page.page.on("request", lambda request: request.method == "POST" and posts.append(request.url))
    page.select_dataset("default")
    page.page.select_option("#question", OBESITY)
    page.page.select_option("#query", "state_mean")
    assert page.page.is_visible("#state")
    assert page.page.input_value("#state") == ""
    page.page.click("#submit")
    error = page.page.locator("#state-field .field-error")
    error.wait_for(state="visible")
    assert posts == [], "the form checks for a state itself: nothing goes to the server"
    assert "needs a state" in error.inner_text()
    assert page.page.inner_text("#result") == "", "the previous result must not stay on show"
    assert page.page.get_attribute("#state", "aria-invalid") == "true"
    assert "state-error" in page.page.get_attribute("#state", "aria-describedby")
    assert page.page.evaluate("document.activeElement.id") == "state"
    assert page.page.get_attribute("#job-status", "data-phase") == "refused"
    for other in ("#question-error", "#years-error", "#submit-error", "#dataset-error"):
        assert page.page.is_hidden(other)
    page.screenshot(artifacts / "browser-state-error-desktop.png")
    page.check_axe("a state query refused by the form")
    page.view_screenshot(screenshots / "error.png", selector=".layout")

    # Picking a state clears the error; the query then runs.
    page.page.select_option("#state", "Ohio")
    assert page.page.is_hidden("#state-error")
    job_id = page.run("state_mean", OBESITY, "Ohio")
    data = server.result(job_id)
    assert list(data) == ["Ohio"]
    assert_number_cell(page.page.inner_text("#result .big-number").split()[0], data["Ohio"])


def test_bad_years_show_the_reason_next_to_the_years(server, page_factory):
    page = page_factory()
    page.select_dataset("default")
    years = server.datasets()["default"]["years"]
    if not years or years[0] == years[1]:
        pytest.skip("the start-up data set has no range of years to invert")
    page.run("states_mean", OBESITY)
    assert page.page.locator("#result table").count() == 1
    page.page.select_option("#year-from", str(years[1]))
    page.page.select_option("#year-to", str(years[0]))
    page.page.click("#submit")
    error = page.page.locator("#years-field .field-error")
    error.wait_for(state="visible")
    status, reply = server.call("POST", "/api/states_mean", {"question": OBESITY, "years": [years[1], years[0]]})
    assert status == 400 and error.inner_text() == reply["reason"]
    assert page.page.inner_text("#result") == ""


def test_bad_csv_upload_shows_the_reason_next_to_the_file(server, page_factory, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "LocationDesc,Question,Data_Value,StratificationCategory1,Stratification1\n"
        f"Ohio,{OBESITY},29.4,Total,Total\n"
        f"Utah,{OBESITY},not-a-number,Total,Total\n"
    )
    status, reply = server.upload(bad)
    assert status == 400, reply
    page = page_factory()
    before = server.datasets()
    page.upload(bad)
    error = page.page.locator("#file-field .field-error")
    error.wait_for(state="visible")
    assert error.inner_text() == reply["reason"]
    assert "line" in reply["reason"]
    assert page.page.get_attribute("#file", "aria-invalid") == "true"
    assert server.datasets().keys() == before.keys()


def test_delete_an_uploaded_data_set(server, page_factory, sample_rows):
    page = page_factory()
    dataset_id = uploaded_dataset(page, sample_rows)
    assert page.page.is_visible("#delete-dataset")
    dialogs = []
    page.page.once("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.page.click("#delete-dataset")  # asks first; dismissed, nothing happens
    assert dialogs and dataset_id in dialogs[0]
    assert dataset_id in server.datasets()
    page.page.once("dialog", lambda dialog: dialog.accept())
    page.page.click("#delete-dataset")
    page.page.wait_for_function(
        "(id) => ![...document.querySelectorAll('#dataset option')].some(o => o.value === id)", arg=dataset_id
    )
    assert dataset_id not in server.datasets()
    assert page.page.input_value("#dataset") == "default"
    assert page.page.is_hidden("#delete-dataset")  # the start-up data set cannot be deleted


def test_keyboard_only(server, page_factory):
    """Every control is reachable with Tab and the query runs with the keyboard alone."""
    page = page_factory()
    seen = []
    for _ in range(30):
        page.page.keyboard.press("Tab")
        seen.append(page.page.evaluate("document.activeElement.id || document.activeElement.tagName"))
    for control in ("dataset", "file", "upload-button", "question", "query", "year-from", "year-to", "submit"):
        assert control in seen, (control, seen)
    page.page.focus("#query")
    page.page.keyboard.press("End")  # the last query: trend, the national series without a state
    assert page.page.input_value("#query") == "trend"
    page.page.focus("#submit")
    before = page.page.get_attribute("#job-status", "data-job-id")
    page.page.keyboard.press("Enter")
    page.page.wait_for_function(
        "(before) => { const box = document.getElementById('job-status');"
        " return box.dataset.phase === 'done' && box.dataset.jobId !== before; }",
        arg=before,
    )
    job_id = page.page.get_attribute("#job-status", "data-job-id")
    question = page.page.input_value("#question")
    assert server.result(job_id) == server.query("trend", {"question": question})


def test_phone_width(server, page_factory, artifacts):
    page = page_factory(width=375, height=812)
    job_id = page.run("states_mean", OBESITY)
    data = server.result(job_id)
    assert [bar["key"] for bar in page.bars()] == list(data)
    # One column: the results sit below the controls, and nothing makes the page scroll sideways.
    controls = page.page.locator(".controls").bounding_box()
    results = page.page.locator(".results").bounding_box()
    assert results["y"] >= controls["y"] + controls["height"]
    assert abs(results["x"] - controls["x"]) < 1
    assert page.page.evaluate("document.documentElement.scrollWidth") <= 375
    page.screenshot(artifacts / "browser-states_mean-phone.png")


TRICKY = [
    ("Ohio", "Age (years)", "18 - 24"),
    ("Ohio", "Income", "$75,000 or greater"),
    ("Côte d'Ivoire", "it's", 'say "hi"'),
    ("a, b", "(x)", "back\\slash"),
    ("both ' and \"", "tab\there", "ünïcödé ✓"),
    ("only",),
]


def test_tuple_keys_parse_like_python(server, page_factory):
    """The page reads Python's str() of tuples, quotes, commas and escapes included."""
    page = page_factory()
    for items in TRICKY:
        assert page.page.evaluate("(text) => LeStats.parsePyTuple(text)", str(items)) == list(items), str(items)
    assert page.page.evaluate("(text) => LeStats.parsePyTuple(text)", "not a tuple") is None


REASONS = [
    ("the field 'state' is missing", "state"),
    ("unknown state: 'Atlantis'", "state"),
    (f"the state 'Guam' has no value for the question '{OBESITY}'", "state"),
    ("unknown question: 'Percent of adults in a state of bliss'", "question"),
    ("'years' must be [from, to]: two whole years, from <= to", "years"),
    ("the data set 'x' has no YearStart/YearEnd columns to filter by", "years"),
    ("unknown data set: 'nope'", "dataset"),
    ("the field 'dataset' must be a string", "dataset"),
    ("shutting down", "submit"),
]


def test_reasons_go_next_to_their_field(server, page_factory):
    """Which field a 400's reason belongs to: quoted values (a question's text) do not mislead."""
    page = page_factory()
    for reason, field in REASONS:
        assert page.page.evaluate("(reason) => LeStats.fieldForReason(reason)", reason) == field, reason


def test_table_sorts_by_a_column_and_back(server, page_factory):
    page = page_factory()
    job_id = page.run("states_mean", OBESITY)
    data = server.result(job_id)
    header = page.page.locator("#result table thead th").nth(1)
    header.locator("button").click()
    assert header.get_attribute("aria-sort") == "ascending"
    assert [row["value"] for row in page.table_rows()] == sorted(data.values())
    header.locator("button").press("Enter")
    assert header.get_attribute("aria-sort") == "descending"
    assert [row["value"] for row in page.table_rows()] == sorted(data.values(), reverse=True)
    header.locator("button").click()
    assert header.get_attribute("aria-sort") is None
    assert [row["key"] for row in page.table_rows()] == list(data)


def test_years_filter_is_sent_and_an_empty_result_is_said(server, page_factory):
    years = server.datasets()["default"]["years"]
    if not years:
        pytest.skip("the start-up data set has no years")
    page = page_factory()
    page.page.select_option("#year-from", str(years[0]))
    page.page.select_option("#year-to", str(years[0]))
    job_id = page.run("states_mean", OBESITY)
    assert server.result(job_id) == server.query("states_mean", {"question": OBESITY, "years": [years[0], years[0]]})
    assert f"years {years[0]}–{years[0]}" in page.page.inner_text("#result table caption")
    # A year with no value for the question: an empty result, said in words.
    fruit = "Percent of adults who report consuming fruit less than one time daily"
    empty = [
        year
        for year in range(years[0], years[1] + 1)
        if not server.query("states_mean", {"question": fruit, "years": [year, year]})
    ]
    if empty:
        page.page.select_option("#year-from", str(empty[0]))
        page.page.select_option("#year-to", str(empty[0]))
        page.run("states_mean", fruit)
        assert "empty" in page.page.inner_text("#result .empty")
        assert page.page.locator("#result svg rect.bar").count() == 0


# ---------------------------------------------------------------------------------------------
# Issue 13: the map, the trend, links, exports, the walk-through fixes, axe on every view
# ---------------------------------------------------------------------------------------------

MAPPED = 51  # us-atlas's states-albers-10m: the 50 states and DC


def luminance(colour):
    """Relative luminance (WCAG) of "#rrggbb"."""
    channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    r, g, b = (c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def map_shapes(page):
    page.page.wait_for_selector("#result svg.map path.state")
    return page.page.eval_on_selector_all(
        "#result svg.map path.state",
        """ps => ps.map(p => ({
              state: p.dataset.state,
              value: p.dataset.value === undefined ? null : Number(p.dataset.value),
              fill: p.getAttribute('fill'),
              mark: p.dataset.mark || '',
              label: p.getAttribute('aria-label') }))""",
    )


@pytest.mark.parametrize("kind", ["states_mean", "diff_from_mean", "best5"])
def test_the_map_has_a_shape_per_state_filled_in_value_order(server, page_factory, screenshots, kind):
    page = page_factory()
    job_id = page.run(kind, OBESITY)
    data = server.result(job_id)
    shapes = map_shapes(page)
    assert len(shapes) == MAPPED and len({shape["state"] for shape in shapes}) == MAPPED
    valued = [shape for shape in shapes if shape["value"] is not None]
    assert {shape["state"]: shape["value"] for shape in valued} == {
        state: value for state, value in data.items() if state in {shape["state"] for shape in shapes}
    }
    # A larger value is never a lighter fill.
    by_value = sorted(valued, key=lambda shape: shape["value"])
    shades = [luminance(shape["fill"]) for shape in by_value]
    assert all(a >= b for a, b in itertools.pairwise(shades)), [(x["state"], x["fill"]) for x in by_value]
    assert luminance(by_value[0]["fill"]) > luminance(by_value[-1]["fill"])
    # Best and worst are marked on the map as on the bars.
    bars = {bar["key"]: bar["cls"].split() for bar in page.bars()}
    for shape in valued:
        for mark in ("best", "worst"):
            assert (shape["mark"] == mark) == (mark in bars[shape["state"]]), (shape, bars[shape["state"]])
    # Locations without a shape are listed beside the map, with their value.
    outside = page.page.eval_on_selector_all(
        "#result .map-outside li", "ls => ls.map(l => [l.dataset.state, Number(l.dataset.value)])"
    )
    mapped = {shape["state"] for shape in shapes}
    assert dict(outside) == {state: value for state, value in data.items() if state not in mapped}
    if kind == "states_mean":
        assert {"Guam", "Puerto Rico", "National"} <= dict(outside).keys()
    # The legend's classes cover every value; hover and keyboard focus read a state out.
    assert page.page.locator("#result .map-legend li").count() >= 5
    state = by_value[-1]["state"]
    page.page.hover(f'#result svg.map path.state[data-state="{state}"]')
    assert page.page.inner_text("#result .map-readout").startswith(f"{state}: ")
    page.page.focus(f'#result svg.map path.state[data-state="{by_value[0]["state"]}"]')
    readout = page.page.inner_text("#result .map-readout")
    assert readout.startswith(f"{by_value[0]['state']}: ")
    assert_number_cell(readout.split(": ")[1].split()[0], by_value[0]["value"])
    page.check_axe(f"the {kind} view")
    if kind == "states_mean":
        page.view_screenshot(screenshots / "states_mean-map.png", height=1000)


def test_state_mean_has_the_map_for_context(server, page_factory, screenshots):
    page = page_factory()
    job_id = page.run("state_mean", OBESITY, "Ohio")
    assert list(server.result(job_id)) == ["Ohio"]
    shapes = {shape["state"]: shape for shape in map_shapes(page)}
    every = server.query("states_mean", {"question": OBESITY, "dataset": "default"})
    assert shapes["Ohio"]["mark"] == "chosen"
    assert all(shapes[state]["value"] == value for state, value in every.items() if state in shapes)
    page.check_axe("the state_mean view")
    page.view_screenshot(screenshots / "state_mean.png")


def test_trend_points_are_the_api_reply(server, page_factory, screenshots):
    page = page_factory()
    job_id = page.run("trend", OBESITY, "Ohio")
    data = server.result(job_id)
    assert data and list(data) == sorted(data)

    def points(series):
        return [
            tuple(point)
            for point in page.page.eval_on_selector_all(
                f'#result svg.trend g.series[data-series="{series}"] circle.point',
                "cs => cs.map(c => [c.dataset.key, Number(c.dataset.value)])",
            )
        ]

    assert points("Ohio") == list(data.items())
    national = server.query("trend", {"question": OBESITY, "dataset": "default"})
    assert points("National mean (all rows)") == list(national.items())
    # The x axis runs in year order: each series' points go left to right.
    xs = page.page.eval_on_selector_all(
        "#result svg.trend g.series >> nth=0 >> circle.point", "cs => cs.map(c => Number(c.getAttribute('cx')))"
    )
    assert xs == sorted(xs)
    assert [row["key"] for row in page.table_rows()] == list(national)
    page.check_axe("the trend view")
    page.view_screenshot(screenshots / "trend.png")

    # Without a state: the national series alone.
    job_id = page.run("trend", OBESITY, "")
    assert points("National mean (all rows)") == list(server.result(job_id).items()) == list(national.items())


def test_a_copied_link_reproduces_the_view_and_back_and_forward_work(server, page_factory):
    years = server.datasets()["default"]["years"]
    page = page_factory()
    page.page.select_option("#year-from", str(years[0] + 1))
    page.page.select_option("#year-to", str(years[1] - 1))
    job_id = page.run("trend", OBESITY, "Ohio")
    link = page.page.url
    assert "query=trend" in link and "state=Ohio" in link and f"from={years[0] + 1}" in link
    shown = page.table_rows()
    assert [row["key"] for row in shown] == list(server.result(job_id))

    other = page_factory(path=link.removeprefix(server.base))
    other_id = other.wait_done()
    assert other_id != job_id
    assert server.result(other_id) == server.result(job_id)
    assert other.table_rows() == shown
    for field in ("#dataset", "#question", "#query", "#state", "#year-from", "#year-to"):
        assert other.page.input_value(field) == page.page.input_value(field), field

    # Back: the previous view's form and result; forward: this one again.
    first = page.run("states_mean", OBESITY)
    page.run("best5", OBESITY)
    page.page.go_back()
    back_id = page.wait_done(first)
    assert page.page.input_value("#query") == "states_mean"
    assert [row["key"] for row in page.table_rows()] == list(server.result(first))
    page.page.go_forward()
    page.wait_done(back_id)
    assert page.page.input_value("#query") == "best5"
    assert len(page.table_rows()) == 5

    # A link to a data set the server no longer holds says so, and runs nothing.
    stale = page_factory(path=link.removeprefix(server.base).replace("dataset=default", "dataset=upload999"))
    assert "no data set “upload999”" in stale.page.inner_text("#submit-error")
    assert stale.page.get_attribute("#job-status", "data-phase") == "refused"


def test_exports_are_the_table_the_chart_and_the_job(server, page_factory):
    page = page_factory()
    job_id = page.run("diff_from_mean", OBESITY)
    name, body = page.download("#export-csv")
    assert name.endswith(".csv")
    exported = list(csv.reader(io.StringIO(body.decode())))
    header = page.page.eval_on_selector_all("#result table thead th", "ths => ths.map(th => th.textContent)")
    rows = page.table_rows()
    assert exported[0] == header
    assert len(exported) == len(rows) + 1
    for line, row in zip(exported[1:], rows, strict=True):
        assert line[0] == row["cells"][0] and float(line[1]) == row["value"] and line[2] == row["cells"][2]
    data = server.result(job_id)
    assert [line[0] for line in exported[1:]] == list(data)

    name, body = page.download("#export-chart-svg")
    assert name.endswith(".svg") and body.startswith(b"<?xml")
    assert body.count(b"<rect") >= len(data) and b"fill:" in body
    name, body = page.download("#export-map-png")
    assert name.endswith(".png") and body.startswith(b"\x89PNG\r\n\x1a\n") and len(body) > 5000
    href = page.page.get_attribute("#export-json", "href")
    assert server.call("GET", href) == (200, {"status": "done", "data": data})


def test_run_button_stays_in_view_at_1280x900(server, page_factory):
    page = page_factory(1280, 900)
    for kind in ("states_mean", "trend", "state_mean"):
        page.page.select_option("#query", kind)
        box = page.page.locator("#submit").bounding_box()
        assert box["y"] >= 0 and box["y"] + box["height"] <= 900, (kind, box)
        covering = page.page.evaluate(
            "([x, y]) => document.elementFromPoint(x, y)?.id",
            [box["x"] + box["width"] / 2, box["y"] + box["height"] / 2],
        )
        assert covering == "submit", kind


# Each option's text as the closed select shows it, measured by layout (a span in the select's font),
# against the select's text box: its content box, as the arrow is drawn in its right padding (a native
# arrow, with appearance "auto", would take an unknown part of that box).
OPTION_TEXTS = """(select) => {
  const style = getComputedStyle(select);
  const px = (...names) => names.reduce((sum, name) => sum + parseFloat(style[name]), 0);
  const box = select.getBoundingClientRect().width
    - px('borderLeftWidth', 'borderRightWidth', 'paddingLeft', 'paddingRight');
  const span = document.body.appendChild(document.createElement('span'));
  Object.assign(span.style, { font: style.font, whiteSpace: 'pre', position: 'absolute', visibility: 'hidden' });
  const width = (text) => { span.textContent = text; return span.getBoundingClientRect().width; };
  const options = [...select.options].map((o) => {
    const full = o.dataset.full || o.textContent;
    return { value: o.value, text: o.textContent, full, width: width(o.textContent), fullWidth: width(full),
             title: o.title };
  });
  span.remove();
  return { box, options, appearance: style.appearance };
}"""


@pytest.mark.parametrize("width, height", [(1200, 900), (1440, 900), (390, 844)])
def test_option_texts_are_not_clipped_by_their_select(server, page_factory, width, height):
    """A native select clips its text silently ("(Q047)" showed as "(Q04"): the page cuts a text that is
    too long itself, before the part that tells the options apart, and only when it must."""
    page = page_factory(width, height)
    questions = server.datasets()["default"]["questions"]
    for select in ("dataset", "question", "query"):
        measured = page.page.eval_on_selector(f"#{select}", OPTION_TEXTS)
        assert measured["box"] > 200 and measured["appearance"] == "none", measured
        for option in measured["options"]:
            where = (select, option["text"], measured["box"])
            assert option["width"] <= measured["box"], where
            if select == "question":
                assert re.search(r" \(Q\d{3}\)$", option["text"]), where  # its id, whole
            # The whole text is the tooltip (a question's is the question itself).
            assert option["title"] in (option["full"], option["value"]), where
            if option["text"] == option["full"]:
                continue
            # Cut only when the whole text would not fit.
            assert option["fullWidth"] > measured["box"], where
            assert "…" in option["text"], where
            head, tail = option["text"].split("…")
            assert option["full"].startswith(head) and option["full"].endswith(tail), where
            if select == "query" and "," in option["full"]:
                assert tail.endswith(option["full"].rsplit(",", 1)[1]), where  # "per state" or "one state"
    assert sorted(o["value"] for o in page.page.eval_on_selector("#question", OPTION_TEXTS)["options"]) == sorted(
        questions
    )


def covered_hint(page):
    """What the browser shows at the centre of the years hint, if it is not the hint itself."""
    return page.page.evaluate(
        """() => { const hint = document.getElementById('years-hint'); const r = hint.getBoundingClientRect();
                   const top = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
                   return top === hint ? null : (top ? top.id || top.className || top.tagName : 'nothing'); }"""
    )


@pytest.mark.parametrize("width", [1200, 1440])
def test_the_run_row_covers_nothing_on_a_wide_window(server, page_factory, width):
    """At 1200 and 1440 px wide the whole query form fits a 900 px window whatever the query: the
    sticky "Run the query" row is in its own place, drawn as a plain row (no stray edge), and the
    years hint under it is seen whole."""
    page = page_factory(width, 900)
    kinds = page.page.evaluate("Object.keys(LeStats.QUERIES)")
    for kind in kinds:
        page.page.select_option("#query", kind)
        page.page.wait_for_function("() => !document.getElementById('submit-field').classList.contains('stuck')")
        assert covered_hint(page) is None, kind
        box = page.page.locator("#years-hint").bounding_box()
        assert box["y"] + box["height"] <= page.page.locator("#submit-field").bounding_box()["y"], kind
        edge = page.page.eval_on_selector("#submit-field", "row => getComputedStyle(row).boxShadow")
        assert edge == "none", (kind, edge)


def test_the_run_row_floats_with_an_edge_and_moves_out_of_the_way_on_a_phone(server, page_factory):
    """On a phone the form is taller than the window: the row floats over it with an edge, and the
    years hint, once scrolled to (as focus or a find does), is not left under it."""
    page = page_factory(390, 844)
    page.page.select_option("#query", "state_mean_by_category")
    page.page.wait_for_function("() => document.getElementById('submit-field').classList.contains('stuck')")
    assert page.page.eval_on_selector("#submit-field", "row => getComputedStyle(row).boxShadow") != "none"
    page.page.eval_on_selector("#years-hint", "hint => hint.scrollIntoView({ block: 'nearest' })")
    assert covered_hint(page) is None
    page.page.focus("#year-to")
    box = page.page.locator("#year-to").bounding_box()
    row = page.page.locator("#submit-field").bounding_box()
    assert box["y"] + box["height"] <= row["y"], (box, row)


def test_mean_by_category_panels_axis_labels_and_colours(server, page_factory, sample_rows, screenshots):
    page = page_factory()
    job_id = page.run("mean_by_category", OBESITY)
    states = list(dict.fromkeys(ast.literal_eval(key)[0] for key in server.result(job_id)))
    # A few panels, a counter saying how many more exist, a button that shows them all; no scroll box.
    visible = page.page.locator("#result .chart-panel:visible")
    assert 0 < visible.count() < len(states)
    shown = visible.count()
    assert page.page.inner_text("#panel-count") == (
        f"Charts of the first {shown} of {len(states)} states; the table below lists all {len(states)}."
    )
    assert page.page.evaluate("getComputedStyle(document.querySelector('#result .panels')).overflowY") == "visible"
    page.check_axe("the mean_by_category view")
    page.view_screenshot(screenshots / "mean_by_category.png")
    page.page.click("#show-all-panels")
    assert visible.count() == len(states)
    assert page.page.inner_text("#panel-count") == f"Charts of all {len(states)} states."
    # The filter does not claim to show "all" states (the counter says what is shown): it narrows the
    # charts and the table to one state, and "No filter" brings every state back.
    assert page.page.inner_text("label[for=category-state-filter]") == "Filter by state"
    assert page.page.eval_on_selector("#category-state-filter", "s => s.selectedOptions[0].textContent") == "No filter"
    page.page.select_option("#category-state-filter", states[1])
    assert page.page.eval_on_selector_all("#result .chart-panel:visible", "ps => ps.map(p => p.dataset.state)") == [
        states[1]
    ]
    rows = page.page.eval_on_selector_all(
        "#result table.result-table tbody tr:not([hidden])", "rs => rs.map(r => r.children[0].textContent)"
    )
    assert rows and set(rows) == {states[1]}
    assert page.page.inner_text("#panel-count") == (
        f"Filtered to {states[1]}: its chart and its rows in the table (1 of {len(states)} states)."
    )
    assert not page.page.is_visible("#show-all-panels")
    page.page.select_option("#category-state-filter", "")
    assert visible.count() == len(states)
    assert page.page.inner_text("#panel-count") == f"Charts of all {len(states)} states."

    # The axis ends at the largest value: its bar spans the plot.
    widest_bar = page.page.evaluate(
        """() => { const svg = document.querySelector('#result .chart-panel svg');
                   const all = [...document.querySelectorAll('#result .chart-panel svg rect.bar')];
                   const top = all.reduce((a, b) => Number(b.dataset.value) > Number(a.dataset.value) ? b : a);
                   return [Number(top.getAttribute('width')), Number(svg.dataset.plotWidth)]; }"""
    )
    assert abs(widest_bar[0] - widest_bar[1]) < 1, widest_bar
    # A label cut to fit has its whole text as its tooltip.
    page.page.set_viewport_size({"width": 700, "height": 900})
    page.page.wait_for_timeout(400)  # the redraw after a resize is debounced
    cut = page.page.eval_on_selector_all(
        "#result svg text[data-full]",
        "ts => ts.map(t => [t.textContent, t.querySelector('title').textContent, t.dataset.full])",
    )
    for text, title, full in cut:
        assert text.startswith(title[: len(text.rstrip("…")) - 1]) and title == full and text.endswith("…")

    # Income bands in their natural order.
    segments = page.page.eval_on_selector_all(
        "#result .chart-panel >> nth=0 >> rect.bar", "rs => rs.map(r => r.getAttribute('aria-label'))"
    )
    income = [label.split(", ", 1)[1].rsplit(":", 1)[0] for label in segments if label.startswith("Income, ")]
    if "Less than $15,000" in income:
        assert income[0] == "Less than $15,000", income
    money = [segment for segment in income if segment.startswith("$")]
    assert money == sorted(money, key=lambda text: int(text[1:].split()[0].replace(",", ""))), income

    # Each category keeps its colour in another data set.
    def colours():
        return dict(
            page.page.eval_on_selector_all(
                "#result svg .row",
                """gs => gs.map(g => [g.querySelector('rect').getAttribute('aria-label').split(',')[0],
                                       [...g.classList].find(c => c.startsWith('colour-'))])""",
            )
        )

    default = colours()
    uploaded_dataset(page, sample_rows)
    page.run("mean_by_category", OBESITY)
    other = colours()
    shared = default.keys() & other.keys()
    assert shared and all(default[category] == other[category] for category in shared)


def test_the_legend_names_the_years_of_the_national_mean(server, page_factory):
    years = server.datasets()["default"]["years"]
    page = page_factory()
    page.page.select_option("#year-from", str(years[0]))
    page.page.select_option("#year-to", str(years[0] + 2))
    page.run("states_mean", OBESITY)
    legend = page.page.inner_text("#result .chart-figure figcaption .legend")
    assert f"national mean, rows of {years[0]}–{years[0] + 2}" in legend and "all rows" not in legend
    page.page.select_option("#year-from", "")
    page.page.select_option("#year-to", "")
    page.run("states_mean", OBESITY)
    assert "national mean, all rows" in page.page.inner_text("#result .chart-figure figcaption .legend")


def test_a_long_file_name_is_shown_whole(server, page_factory, sample_rows, tmp_path):
    long_name = "brfss-nutrition-physical-activity-obesity-2011-2022-all-states-and-territories.csv"
    copy = tmp_path / long_name
    copy.write_bytes(sample_rows.read_bytes())
    page = page_factory()
    dataset_id = uploaded_dataset(page, copy)
    name = page.page.locator("#dataset-info .file-name")
    assert name.inner_text() == long_name
    assert name.evaluate(
        """n => n.scrollWidth <= n.clientWidth + 1
              && n.getBoundingClientRect().right <= document.querySelector('.controls').getBoundingClientRect().right"""
    )
    option = page.page.locator(f'#dataset option[value="{dataset_id}"]')
    assert long_name in option.get_attribute("title")
    text = option.inner_text()
    assert text.startswith(f"{dataset_id}: brfss") and text.endswith(long_name[-14:])


def test_a_remote_analyst_uploads_with_the_admin_token(browser, sample_rows, tmp_path, page_factory):
    token = uuid.uuid4().hex
    with running_server(tmp_path / "state", {"LESTATS_ADMIN_TOKEN": token}) as guarded:
        page = page_factory(api=guarded)
        assert not page.page.is_visible("#admin-token")  # folded away until needed
        page.upload(sample_rows)
        error = page.page.locator("#file-field .field-error")
        error.wait_for(state="visible")
        assert "Bearer" in error.inner_text()
        assert page.page.is_visible("#admin-token")  # a 403 opens it
        page.page.fill("#admin-token", token)
        sent = []
        page.page.on(
            "request", lambda request: request.method == "POST" and sent.append(request.headers.get("authorization"))
        )
        dataset_id = uploaded_dataset(page, sample_rows)
        assert sent == [f"Bearer {token}"]
        assert dataset_id in guarded.datasets()
        assert page.page.evaluate("sessionStorage.getItem('lestats-admin-token')") == token
        assert page.page.evaluate("localStorage.length") == 0 and page.page.evaluate("document.cookie") == ""
        # Queries never carry it.
        sent.clear()
        page.run("states_mean", OBESITY)
        assert sent and not any(sent)
        page.check_axe("the upload form with the admin token")


def test_axe_on_the_empty_page_and_at_phone_width(server, page_factory):
    page_factory().check_axe("the page as it opens")
    phone = page_factory(width=375, height=812)
    phone.run("trend", OBESITY, "Ohio")
    phone.check_axe("the trend view at phone width")
    phone.run("states_mean", OBESITY)
    map_shapes(phone)
    phone.check_axe("the states_mean view at phone width")


def test_a_trend_on_a_data_set_without_years_is_refused_by_the_form(server, page_factory, tmp_path):
    no_years = tmp_path / "no-years.csv"
    no_years.write_text(
        f"LocationDesc,Question,Data_Value,StratificationCategory1,Stratification1\nOhio,{OBESITY},29.4,Total,Total\n"
    )
    status, reply = server.upload(no_years)
    assert status == 200, reply
    page = page_factory()
    page.select_dataset(reply["dataset"])
    page.page.select_option("#query", "trend")
    assert "has no years" in page.page.inner_text("#query-hint")
    posts = []
    page.page.on("request", lambda request: request.method == "POST" and posts.append(request.url))
    page.page.click("#submit")
    error = page.page.locator("#dataset-error")
    error.wait_for(state="visible")
    assert "no YearStart/YearEnd" in error.inner_text() and posts == []
    status, refused = server.call("POST", "/api/trend", {"question": OBESITY, "dataset": reply["dataset"]})
    assert status == 400 and "YearStart" in refused["reason"]
