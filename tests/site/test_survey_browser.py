"""The survey's participant in a real browser: headless Chromium against a live study server, driven by Playwright.

Runs without ``--site`` (no built book is needed): each test starts the study server
(blending.survey.server's ``create_app``) with uvicorn in a thread, on a free 127.0.0.1 port, serving
a fresh copy of the synthetic study of tests/test_survey_server.py (three methods, two blocks of four
trials), so its participant is the study's only one. The browser is found as for the other site
checks (conftest.py's ``chromium``): none skips, or under CI=true fails.

In a phone-sized touch page (390x844, ``is_mobile``) and in a desktop page (1280x900):

- ``/`` shows the consent page; its start button leads to ``/trials``.
- Every trial is answered through an element with ``[data-choice]``: tapped on the phone; on the
  desktop clicked, or for every other trial chosen by pressing its number key. Each trial's position
  is a different one, and every image of every trial has loaded.
- The progress reads ``1 / 4``, ``2 / 4``, ... in turn, then the completion page shows a code.
- That code is the one ``/admin/participants.csv`` gives the participant, with every trial answered;
  ``/admin/answers.csv`` has the options in the order the page showed them, and the chosen one at the
  position that was tapped, clicked or pressed.
- No console error (a Content-Security-Policy violation is one), no failed request, no HTTP error,
  every request to the server itself, and neither a page's HTML, any URL fetched, any request body nor
  any ``/api/`` answer names a method of the design or the attention trials' kind.
- On the phone nothing is wider than the screen: no sideways scrolling on either page.
"""

from __future__ import annotations

import csv
import io
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest

from blending.survey.server import create_app
from tests.test_survey_server import TOKEN, make_study

#: Bounds, not expectations: the server starts in well under a second, each step in milliseconds.
SERVER_START_S = 30
STEP_MS = 15_000

PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 3, "is_mobile": True, "has_touch": True}
DESKTOP = {"viewport": {"width": 1280, "height": 900}}

#: Every image of the trial shown has arrived and decoded.
_IMAGES_LOADED_JS = (
    "() => { const imgs = [...document.querySelectorAll('#options img')];"
    " return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0); }"
)
_OVERFLOW_JS = "() => document.documentElement.scrollWidth - window.innerWidth"


