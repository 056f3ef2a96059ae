"""The web page in a real browser: Playwright driving Debian's Chromium (``make browser``
installs it). Start a session, type a message while the model generates, see it injected on
the timeline; with a token, the token never travels in a URL. Skips, saying why, only when the
browser or the model is absent."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from asynclm.server.config import ServerConfig

from .conftest import running_server

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("ASYNCLM_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed")
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"Chromium not found at {CHROMIUM}: run `make browser` "
                    "(apt-get install chromium)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


def _inject_mid_generation(page: Any, url: str, *, engine: str, max_tokens: int,
                           prompt: str, system: str = "", fragment: str = "") -> None:
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url + "/" + fragment)
    page.select_option("#engine", engine)
    page.fill("#model", "qwen2.5-coder-0.5b")
    page.fill("#tools", "none")
    page.fill("#max-tokens", str(max_tokens))
    page.fill("#prompt", prompt)
    page.fill("#system", system)
    page.click("#start")
    # the model is generating: the decode track has a bar and text is arriving
    page.wait_for_function(
        "() => document.querySelector('#conversation .msg.assistant')?.textContent.length > 12",
        timeout=120_000)
    assert page.is_enabled("#message") and page.is_enabled("#send")
    page.fill("#message", "Also mention the colour blue.")
    page.click("#send")
    marker = page.wait_for_selector("#timeline .marker.message", state="attached",
                                    timeout=120_000)
    assert marker.get_attribute("data-label") == "user"
    assert "Also mention the colour blue." in page.inner_text("#conversation")
    assert page.locator("#conversation .chip.intr.message").count() == 1
    page.wait_for_function("() => /ended/.test(document.querySelector('#sessions').textContent)",
                           timeout=180_000)
    assert page.locator("#timeline .bar.decode").count() >= 1
    assert not errors, errors


def test_page_injects_a_typed_message_on_the_simulator(browser: Any) -> None:
    with running_server(ServerConfig()) as url:
        page = browser.new_page()
        _inject_mid_generation(page, url, engine="sim", max_tokens=400, prompt="Say things.")
        page.close()


def test_page_with_a_token_never_puts_it_in_a_url(browser: Any) -> None:
    """The page reads the token from its fragment, sends it as a bearer header, and opens
    event streams with an HttpOnly cookie: no request URL carries the token."""
    with running_server(ServerConfig(token="s3cret-t0ken")) as url:
        page = browser.new_page()
        urls: list[str] = []
        page.on("request", lambda r: urls.append(r.url))
        _inject_mid_generation(page, url, engine="sim", max_tokens=400, prompt="Say things.",
                               fragment="#token=s3cret-t0ken")
        assert any("/events" in u for u in urls), urls
        server_urls = [u.split("#")[0] for u in urls]
        assert not [u for u in server_urls if "s3cret" in u], server_urls
        assert "s3cret" not in page.evaluate("document.cookie")  # HttpOnly: not readable
        page.close()
        # without the token the page cannot open a stream (the API refuses it)
        page = browser.new_page()
        page.goto(url + "/")
        page.fill("#prompt", "x")
        page.click("#start")
        page.wait_for_function("() => /error/.test(document.querySelector('#status').textContent)",
                               timeout=30_000)
        page.close()


def test_page_injects_a_typed_message_on_the_05b_model(browser: Any) -> None:
    from asynclm.models import list_models

    if not any(m.name == "qwen2.5-coder-0.5b" and m.assembled for m in list_models()):
        pytest.skip("qwen2.5-coder-0.5b is not in the cache: asynclm models pull it")
    # one llama.cpp thread: on a shared 2-core machine more threads spin against each other
    cfg = ServerConfig(llama_threads=1)
    with running_server(cfg) as url:
        page = browser.new_page()
        _inject_mid_generation(
            page, url, engine="llamacpp", max_tokens=64,
            prompt="Write a numbered list of ten tips for a first visit to Lisbon, one "
                   "sentence each.", system="You are a helpful travel assistant.")
        if shot := os.environ.get("ASYNCLM_SCREENSHOT"):
            page.screenshot(path=shot)
        page.close()


# -- the live demo (POST /demos/live): a slow research call while the model talks ----------------
DOCS_SHOT = Path(__file__).resolve().parents[2] / "docs" / "live-demo.png"
"""Where the screenshot goes when ``ASYNCLM_UPDATE_SCREENSHOTS=1`` (else into the test's tmp)."""


def _start_live_demo(page: Any, url: str) -> list[str]:
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url + "/")
    page.select_option("#engine", "sim")
    page.fill("#tpot", "40")
    page.click("#live")
    # the research runs while the model talks; its progress and partial result show
    page.wait_for_selector('#calls li[data-call="r1"][data-status="running"] .progress',
                           timeout=30_000)
    page.wait_for_selector('#calls li[data-call="r1"][data-status="running"] .partial',
                           timeout=30_000)
    assert 'partial 1: "5 candidates' in page.inner_text('#calls li[data-call="r1"]')
    assert page.locator('#timeline .tick.progress[data-call="r1"]').count() >= 2
    assert page.locator('#timeline .tick.partial[data-call="r1"]').count() == 1
    assert len(page.inner_text("#conversation .msg.assistant")) > 200  # it kept talking
    return errors


def _wait_ended(page: Any) -> None:
    page.wait_for_function("() => /ended/.test(document.querySelector('#sessions').textContent)",
                           timeout=60_000)


def test_live_demo_stop_that_makes_the_model_cancel_the_research(
    browser: Any, tmp_path: Path,
) -> None:
    with running_server(ServerConfig()) as url:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors = _start_live_demo(page, url)
        page.click("#stop-that")
        page.wait_for_selector('#calls li[data-call="r1"][data-status="cancelled"]',
                               timeout=30_000)
        _wait_ended(page)
        conv = page.inner_text("#conversation")
        assert "Stop that." in conv and "Okay, stopping r1 now." in conv
        assert "Stopped: r1 (research) cancelled." in conv and "Taberna Sal" not in conv
        cancel = page.locator('#calls li[data-status="ok"]')  # the model's cancel(call_id="r1")
        assert cancel.count() == 1 and 'cancel(call_id="r1")' in cancel.inner_text()
        assert "cancelled by the model" in page.inner_text('#calls li[data-call="r1"]')
        assert page.locator('#timeline .bar.call.cancelled[data-call="r1"]').count() == 1
        assert page.locator("#timeline .marker.message").count() == 1
        update = os.environ.get("ASYNCLM_UPDATE_SCREENSHOTS") == "1"
        page.screenshot(path=str(DOCS_SHOT if update else tmp_path / "live-demo.png"),
                        full_page=True)
        assert not errors, errors
        page.close()


def test_live_demo_result_arrives_when_the_model_is_idle(browser: Any) -> None:
    with running_server(ServerConfig()) as url:
        page = browser.new_page()
        errors = _start_live_demo(page, url)
        # the research ends while the model still talks: its result waits for a pause
        page.wait_for_selector('#calls li[data-call="r1"][data-status="ok"]', timeout=30_000)
        assert not page.locator("#timeline .marker.result").count()
        assert "ended" not in page.inner_text("#sessions")
        marker = page.wait_for_selector("#timeline .marker.result", state="attached",
                                        timeout=30_000)
        assert marker.get_attribute("data-label") == "r1,partial:r1"
        _wait_ended(page)
        conv = page.inner_text("#conversation")
        assert "Taberna Sal" in conv and "An update from r1: 5 candidates" in conv
        assert "Stopped" not in conv
        assert not errors, errors
        page.close()
