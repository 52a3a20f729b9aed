"""The survey server (blending.survey.server): its HTTP contract, blindness, durability and concurrency.

A synthetic study folder is written by hand here, following blending.survey's design.json format:
three methods, three pairs in both orders (six blend trials), one attention trial, two blocks of four
trials each, and 8x8 PNGs of plain colours.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import random
import re
import signal
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from starlette.testclient import TestClient

from blending.errors import InputError
from blending.survey.server import FORMAT, create_app
from blending.testing.survey import served_study

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("switch", "unet", "alternate")
PAIRS = (("lion", "cat"), ("car", "boat"), ("apple", "clock"))
TOKEN = "the-admin-token"
#: What no participant may ever receive: the methods, the kinds and the attention trials' roles (the word
#: "method" itself is HTML's and fetch's; the JSON's keys are checked apart).
FORBIDDEN = (*METHODS, "plain", "distractor", "attention", "textual")
PIXELS_ONLY = {b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"pHYs", b"sBIT", b"bKGD"}


def _hex(*parts) -> str:
    return hashlib.sha256(" ".join(map(str, parts)).encode()).hexdigest()


def make_study(folder: Path, *, pairs=PAIRS, blocks: int = 2, seed: int = 21) -> dict:
    """A study folder in the design.json format; blend trials go to the blocks in turn, the attention trial to each."""
    images = folder / "images"
    images.mkdir(parents=True)
    colours = iter(range(1, 10_000))

    def option(trial_id: str, method: str) -> dict:
        image = _hex("image", trial_id, method)[:20]
        c = next(colours)
        Image.new("RGB", (8, 8), (c % 256, (c * 7) % 256, (c * 13) % 256)).save(images / f"{image}.png")
        return {"id": _hex("option", trial_id, method)[:12], "image": image, "method": method}

    trials = []
    for p, (a, b) in enumerate(pairs):
        for order, (first, second) in (("given", (a, b)), ("swapped", (b, a))):
            trial_id = f"t{len(trials) + 1:04d}"
            trials.append(
                {
                    "id": trial_id,
                    "kind": "blend",
                    "category": "animals",
                    "pair": p,
                    "order": order,
                    "seed": seed,
                    "prompt_1": first,
                    "prompt_2": second,
                    "options": [option(trial_id, m) for m in METHODS],
                }
            )
    attention_id = f"t{len(trials) + 1:04d}"
    options = [option(attention_id, "plain"), option(attention_id, "distractor"), option(attention_id, "distractor2")]
    options[2]["method"] = "distractor"
    trials.append(
        {
            "id": attention_id,
            "kind": "attention",
            "category": None,
            "pair": None,
            "order": None,
            "seed": seed,
            "prompt_1": "lion",
            "prompt_2": "lion",
            "answer": options[0]["id"],
            "options": options,
        }
    )
    blend_ids = [t["id"] for t in trials if t["kind"] == "blend"]
    design = {
        "format": FORMAT,
        "source": {"run": "synthetic", "experiment": "synthetic", "model": "none"},
        "settings": {
            "methods": list(METHODS),
            "trials_per_participant": len(blend_ids) // blocks + 1,
            "attention_checks": 1,
            "seed": 0,
        },
        "trials": trials,
        "blocks": [[*blend_ids[k::blocks], attention_id] for k in range(blocks)],
    }
    (folder / "design.json").write_text(json.dumps(design, indent=2) + "\n")
    return design


@pytest.fixture
def study(tmp_path) -> Path:
    folder = tmp_path / "study"
    make_study(folder)
    return folder


@pytest.fixture
def app(study):
    return create_app(study, admin_token=TOKEN)


def _design(study: Path) -> dict:
    return json.loads((study / "design.json").read_text())


def _db(study: Path, sql: str, *args):
    with contextlib.closing(sqlite3.connect(study / "answers.sqlite")) as db:
        return db.execute(sql, args).fetchall()


def _counts(study: Path) -> tuple[int, int]:
    return _db(study, "SELECT (SELECT COUNT(*) FROM participants), (SELECT COUNT(*) FROM answers)")[0]


def _csrf(html: str) -> str:
    match = re.search(r'<input type="hidden" name="csrf_token" value="([^"]+)">', html)
    assert match, html
    return match.group(1)


def _start(client) -> str:
    """Consent and start as a browser would; the new participant's id (from the database)."""
    page = client.get("/")
    assert page.status_code == 200
    before = {row[0] for row in _db_rows(client)}
    response = client.post("/start", data={"csrf_token": _csrf(page.text)}, follow_redirects=False)
    assert response.status_code == 303, response.text
    (new,) = {row[0] for row in _db_rows(client)} - before
    return new


