"""A real browser (Debian's chromium, headless, driven by Playwright) on the dashboard and
on /docs. Screenshots are kept in test-artifacts/browser/ for people to look at."""

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from service.localservers import free_port
from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    # `make test` installs it (apt-get install chromium)
    assert CHROMIUM is not None, "chromium is not installed: apt-get install chromium"

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield launched
        launched.close()


def test_dashboard_shows_the_queues_and_a_job_the_api_enqueued(stack: Stack, browser: Any) -> None:
    job_id = stack.submit("echo", value="seen in a browser")  # no worker: it stays queued
    port = free_port()
    stack.env.update(JOBS_DASHBOARD_USERNAME="ops", JOBS_DASHBOARD_PASSWORD="pa55-word")
    stack.start("dashboard", "jobsvc", "dashboard", "--port", str(port))
    stack.wait_for_log("dashboard", "ready")
    base = f"http://127.0.0.1:{port}"

    from playwright.sync_api import Error

    refused = browser.new_context()  # no credentials: the browser is refused (401)
    with pytest.raises(Error, match="ERR_INVALID_AUTH_CREDENTIALS"):
        refused.new_page().goto(base + "/")
    refused.close()

    context = browser.new_context(
        http_credentials={"username": "ops", "password": "pa55-word"},
        viewport={"width": 1280, "height": 800},
    )
    page = context.new_page()
    assert page.goto(base + "/").status == 200
    default = page.locator("table tr", has_text="default").first  # the queue RQ knows
    default.wait_for(timeout=15_000)
    assert "1" in default.inner_text().split()  # one queued job
    page.screenshot(path=SHOTS / "dashboard-queues.png", full_page=True)

    page.goto(base + "/0/view/jobs/default/queued/8/asc/1")
    row = page.locator("tr", has_text=job_id).first
    row.wait_for(timeout=15_000)
    assert "echo" in row.inner_text().split()  # listed by its task name (args kept out)
    assert "seen in a browser" not in page.content()
    page.screenshot(path=SHOTS / "dashboard-jobs.png", full_page=True)
    context.close()


def test_docs_page_shows_each_tasks_args_schema(stack: Stack, browser: Any) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 1600})
    failed: list[str] = []
    page.on("requestfailed", lambda request: failed.append(request.url))
    assert page.goto(str(stack.http.base_url) + "/docs").status == 200
    page.get_by_text("POST", exact=True).first.wait_for(timeout=15_000)  # Swagger UI rendered
    page.locator(".opblock-summary-path", has_text="/tasks").first.wait_for()

    titles = page.locator("section.models .json-schema-2020-12__title")
    for model in ("EchoArgs", "SendEmailArgs", "CallWebhookArgs", "MakeThumbnailsArgs"):
        titles.filter(has_text=model).first.wait_for(timeout=15_000)
    echo = page.locator("section.models article[data-json-schema-level='0']").filter(
        has=page.get_by_text("EchoArgs", exact=True)
    )
    echo.locator(".json-schema-2020-12-accordion").first.click()  # open its schema
    echo.get_by_text("Return value unchanged.").first.wait_for(timeout=15_000)  # the task's doc
    assert "value" in echo.first.inner_text().split()  # and its one argument
    page.screenshot(path=SHOTS / "docs.png", full_page=True)
    assert failed == []  # every script and style came from the API itself
