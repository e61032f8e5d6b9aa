"""The live page of ``sig web`` in headless Chromium (Debian's ``chromium``, driven by Playwright for Python).

Real parts: a ServerRouter on TCP, the WebLogger on aiohttp, sig senders
triggering events, and the browser, all on 127.0.0.1 with free ports. The
browser is the system's /usr/bin/chromium (``.ci/run`` installs it); the test
never downloads one (no ``playwright install``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page, expect, sync_playwright
from test_web import Sig, Web

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
WAIT_MS = 10_000

pytestmark = pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK),
                                reason="Debian's chromium is not installed at %s (.ci/run installs it)" % CHROMIUM)


@pytest.fixture
def net() -> Iterator[Sig]:
    n = Sig()
    try:
        yield n
    finally:
        n.close()


@pytest.fixture
def web(net: Sig) -> Iterator[Web]:
    w = Web(net.client())
    try:
        yield w
    finally:
        w.close()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[BrowserContext]:
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=CHROMIUM, headless=True, args=ARGS,
            timeout=30_000, viewport={"width": 1000, "height": 800},
        )
        context.set_default_timeout(WAIT_MS)
        try:
            yield context
        finally:
            context.close()


def open_page(browser: BrowserContext, web: Web, path: str = "/") -> Page:
    page = browser.new_page()
    errors: list[Any] = []
    page.on("pageerror", lambda error: errors.append(error))
    page.goto("http://127.0.0.1:%d%s" % (web.port, path))
    expect(page.locator("#status")).to_have_text("live")
    assert errors == []
    return page


def test_page_live_subscriptions_and_escaping(net: Sig, web: Web, browser: BrowserContext) -> None:
    web.weblog.subscribe("lamp", "on")
    page = open_page(browser, web)
    log = page.locator("#log li.entry")
    expect(page.locator("#regs")).to_contain_text("lamp:on")
    expect(page.locator("#log")).to_contain_text("No events yet.")

    # events appear without a reload, newest first, #connect shown as such
    client = net.client()
    lamp = client.addRemoteSender("lamp", ["on"])
    lamp.getSignal("on").trigger({"level": 1})
    expect(log).to_have_count(2)
    expect(log.nth(0).locator(".data")).to_have_text('{"level": 1}')
    expect(log.nth(1)).to_have_class("entry kind-connect")
    expect(log.nth(1).locator(".event")).to_have_text("#connect")
    expect(page.locator("#log li.empty")).to_have_count(0)

    # a subscription added from the page
    page.fill("#add-sender", "door")
    page.fill("#add-event", "open")
    page.click("#add-button")
    expect(page.locator("#regs")).to_contain_text("door:open")
    expect(page.locator("#message")).to_have_text("Subscribed to door:open")
    assert web.weblog.subscriptions.list() == [("lamp", "on"), ("door", "open")]
    evil = "<script>window.__pwned = 1</script><img src=x onerror=\"window.__pwned = 2\">"
    door = client.addRemoteSender("door", ["open"])
    door.getSignal("open").trigger(evil)
    expect(log.nth(0).locator(".data")).to_have_text('"%s"' % evil.replace('"', '\\"'))
    expect(log.nth(0).locator(".sender")).to_have_text("door")
    assert page.locator("#log img, #log script").count() == 0
    assert page.evaluate("window.__pwned") is None

    # the same after a reload (rendered by the server)
    page.reload()
    expect(page.locator("#status")).to_have_text("live")
    expect(log.nth(0).locator(".data")).to_have_text('"%s"' % evil.replace('"', '\\"'))
    assert page.locator("#log img, #log script").count() == 0
    assert page.evaluate("window.__pwned") is None

    # adding it twice says so; removing it from the page
    page.fill("#add-sender", "door")
    page.fill("#add-event", "open")
    page.click("#add-button")
    expect(page.locator("#message")).to_have_text("already subscribed to door:open")
    page.locator("#regs li", has_text="door:open").get_by_role("button", name="Remove").click()
    expect(page.locator("#regs li", has_text="door:open")).to_have_count(0)
    assert web.weblog.subscriptions.list() == [("lamp", "on")]

    # a sender leaving is shown; clear empties the page
    door_count = page.locator("#log li.entry .sender", has_text="door").count()
    net.carriers[-1].disconnect()
    expect(page.locator("#log li.kind-disconnect .sender", has_text="lamp")).to_have_count(1)
    assert page.locator("#log li.entry .sender", has_text="door").count() == door_count  # no longer listened
    page.click("#clear-button")
    expect(page.locator("#log")).to_have_text("No events yet.")
    assert len(web.weblog.log) == 0


def test_page_filters_limit_and_phone_width(net: Sig, web: Web, browser: BrowserContext) -> None:
    web.weblog.subscribe(None, None)
    web.json("/config?limit=3")
    page = open_page(browser, web, "/?sender=a")
    expect(page.locator("#summary")).to_have_text("keeps the last 3; only sender a")
    client = net.client()
    a = client.addRemoteSender("a", ["x"])
    b = client.addRemoteSender("b", ["x"])
    for n in range(5):
        a.getSignal("x").trigger(n)
        b.getSignal("x").trigger("b%d" % n)
    expect(page.locator("#log li.entry .data").first).to_have_text("4")
    expect(page.locator("#log li.entry")).to_have_count(3)
    assert page.locator("#log li.entry .sender").all_text_contents() == ["a", "a", "a"]

    page.set_viewport_size({"width": 360, "height": 740})  # a phone
    b.getSignal("x").trigger("a long word " * 3 + "x" * 300)
    web.weblog.subscribe("a-sender-with-a-rather-long-name", "an-event-with-a-long-name-too")
    expect(page.locator("#regs")).to_contain_text("a-sender-with-a-rather-long-name")
    page.goto("http://127.0.0.1:%d/" % web.port)
    expect(page.locator("#status")).to_have_text("live")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    box = page.locator("#add-button").bounding_box()
    assert box is not None and box["x"] + box["width"] <= 360

    # the page says when the web log loses its sig server
    expect(page.locator("#link")).to_be_hidden()
    net.carriers[0].disconnect()
    expect(page.locator("#link")).to_be_visible()
    expect(page.locator("#link")).to_have_text("The sig server is unreachable; reconnecting...")