def _db_rows(client):
    return _db(client.study, "SELECT participant FROM participants")


def _client(app, study, **kwargs) -> TestClient:
    client = TestClient(app, **kwargs)
    client.study = study
    return client


def _answer(client, trial: dict, choice: str | None = None, ms: int = 1234, csrf: str | None = None):
    return client.post(
        "/api/answer",
        json={"trial": trial["trial"], "choice": choice or trial["options"][0]["id"], "ms": ms},
        headers={"X-CSRF-Token": csrf or trial["csrf"]},
    )


def _complete(client) -> list[dict]:
    """Answer every trial (always the first option shown); the /api/trial responses, the last one the done."""
    seen = []
    while True:
        trial = client.get("/api/trial").json()
        seen.append(trial)
        if trial.get("done"):
            return seen
        assert _answer(client, trial).status_code == 204


def _png_chunks(data: bytes) -> list[bytes]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, at = [], 8
    while at < len(data):
        length = int.from_bytes(data[at : at + 4], "big")
        chunks.append(data[at + 4 : at + 8])
        at += 12 + length
    return chunks


# --- the consent page and /start ---------------------------------------------------------------------


def test_consent_page_is_a_phone_page_with_a_csrf_form(app, study):
    client = _client(app, study)
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
    assert '<form method="post" action="/start">' in html
    assert _csrf(html)
    # the security headers; the policy allows no inline script or style
    assert page.headers["x-content-type-options"] == "nosniff"
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert page.headers["cache-control"] == "no-store"
    style = client.get("/static/style.css")
    assert style.status_code == 200 and "min-height:3.25rem" in style.text  # a large tap target


def test_start_needs_the_forms_csrf_token(app, study):
    client = _client(app, study)
    page = client.get("/")
    for data in ({}, {"csrf_token": ""}, {"csrf_token": "forged"}, {"csrf_token": _csrf(page.text) + "x"}):
        assert client.post("/start", data=data, follow_redirects=False).status_code == 403
    # a token is bound to its browser's nonce cookie: another browser's token fails
    other = _client(app, study)
    assert other.post("/start", data={"csrf_token": _csrf(page.text)}, follow_redirects=False).status_code == 403
    # without the nonce cookie at all
    bare = _client(app, study)
    assert bare.post("/start", data={"csrf_token": _csrf(page.text)}, follow_redirects=False).status_code == 403
    assert _counts(study) == (0, 0)