@dataclass
class LiveStudy:
    base: str
    folder: Path
    design: dict

    def admin_csv(self, name: str) -> list[dict]:
        response = httpx.get(f"{self.base}/admin/{name}", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
        assert response.status_code == 200, response.text
        return list(csv.DictReader(io.StringIO(response.text)))

    def secret_words(self) -> set[str]:
        """What no participant may receive: every method the design names, and the attention trials' kind."""
        methods = {option["method"] for trial in self.design["trials"] for option in trial["options"]}
        return {word.lower() for word in methods | set(self.design["settings"]["methods"]) | {"attention"}}


@pytest.fixture
def live_study(tmp_path):
    """The synthetic study served by uvicorn in a thread, on a socket bound here (no race for the port)."""
    import uvicorn

    folder = tmp_path / "study"
    design = make_study(folder)
    app = create_app(folder, admin_token=TOKEN)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + SERVER_START_S
        while not server.started:
            assert thread.is_alive(), "the study server stopped while starting"
            assert time.monotonic() < deadline, "the study server did not start"
            time.sleep(0.02)
        yield LiveStudy(f"http://127.0.0.1:{port}", folder, design)
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
    assert not thread.is_alive(), "the study server did not stop"


class Recorder:
    """A page's console errors, failed requests and HTTP errors, every URL and body sent, and the /api/ answers."""

    def __init__(self, page, base: str):
        self.errors: list[str] = []
        self.urls: list[str] = []
        self.sent: list[str] = []
        self.api: list[str] = []
        self.bad: list[str] = []
        self._base = base
        page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("request", self._request)
        page.on("requestfailed", lambda r: self.bad.append(f"{r.url}: {r.failure}"))
        page.on("response", self._response)

    def _request(self, request) -> None:
        self.urls.append(request.url)
        if request.post_data:
            self.sent.append(request.post_data)

    def _response(self, response) -> None:
        if response.status >= 400:
            self.bad.append(f"{response.url}: HTTP {response.status}")
        elif urlparse(response.url).path.startswith("/api/") and response.request.method == "GET":
            self.api.append(response.text())

    def check(self, words: set[str]) -> None:
        assert self.errors == [], f"console errors: {self.errors}"
        assert self.bad == [], f"failed requests: {self.bad}"
        outside = [url for url in self.urls if not url.startswith(self._base + "/")]
        assert outside == [], f"requests that leave the study server: {outside}"
        assert self.api, "no /api/ answer was recorded"
        for kind, texts in (("URL", self.urls), ("request body", self.sent), ("/api/ answer", self.api)):
            for text in texts:
                named = [word for word in words if word in text.lower()]
                assert named == [], f"a {kind} names {named}: {text}"


def _no_secret(html: str, words: set[str], where: str) -> None:
    named = [word for word in words if word in html.lower()]
    assert named == [], f"{where}: the page names {named}"


def take_part(page, live: LiveStudy, choose, *, phone: bool) -> tuple[str, list[tuple[list[str], int]]]:
    """Consent, start and answer every trial with ``choose(page, i, n_options) -> position``.

    Returns the completion code and, per trial, the option ids in the page's order and the position chosen.
    """
    from playwright.sync_api import expect

    words = live.secret_words()
    response = page.goto(live.base + "/", wait_until="load")
    assert response is not None and response.ok
    expect(page.locator("h1")).to_have_text("Image study")
    start = page.get_by_role("button", name="I agree, start")
    expect(start).to_be_visible()
    _no_secret(page.content(), words, "the consent page")
    if phone:
        assert page.evaluate(_OVERFLOW_JS) <= 0, "the consent page scrolls sideways on a phone"
    start.tap() if phone else start.click()
    page.wait_for_url(live.base + "/trials", timeout=STEP_MS)

    count = page.locator("#count")
    total = len(live.design["blocks"][0])
    answered: list[tuple[list[str], int]] = []
    for i in range(total):
        expect(count).to_have_text(f"{i + 1} / {total}", timeout=STEP_MS)
        page.wait_for_function(_IMAGES_LOADED_JS, timeout=STEP_MS)
        choices = page.locator("[data-choice]")
        shown = [choices.nth(k).get_attribute("data-choice") for k in range(choices.count())]
        assert len(shown) >= 2 and all(shown), shown
        for k in range(len(shown)):
            expect(choices.nth(k)).to_be_visible()
        _no_secret(page.content(), words, f"trial {i + 1}")
        if phone:
            assert page.evaluate(_OVERFLOW_JS) <= 0, f"trial {i + 1} scrolls sideways on a phone"
        position = choose(page, i, len(shown))
        answered.append((shown, position))

    expect(page.locator("#done")).to_be_visible(timeout=STEP_MS)
    expect(page.locator("#trial")).to_be_hidden()
    code = page.locator("#code").inner_text().strip()
    assert code, "no completion code shown"
    _no_secret(page.content(), words, "the completion page")
    return code, answered


def check_server_agrees(live: LiveStudy, code: str, answered: list[tuple[list[str], int]]) -> None:
    """participants.csv gives this code; answers.csv has the order shown and the option chosen, per trial."""
    (participant,) = live.admin_csv("participants.csv")
    assert participant["code"] == code
    assert participant["answered"] == participant["trials"] == str(len(answered))

    where = {
        option["id"]: (trial["id"], option["method"]) for trial in live.design["trials"] for option in trial["options"]
    }
    rows = {row["trial"]: row for row in live.admin_csv("answers.csv")}
    assert len(rows) == len(answered)
    for shown, position in answered:
        (trial_id,) = {where[option][0] for option in shown}
        row = rows[trial_id]
        assert row["participant"] == participant["participant"]
        methods = [where[option][1] for option in shown]
        assert [row[f"position_{k + 1}"] for k in range(len(methods))] == methods
        assert row["chosen"] == methods[position]
        assert int(row["ms"]) >= 0


def test_a_participant_on_a_phone_taps_through_to_the_completion_code(chromium, live_study):
    context = chromium.new_context(**PHONE)
    try:
        page = context.new_page()
        recorder = Recorder(page, live_study.base)

        def tap(page, i, n):
            position = i % n
            page.locator("[data-choice]").nth(position).tap()
            return position

        code, answered = take_part(page, live_study, tap, phone=True)
        recorder.check(live_study.secret_words())
    finally:
        context.close()
    check_server_agrees(live_study, code, answered)
    assert [position for _, position in answered] == [0, 1, 2, 0]


def test_a_participant_on_a_desktop_clicks_and_presses_number_keys(chromium, live_study):
    context = chromium.new_context(**DESKTOP)
    try:
        page = context.new_page()
        recorder = Recorder(page, live_study.base)

        def click_or_key(page, i, n):
            position = (n - 1 - i) % n
            if i % 2:
                page.keyboard.press(str(position + 1))
            else:
                page.locator("[data-choice]").nth(position).click()
            return position

        code, answered = take_part(page, live_study, click_or_key, phone=False)
        recorder.check(live_study.secret_words())
    finally:
        context.close()
    check_server_agrees(live_study, code, answered)
    # the keys chose positions 2 and 3 (trials 2 and 4): more than a "1" that would pick the first
    assert [position for _, position in answered] == [2, 1, 0, 2]