def test_start_makes_a_participant_in_the_next_block_with_stored_orders(app, study):
    design = _design(study)
    trials = {t["id"]: t for t in design["trials"]}
    clients = [_client(app, study) for _ in range(5)]
    page = clients[0].get("/")
    response = clients[0].post("/start", data={"csrf_token": _csrf(page.text)}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/trials"
    cookie = next(v for k, v in response.headers.multi_items() if k == "set-cookie" and v.startswith("participant="))
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie.replace("Lax", "lax") and "Path=/" in cookie
    ids = [_db_rows(clients[0])[0][0]] + [_start(c) for c in clients[1:]]
    rows = _db(study, "SELECT k, participant, block FROM participants ORDER BY k")
    assert [(k, p, b) for k, p, b in rows] == [(k, ids[k], k % 2) for k in range(5)]
    orders = set()
    for participant, block in ((p, b) for _, p, b in rows):
        shown = _db(study, "SELECT trial, seq, options FROM shown WHERE participant = ? ORDER BY seq", participant)
        assert [t for t, _, _ in shown] == design["blocks"][block]
        for trial_id, _, options in shown:
            expected = [o["id"] for o in trials[trial_id]["options"]]
            random.Random(f"{participant}:{trial_id}").shuffle(expected)
            assert json.loads(options) == expected
            orders.add(options)
    assert len(orders) > 4  # shuffled: not one order for everyone
    # a browser that is already a participant keeps its place: no second participant
    again = clients[0].post("/start", data={"csrf_token": _csrf(clients[0].get("/").text)}, follow_redirects=False)
    assert again.status_code == 303 and _counts(study) == (5, 0)


def test_unshuffled_shows_the_designs_order(study):
    app = create_app(study, admin_token=TOKEN, shuffle=False)
    client = _client(app, study)
    _start(client)
    trial = client.get("/api/trial").json()
    design = {t["id"]: t for t in _design(study)["trials"]}
    assert [o["id"] for o in trial["options"]] == [o["id"] for o in design[trial["trial"]]["options"]]


# --- the trials -------------------------------------------------------------------------------------


def test_trial_page_and_script(app, study):
    client = _client(app, study)
    first = client.get("/trials", follow_redirects=False)
    assert first.status_code == 303 and first.headers["location"] == "/"
    _start(client)
    page = client.get("/trials")
    assert page.status_code == 200 and '<script src="/static/trial.js?v=' in page.text
    assert "<script>" not in page.text  # nothing inline: the policy forbids it
    script = client.get("/static/trial.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    js = script.text
    for needed in (
        '"data-choice"',
        '"keydown"',
        '"/api/trial"',
        '"/api/answer"',
        '"X-CSRF-Token"',
        "ms: ms",
        "progress",
    ):
        assert needed in js
    assert "innerHTML" not in js  # prompts go in as text


def test_api_trial_needs_a_participant(app, study):
    client = _client(app, study)
    assert client.get("/api/trial").status_code == 401
    client.cookies.set("participant", "forged.value")
    assert client.get("/api/trial").status_code == 401
    # a cookie signed with another key
    other = create_app(study, admin_token=TOKEN, secret_key="another key, long enough to be a key!")
    stranger = _client(other, study)
    _start(stranger)
    client.cookies.set("participant", stranger.cookies["participant"])
    assert client.get("/api/trial").status_code == 401


def test_a_participant_completes_the_study_and_gets_a_code(app, study):
    design = _design(study)
    client = _client(app, study)
    participant = _start(client)
    seen = _complete(client)
    block = design["blocks"][0]
    assert [t["trial"] for t in seen[:-1]] == block
    assert [t["progress"] for t in seen[:-1]] == [[i, len(block)] for i in range(len(block))]
    trials = {t["id"]: t for t in design["trials"]}
    for trial in seen[:-1]:
        assert set(trial) == {"trial", "prompt_1", "prompt_2", "options", "progress", "csrf"}
        assert (trial["prompt_1"], trial["prompt_2"]) == (
            trials[trial["trial"]]["prompt_1"],
            trials[trial["trial"]]["prompt_2"],
        )
        assert all(set(o) == {"id", "image"} for o in trial["options"])
    done = seen[-1]
    assert done["done"] is True and set(done) == {"done", "code", "csrf"}
    assert re.fullmatch(r"[A-Z2-7]{5}-[A-Z2-7]{5}", done["code"])
    assert client.get("/api/trial").json()["code"] == done["code"]  # the same code every time
    stored = _db(
        study, "SELECT trial, choice, ms, shown FROM answers WHERE participant = ? ORDER BY rowid", participant
    )
    assert [(t, c, ms, json.loads(s)) for t, c, ms, s in stored] == [
        (t["trial"], t["options"][0]["id"], 1234, [o["id"] for o in t["options"]]) for t in seen[:-1]
    ]
    # a second participant's code differs
    other = _client(app, study)
    _start(other)
    assert _complete(other)[-1]["code"] != done["code"]


def test_everything_a_participant_receives_is_blind(app, study):
    """Every page, script, style sheet, JSON answer and image a participant can fetch: no method, no kind, no answer."""
    client = _client(app, study)
    received: list[tuple[str, httpx.Response]] = []

    def get(url):
        response = client.get(url)
        assert response.status_code == 200, url
        received.append((url, response))
        return response

    consent = get("/")
    client.post("/start", data={"csrf_token": _csrf(consent.text)})
    get("/trials")
    get("/static/trial.js")
    get("/static/style.css")
    images = set()
    while True:
        trial = get("/api/trial").json()
        assert not {"method", "kind", "answer", "category"} & set(trial)
        if trial.get("done"):
            break
        for option in trial["options"]:
            assert not {"method", "kind", "answer"} & set(option)
            assert re.fullmatch(r"images/[0-9a-f]{20}\.png", option["image"])
            images.add(option["image"])
        assert _answer(client, trial).status_code == 204
    for image in sorted(images):
        get(image)
    assert len(images) == 4 * 3
    tokens = {_csrf(consent.text)} | {r.json()["csrf"] for u, r in received if u == "/api/trial"}
    for url, response in received:
        if response.headers["content-type"] == "image/png":
            chunks = _png_chunks(response.content)
            assert set(chunks) <= PIXELS_ONLY, (url, chunks)
            continue
        text = response.text
        for token in tokens:  # random signatures could spell anything, case aside
            text = text.replace(token, "")
        for word in FORBIDDEN:
            assert word not in text.lower(), (url, word)
        headers = " ".join(f"{k}: {v}" for k, v in response.headers.multi_items() if k != "set-cookie")
        assert not any(word in headers.lower() for word in FORBIDDEN), (url, headers)


def test_answers_are_checked_and_nothing_bad_is_written(app, study):
    design = _design(study)
    client = _client(app, study)
    participant = _start(client)
    trial = client.get("/api/trial").json()
    option = trial["options"][1]["id"]
    other_block = design["blocks"][1][0]
    other_trial = next(t for t in design["trials"] if t["id"] == design["blocks"][0][1])
    good = {"trial": trial["trial"], "choice": option, "ms": 10}
    headers = {"X-CSRF-Token": trial["csrf"]}

    def post(body, headers=headers, client=client):
        raw = body if isinstance(body, (bytes, str)) else json.dumps(body)
        return client.post("/api/answer", content=raw, headers={"Content-Type": "application/json", **headers})

    # the CSRF token: missing, wrong, another participant's
    stranger = _client(app, study)
    _start(stranger)
    strangers_token = stranger.get("/api/trial").json()["csrf"]
    assert post(good, headers={}).status_code == 403
    assert post(good, headers={"X-CSRF-Token": "wrong"}).status_code == 403
    assert post(good, headers={"X-CSRF-Token": strangers_token}).status_code == 403
    # no participant
    assert post(good, client=_client(app, study)).status_code == 401
    # malformed bodies and values
    bad = [
        b"{not json",
        b"\xff\xfe",
        "[1, 2]",
        '"a string"',
        {"choice": option, "ms": 10},
        {"trial": trial["trial"], "ms": 10},
        {"trial": trial["trial"], "choice": option},
        {**good, "trial": "t9999"},
        {**good, "trial": 7},
        {**good, "trial": other_block},  # a trial of the other block
        {**good, "choice": "nope"},
        {**good, "choice": other_trial["options"][0]["id"]},  # another trial's option
        {**good, "ms": -1},
        {**good, "ms": 1.5},
        {**good, "ms": 10.0},
        {**good, "ms": "10"},
        {**good, "ms": True},
        {**good, "ms": None},
        {**good, "ms": 2**60},
        json.dumps({**good, "ms": float("nan")}),  # NaN: not JSON
    ]
    for body in bad:
        assert post(body).status_code == 400, body
    assert _counts(study) == (2, 0)
    # the good answer, once; again: 409 and nothing changes
    assert post(good).status_code == 204
    assert post({**good, "choice": trial["options"][0]["id"], "ms": 99}).status_code == 409
    assert _db(study, "SELECT trial, choice, ms FROM answers WHERE participant = ?", participant) == [
        (trial["trial"], option, 10)
    ]
    assert client.get("/api/trial").json()["progress"] == [1, 4]


def test_any_unanswered_trial_of_the_block_may_be_answered(app, study):
    design = _design(study)
    client = _client(app, study)
    _start(client)
    first = client.get("/api/trial").json()
    later = next(t for t in design["trials"] if t["id"] == design["blocks"][0][2])
    assert (
        _answer(client, {"trial": later["id"], "options": later["options"], "csrf": first["csrf"]}).status_code == 204
    )
    again = client.get("/api/trial").json()
    assert again["trial"] == first["trial"] and again["progress"] == [1, 4]
    assert again["options"] == first["options"]  # the stored order, every time


def test_bodies_over_16_kib_are_refused(app, study):
    client = _client(app, study)
    _start(client)
    trial = client.get("/api/trial").json()
    big = json.dumps({"trial": trial["trial"], "choice": trial["options"][0]["id"], "ms": 1, "pad": "x" * 17000})
    response = client.post(
        "/api/answer", content=big, headers={"X-CSRF-Token": trial["csrf"], "Content-Type": "application/json"}
    )
    assert response.status_code == 413 and response.headers["x-content-type-options"] == "nosniff"

    def chunks():  # no Content-Length: counted as it arrives
        for _ in range(20):
            yield b"x" * 1024

    response = client.post("/api/answer", content=chunks(), headers={"X-CSRF-Token": trial["csrf"]})
    assert response.status_code == 413
    page = client.get("/")
    assert client.post("/start", data={"csrf_token": _csrf(page.text), "pad": "x" * 20000}).status_code == 413
    assert _counts(study) == (1, 0)


# --- images ----------------------------------------------------------------------------------------


def test_images_only_the_designs_and_nothing_outside(app, study):
    client = _client(app, study)
    image = _design(study)["trials"][0]["options"][0]["image"]
    response = client.get(f"/images/{image}.png")
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert re.fullmatch(r"public, max-age=\d+", response.headers["cache-control"])
    assert response.content == (study / "images" / f"{image}.png").read_bytes()
    # a PNG in the folder that the design does not name, the design itself, and ways out of images/
    Image.new("RGB", (2, 2)).save(study / "images" / "extra.png")
    Image.new("RGB", (2, 2)).save(study / "outside.png")
    for url in [
        "/images/extra.png",
        "/images/outside.png",
        "/images/..%2Foutside.png",
        "/images/..%2fdesign.json",
        "/images/%2e%2e%2foutside.png",
        "/images/%2E%2E/outside.png",
        "/images/..%5Coutside.png",
        "/images/../outside.png",
        "/images/" + image,
        "/images/" + image + ".PNG",
        "/images/" + image + "%00.png",
        "/images/" + image.upper() + ".png",
        "/images/.png",
        "/images/..png",
        "/design.json",
        "/answers.sqlite",
        "/secret.key",
    ]:
        assert client.get(url).status_code == 404, url


# --- the researcher --------------------------------------------------------------------------------


def test_answers_csv_with_the_admin_token(app, study):
    design = _design(study)
    trials = {t["id"]: t for t in design["trials"]}
    methods = {o["id"]: o["method"] for t in design["trials"] for o in t["options"]}
    clients = [_client(app, study) for _ in range(3)]
    for client in clients:
        _start(client)
    for client in clients[:2]:
        _complete(client)
    trial = clients[2].get("/api/trial").json()
    assert _answer(clients[2], trial, choice=trial["options"][2]["id"], ms=0).status_code == 204

    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": TOKEN},
        {"Authorization": "Bearer " + TOKEN + "x"},
        {"Authorization": "Bearer é".encode("latin-1")},
    ):
        response = clients[0].get("/admin/answers.csv", headers=headers)
        assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
    response = clients[0].get("/admin/answers.csv", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert list(rows[0]) == [
        "participant",
        "trial",
        "pair",
        "order",
        "seed",
        "position_1",
        "position_2",
        "position_3",
        "chosen",
        "ms",
        "time",
    ]
    stored = _db(study, "SELECT participant, trial, choice, ms, time, shown FROM answers ORDER BY participant, trial")
    assert len(rows) == len(stored) == 4 + 4 + 1
    by_key = {(r["participant"], r["trial"]): r for r in rows}
    for participant, trial_id, choice, ms, when, shown in stored:
        row = by_key[participant, trial_id]
        t = trials[trial_id]
        assert [row[f"position_{i}"] for i in (1, 2, 3)] == [methods[o] for o in json.loads(shown)]
        assert row["chosen"] == methods[choice] and row["ms"] == str(ms) and row["time"] == when
        assert row["seed"] == str(t["seed"])
        if t["kind"] == "attention":
            assert row["pair"] == "" and row["order"] == "" and row["chosen"] in ("plain", "distractor")
        else:
            assert (row["pair"], row["order"]) == (str(t["pair"]), t["order"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", rows[0]["time"])

    participants = clients[0].get("/admin/participants.csv", headers={"Authorization": f"Bearer {TOKEN}"})
    assert participants.status_code == 200
    table = list(csv.DictReader(io.StringIO(participants.text)))
    assert [(r["k"], r["block"], r["answered"], r["trials"]) for r in table] == [
        ("0", "0", "4", "4"),
        ("1", "1", "4", "4"),
        ("2", "0", "1", "4"),
    ]
    assert table[0]["code"] == clients[0].get("/api/trial").json()["code"] and table[2]["code"] == ""
    assert clients[0].get("/admin/participants.csv").status_code == 401


# --- the folder: secret key, restarts, refusals ----------------------------------------------------


def test_secret_key_persists_and_a_new_app_continues_every_participant(study):
    first = create_app(study, admin_token=TOKEN)
    key = study / "secret.key"
    assert key.stat().st_mode & 0o777 == 0o600
    client = _client(first, study)
    _start(client)
    trial = client.get("/api/trial").json()
    assert _answer(client, trial).status_code == 204
    following = client.get("/api/trial").json()
    contents = key.read_text()

    second = create_app(study, admin_token=TOKEN)  # a restart: same folder, same key
    assert key.read_text() == contents
    resumed = _client(second, study, cookies=dict(client.cookies))
    again = resumed.get("/api/trial").json()
    assert again == following  # the same trial, the same order, the same token
    assert _answer(resumed, again).status_code == 204


def test_a_changed_design_is_refused(study):
    create_app(study, admin_token=TOKEN)
    design = _design(study)
    design["trials"][0]["prompt_1"] = "tiger"
    (study / "design.json").write_text(json.dumps(design))
    with pytest.raises(InputError, match="another design.json"):
        create_app(study, admin_token=TOKEN)


@pytest.mark.parametrize(
    "problem",
    ["text chunk", "method in an id", "missing image", "bad format", "unknown trial in a block", "empty token"],
)
def test_unusable_studies_are_refused(tmp_path, problem):
    folder = tmp_path / "study"
    design = make_study(folder)
    token = TOKEN
    option = design["trials"][0]["options"][0]
    if problem == "text chunk":
        info = PngInfo()
        info.add_text("Comment", "made by switch")
        Image.new("RGB", (8, 8)).save(folder / "images" / f"{option['image']}.png", pnginfo=info)
    elif problem == "method in an id":
        option["id"] = "opt-unet-1"
    elif problem == "missing image":
        (folder / "images" / f"{option['image']}.png").unlink()
    elif problem == "bad format":
        design["format"] = "blending-survey/0"
    elif problem == "unknown trial in a block":
        design["blocks"][0].append("t9999")
    else:
        token = ""
    (folder / "design.json").write_text(json.dumps(design))
    with pytest.raises(InputError):
        create_app(folder, admin_token=token)
    assert not (folder / "answers.sqlite").exists()


def test_errors_show_no_traceback(app, study):
    client = _client(app, study, raise_server_exceptions=False)
    _start(client)

    def broken(participant):
        raise RuntimeError("a secret detail of the server")

    app.state.store.progress = broken
    response = client.get("/api/trial")
    assert response.status_code == 500
    assert "secret detail" not in response.text and "Traceback" not in response.text
    assert response.headers["x-content-type-options"] == "nosniff"
    assert client.get("/nowhere").status_code == 404
    assert client.get("/start").status_code == 405


def test_behind_a_proxy_prefix(app, study):
    client = _client(app, study, root_path="/study")
    page = client.get("/study/")
    assert '<form method="post" action="/study/start">' in page.text and 'href="/study/static/style.css' in page.text
    response = client.post("/study/start", data={"csrf_token": _csrf(page.text)}, follow_redirects=False)
    assert response.headers["location"] == "/study/trials"
    assert "Path=/study/" in response.headers["set-cookie"]
    assert 'src="/study/static/trial.js' in client.get("/study/trials").text
    trial = client.get("/study/api/trial").json()
    assert client.get("/study/" + trial["options"][0]["image"]).status_code == 200


# --- a real server: kill -9, restart, concurrency ------------------------------------------------


def _start_http(client: httpx.Client) -> None:
    page = client.get("/")
    response = client.post("/start", data={"csrf_token": _csrf(page.text)}, follow_redirects=True)
    assert response.status_code == 200 and str(response.url).endswith("/trials")


def test_kill_9_loses_no_answer_and_everyone_continues(study, tmp_path):
    log = tmp_path / "server.log"
    acknowledged = {}
    with served_study(study, log, TOKEN) as (base, process):
        clients = [httpx.Client(base_url=base, timeout=30) for _ in range(3)]
        for client in clients:
            _start_http(client)
        for i, client in enumerate(clients):
            for _ in range(i + 1):
                trial = client.get("/api/trial").json()
                assert _answer(client, trial, ms=i).status_code == 204
                acknowledged.setdefault(i, []).append(trial["trial"])
        pending = [client.get("/api/trial").json() for client in clients]
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL
    output = log.read_text()
    assert "participants: http://127.0.0.1:" in output and f"admin token: {TOKEN}" in output

    # every acknowledged answer is in the file, before any restart
    assert _counts(study) == (3, 1 + 2 + 3)
    with served_study(study, log, TOKEN) as (base, _):
        for i, client in enumerate(clients):
            client.base_url = base  # the same cookies, the new port
            trial = client.get("/api/trial").json()
            assert trial == pending[i]  # where they were: the same trial, order and token
            assert trial["progress"] == [i + 1, 4]
            rest = [trial]
            while not trial.get("done"):
                assert _answer(client, trial).status_code == 204
                trial = client.get("/api/trial").json()
                rest.append(trial)
            assert len(rest) == 4 - i
        csv_text = httpx.get(base + "/admin/answers.csv", headers={"Authorization": f"Bearer {TOKEN}"}).text
    assert len(csv_text.strip().splitlines()) == 1 + 3 * 4
    for client in clients:
        client.close()


def test_concurrent_participants_over_http_store_each_answer_once(study, tmp_path):
    """10 participants at once, each answer posted twice at the same moment: one 204, one 409, one row."""
    design = _design(study)
    with served_study(study, tmp_path / "server.log", TOKEN) as (base, _):

        def participant(_):
            statuses = []
            with httpx.Client(base_url=base, timeout=60) as client:
                _start_http(client)
                while True:
                    trial = client.get("/api/trial").json()
                    if trial.get("done"):
                        return statuses, trial["code"]
                    choice = random.choice(trial["options"])["id"]
                    barrier = threading.Barrier(2)

                    def post(_, trial=trial, choice=choice, barrier=barrier):
                        barrier.wait()
                        return _answer(client, trial, choice=choice).status_code

                    with ThreadPoolExecutor(2) as twice:
                        statuses.append(sorted(twice.map(post, range(2))))

        with ThreadPoolExecutor(10) as pool:
            results = list(pool.map(participant, range(10)))
    assert all(statuses == [[204, 409]] * 4 for statuses, _ in results)
    assert len({code for _, code in results}) == 10
    rows = _db(
        study, "SELECT p.block, a.participant, a.trial FROM answers AS a JOIN participants AS p USING (participant)"
    )
    assert len(rows) == len(set(rows)) == 10 * 4
    per_participant = {}
    for block, participant, trial in rows:
        per_participant.setdefault((block, participant), set()).add(trial)
    assert sorted(b for b, _ in per_participant) == [0] * 5 + [1] * 5
    assert all(trials == set(design["blocks"][b]) for (b, _), trials in per_participant.items())
