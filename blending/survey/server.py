"""``blending survey serve STUDY_DIR``: the blind study on the web, one participant per browser.

:func:`create_app` builds the Starlette application for a study folder (see :mod:`blending.survey`
for ``design.json``); :func:`serve` runs it with uvicorn and logs the participants' address and the
admin token. One process serves a study: the answers' lock lives in it (run one, not ``--workers``).

What a participant does
-----------------------
- ``GET /``: the consent and instructions page. Its form posts ``csrf_token`` to ``/start``; the
  token is signed and bound to a random nonce in a cookie set by this page.
- ``POST /start``: a new participant: a random id in a signed cookie (HttpOnly, SameSite=Lax,
  Secure over https), block ``k % len(blocks)`` where ``k`` counts the participants before, and the
  order in which each trial of the block shows its options (shuffled per participant and trial with
  ``random.Random(f"{participant}:{trial}")``; with ``shuffle=False``, the design's order), all
  stored before the 303 to ``/trials``. A browser that already holds a participant keeps it.
- ``GET /trials``: the trial page; its script (``/static/trial.js``) asks ``GET /api/trial`` for the
  participant's first unanswered trial (the prompts, the option ids and image URLs in the stored
  order, the progress ``[answered, total]`` and the CSRF token), or ``{"done": true, "code": ...}``
  once every trial is answered, and posts ``{"trial", "choice", "ms"}`` to ``POST /api/answer``
  with the token in ``X-CSRF-Token``. ``ms`` counts from when the trial's images have all loaded.
- Any unanswered trial of the participant's block may be answered, in any order; ``/api/trial``
  always serves the first unanswered one in the block's order. A second answer to a trial is 409
  and changes nothing: a retried request whose first try did arrive is harmless.
- ``GET /images/{image_id}.png``: only the image ids of ``design.json``; the path is built from the
  design's own id, never from the request. ``/api/trial`` gives them relative to the study's root
  (``images/<id>.png``), so they resolve under any prefix a proxy adds, in a browser (from
  ``/trials``) and in an HTTP client whose base URL is the study's.
- The completion code is an HMAC of the participant id under the secret key: the same code every
  time, and checkable later (``/admin/participants.csv`` lists each participant's).

Nothing a participant receives names a method, a trial's kind or an attention trial's answer: the
server sends prompts, opaque option ids and opaque image URLs only, and refuses to start on a
study whose option or image ids contain a method's name or whose PNGs carry text or other metadata.

The researcher
--------------
``GET /admin/answers.csv`` and ``GET /admin/participants.csv`` with ``Authorization: Bearer
TOKEN``. ``answers.csv``: one row per answer, columns ``participant, trial, pair, order, seed,
position_1 .. position_n`` (the method shown at each position, left to right; blank where a trial
has fewer options), ``chosen`` (the chosen option's method), ``ms``, ``time`` (UTC, ISO 8601).

The study folder's server files
-------------------------------
``secret.key`` (0600, made on first start): signs the cookies and CSRF tokens and keys the
completion codes; keep it, or participants lose their place and their codes change.

``answers.sqlite`` (WAL, ``synchronous=FULL``; each answer committed before the 204)::

    meta(key, value)                      -- 'design_sha256': the design.json it belongs to
    participants(k, participant, block, started)      -- k = 0, 1, 2, ... in order of arrival
    shown(participant, trial, seq, options)           -- seq: the trial's place in the block;
                                                      -- options: JSON list of option ids, left to right
    answers(participant, trial, choice, ms, time, shown)  -- shown: as in `shown`, copied; one row
                                                      -- per (participant, trial)

A restart on the same folder continues every participant where they were; a ``design.json`` that
differs from the one the answers were given to is refused.

Hardening: bodies over 16 KiB are refused (413); errors show no traceback; every response carries
``X-Content-Type-Options: nosniff``, a Content-Security-Policy allowing only the server's own
script, style sheet, images and requests (nothing inline), ``Referrer-Policy: no-referrer`` and
``frame-ancestors 'none'``. Addresses in pages start with the ASGI root path, so ``--root-path``
behind a reverse proxy works; uvicorn's ``--proxy-headers`` (on for 127.0.0.1) gives https.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import hashlib
import hmac
import io
import json
import logging
import os
import random
import re
import secrets
import socket
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from itsdangerous import BadSignature, URLSafeSerializer
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import InputError
from . import templates

__all__ = ["FORMAT", "AnswerStore", "Study", "create_app", "serve"]

logger = logging.getLogger(__name__)

#: design.json's ``format``.
FORMAT = "blending-survey/1"
#: The largest request body accepted, in bytes.
MAX_BODY = 16 * 1024
#: The largest ``ms`` accepted: JavaScript's largest exact integer.
MAX_MS = 2**53 - 1
#: What an image id may be: it names a file.
IMAGE_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")

PARTICIPANT_COOKIE = "participant"
NONCE_COOKIE = "consent"
#: Participants come back days later, from a phone whose browser was closed.
COOKIE_MAX_AGE = 180 * 24 * 3600
IMAGE_CACHE = "public, max-age=86400"

_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}

#: PNG chunks that carry pixels or how to show them; anything else (text, EXIF, times) is refused.
_PNG_CHUNKS = {
    b"IHDR",
    b"PLTE",
    b"IDAT",
    b"IEND",
    b"tRNS",
    b"gAMA",
    b"cHRM",
    b"sRGB",
    b"iCCP",
    b"sBIT",
    b"pHYs",
    b"bKGD",
}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# --- the study -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Trial:
    """One trial of design.json, as the server needs it."""

    id: str
    kind: str
    prompt_1: str
    prompt_2: str
    pair: int | None
    order: str | None
    seed: int | None
    options: tuple[str, ...]  # option ids, in the design's order
    images: dict[str, str]  # option id -> image id
    methods: dict[str, str]  # option id -> method


class Study:
    """A study folder's design, checked: every trial, block, option and image is usable and blind."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        path = self.folder / "design.json"
        try:
            raw = path.read_bytes()
        except OSError as error:
            raise InputError(f"cannot read the study design {path}: {error.strerror or error}") from None
        try:
            design = json.loads(raw)
        except ValueError as error:
            raise InputError(f"{path} is not JSON: {error}") from None
        self.design_sha256 = hashlib.sha256(raw).hexdigest()
        if not isinstance(design, dict) or design.get("format") != FORMAT:
            raise InputError(f"{path} is not a {FORMAT} study design (its 'format' says otherwise)")
        try:
            self.trials = self._trials(design["trials"])
            self.blocks = self._blocks(design["blocks"])
        except (KeyError, TypeError, ValueError) as error:
            raise InputError(f"{path} does not follow {FORMAT}: {error!r}") from None
        self.block_sets = [frozenset(block) for block in self.blocks]
        self.max_options = max(len(trial.options) for trial in self.trials.values())
        self.images_dir = self.folder / "images"
        self.image_ids = frozenset(image for trial in self.trials.values() for image in trial.images.values())
        self._check_blind(design)
        self._check_images()

    @staticmethod
    def _trials(items: list[dict[str, Any]]) -> dict[str, Trial]:
        trials: dict[str, Trial] = {}
        option_ids: set[str] = set()
        for item in items:
            options = item["options"]
            ids = tuple(option["id"] for option in options)
            if not ids or not all(isinstance(i, str) and i for i in ids):
                raise ValueError(f"trial {item['id']!r}: options need non-empty string ids")
            if option_ids & set(ids) or len(set(ids)) != len(ids):
                raise ValueError(f"trial {item['id']!r}: an option id is used twice")
            option_ids |= set(ids)
            images = {option["id"]: option["image"] for option in options}
            for image in images.values():
                if not isinstance(image, str) or not IMAGE_ID.fullmatch(image):
                    raise ValueError(f"trial {item['id']!r}: image id {image!r} is not [A-Za-z0-9_-]{{1,128}}")
            trial = Trial(
                id=str(item["id"]),
                kind=str(item["kind"]),
                prompt_1=str(item["prompt_1"]),
                prompt_2=str(item["prompt_2"]),
                pair=item.get("pair"),
                order=item.get("order"),
                seed=item.get("seed"),
                options=ids,
                images=images,
                methods={option["id"]: str(option["method"]) for option in options},
            )
            if trial.id in trials:
                raise ValueError(f"trial id {trial.id!r} is used twice")
            trials[trial.id] = trial
        if not trials:
            raise ValueError("no trials")
        return trials

    def _blocks(self, blocks: list[list[str]]) -> list[list[str]]:
        if not blocks or not all(blocks):
            raise ValueError("blocks: at least one block, none empty")
        for block in blocks:
            unknown = [trial for trial in block if trial not in self.trials]
            if unknown:
                raise ValueError(f"a block names trials that are not in 'trials': {unknown[:3]}")
            if len(set(block)) != len(block):
                raise ValueError("a block names a trial twice")
        return [list(block) for block in blocks]

    def _check_blind(self, design: dict[str, Any]) -> None:
        methods = {method for trial in self.trials.values() for method in trial.methods.values()}
        settings = design.get("settings")
        if isinstance(settings, dict) and isinstance(settings.get("methods"), list):
            methods |= {str(method) for method in settings["methods"]}
        names = [name.lower() for name in methods if name]
        for trial in self.trials.values():
            for option, image in trial.images.items():
                for text in (option, image):
                    if any(name in text.lower() for name in names):
                        raise InputError(
                            f"trial {trial.id}: the id {text!r} names a method; the study would not be blind"
                        )

    def _check_images(self) -> None:
        for image in sorted(self.image_ids):
            path = self.images_dir / f"{image}.png"
            problem = _png_problem(path)
            if problem is not None:
                raise InputError(f"{path}: {problem}")

    def image_path(self, image_id: str) -> Path | None:
        """The file of ``image_id`` if the design has that image, else None; the path is built from the design's id."""
        if not IMAGE_ID.fullmatch(image_id) or image_id not in self.image_ids:
            return None
        return self.images_dir / f"{image_id}.png"


def _png_problem(path: Path) -> str | None:
    """Why ``path`` is not a PNG of pixels only (a missing file, text, EXIF, a time stamp), or None."""
    try:
        with open(path, "rb") as file:
            if file.read(8) != _PNG_SIGNATURE:
                return "not a PNG file"
            while True:
                head = file.read(8)
                if len(head) < 8:
                    return "a PNG file cut short"
                length, kind = int.from_bytes(head[:4], "big"), head[4:]
                if kind not in _PNG_CHUNKS:
                    return f"a PNG with a {kind.decode('latin-1')!r} chunk: the study's images must hold pixels only"
                if kind == b"IEND":
                    return None
                file.seek(length + 4, os.SEEK_CUR)
    except OSError as error:
        return f"cannot read: {error.strerror or error}"


def shown_order(participant: str, trial: Trial, *, shuffle: bool = True) -> list[str]:
    """The option ids in the order ``participant`` sees ``trial``'s, left to right: the same every time."""
    order = list(trial.options)
    if shuffle:
        random.Random(f"{participant}:{trial.id}").shuffle(order)
    return order


# --- the answers -----------------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS participants (
    k INTEGER PRIMARY KEY,
    participant TEXT NOT NULL UNIQUE,
    block INTEGER NOT NULL,
    started TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS shown (
    participant TEXT NOT NULL REFERENCES participants (participant),
    trial TEXT NOT NULL,
    seq INTEGER NOT NULL,
    options TEXT NOT NULL,
    PRIMARY KEY (participant, trial)
);
CREATE TABLE IF NOT EXISTS answers (
    participant TEXT NOT NULL REFERENCES participants (participant),
    trial TEXT NOT NULL,
    choice TEXT NOT NULL,
    ms INTEGER NOT NULL,
    time TEXT NOT NULL,
    shown TEXT NOT NULL,
    PRIMARY KEY (participant, trial)
);
"""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Progress:
    """Where a participant is: their block, how many trials they answered, and the next one (None when done)."""

    block: int
    answered: int
    total: int
    next_trial: str | None
    shown: list[str] | None


class AnswerStore:
    """``answers.sqlite``: one connection behind a lock; every write a transaction committed (fsync) before it returns."""

    def __init__(self, path: str | os.PathLike, study: Study, *, shuffle: bool = True):
        self.path = Path(path)
        self.study = study
        self.shuffle = shuffle
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        try:
            mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise InputError(f"{self.path}: SQLite cannot use write-ahead logging here (journal mode {mode})")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            with self._transaction() as db:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
                row = db.execute("SELECT value FROM meta WHERE key = 'design_sha256'").fetchone()
                if row is None:
                    db.execute("INSERT INTO meta (key, value) VALUES ('design_sha256', ?)", (study.design_sha256,))
                elif row[0] != study.design_sha256:
                    raise InputError(
                        f"{self.path} holds answers to another design.json; move it away to start the study afresh"
                    )
        except BaseException:
            self._db.close()
            raise

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction under the lock, committed on leaving (``BEGIN IMMEDIATE``: no other writer meanwhile)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def add_participant(self, participant: str) -> int:
        """Store a new participant, their block (``k % len(blocks)``) and the order of every trial's options; their block."""
        with self._transaction() as db:
            (k,) = db.execute("SELECT COUNT(*) FROM participants").fetchone()
            block = k % len(self.study.blocks)
            db.execute(
                "INSERT INTO participants (k, participant, block, started) VALUES (?, ?, ?, ?)",
                (k, participant, block, _now()),
            )
            db.executemany(
                "INSERT INTO shown (participant, trial, seq, options) VALUES (?, ?, ?, ?)",
                [
                    (
                        participant,
                        trial,
                        seq,
                        json.dumps(shown_order(participant, self.study.trials[trial], shuffle=self.shuffle)),
                    )
                    for seq, trial in enumerate(self.study.blocks[block])
                ],
            )
        return block

    def block_of(self, participant: str) -> int | None:
        """The participant's block, or None for an id this study never gave out."""
        with self._lock:
            row = self._db.execute("SELECT block FROM participants WHERE participant = ?", (participant,)).fetchone()
        return None if row is None else row[0]

    def progress(self, participant: str) -> Progress | None:
        """The participant's block, answers so far and first unanswered trial (in the block's order); None if unknown."""
        with self._lock:
            row = self._db.execute("SELECT block FROM participants WHERE participant = ?", (participant,)).fetchone()
            if row is None:
                return None
            (answered,) = self._db.execute(
                "SELECT COUNT(*) FROM answers WHERE participant = ?", (participant,)
            ).fetchone()
            following = self._db.execute(
                "SELECT trial, options FROM shown AS s WHERE participant = ? AND NOT EXISTS "
                "(SELECT 1 FROM answers AS a WHERE a.participant = s.participant AND a.trial = s.trial) "
                "ORDER BY seq LIMIT 1",
                (participant,),
            ).fetchone()
        block = row[0]
        total = len(self.study.blocks[block])
        if following is None:
            return Progress(block, answered, total, None, None)
        return Progress(block, answered, total, following[0], json.loads(following[1]))

    def record(self, participant: str, trial: str, choice: str, ms: int) -> bool:
        """Store an answer, committed when this returns True; False (nothing changed) if the trial was answered already."""
        try:
            with self._transaction() as db:
                row = db.execute(
                    "SELECT options FROM shown WHERE participant = ? AND trial = ?", (participant, trial)
                ).fetchone()
                if row is None:  # the caller checked the block; a design change would be refused at start
                    raise LookupError(f"trial {trial} was not shown to {participant}")
                db.execute(
                    "INSERT INTO answers (participant, trial, choice, ms, time, shown) VALUES (?, ?, ?, ?, ?, ?)",
                    (participant, trial, choice, ms, _now(), row[0]),
                )
        except sqlite3.IntegrityError:
            return False
        return True

    def answers(self) -> list[tuple[str, str, str, int, str, str]]:
        """Every answer: participant, trial, choice, ms, time, shown (JSON), by participant then in order of arrival."""
        with self._lock:
            return self._db.execute(
                "SELECT a.participant, a.trial, a.choice, a.ms, a.time, a.shown FROM answers AS a "
                "JOIN participants AS p USING (participant) ORDER BY p.k, a.rowid"
            ).fetchall()

    def participants(self) -> list[tuple[str, int, int, str, int]]:
        """Every participant: id, k, block, started, answers given."""
        with self._lock:
            return self._db.execute(
                "SELECT p.participant, p.k, p.block, p.started, "
                "(SELECT COUNT(*) FROM answers AS a WHERE a.participant = p.participant) "
                "FROM participants AS p ORDER BY p.k"
            ).fetchall()


# --- keys and tokens -------------------------------------------------------------------------


def _secret_key(folder: Path) -> str:
    """``folder/secret.key``, made (0600) on first use, so that a restart keeps cookies and codes valid."""
    path = folder / "secret.key"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = path.read_text().strip()
        if len(key) < 32:
            raise InputError(f"{path} holds no usable key (under 32 characters); delete it to make a new one") from None
        if os.name == "posix" and path.stat().st_mode & 0o077:
            logger.warning("%s can be read by others than its owner (chmod 600 it)", path)
        return key
    key = secrets.token_urlsafe(48)
    with os.fdopen(fd, "w") as file:
        file.write(key + "\n")
        file.flush()
        os.fsync(file.fileno())
    return key


class _Keys:
    """Everything signed with the secret key: cookies, CSRF tokens, completion codes."""

    def __init__(self, secret: str):
        self._secret = secret.encode()
        self.participant = URLSafeSerializer(secret, salt="blending-survey participant")
        self.start_csrf = URLSafeSerializer(secret, salt="blending-survey start csrf")
        self.api_csrf = URLSafeSerializer(secret, salt="blending-survey api csrf")

    @staticmethod
    def _loads(serializer: URLSafeSerializer, token: str | None) -> str | None:
        if not token:
            return None
        try:
            value = serializer.loads(token)
        except BadSignature:
            return None
        return value if isinstance(value, str) else None

    def participant_of(self, cookie: str | None) -> str | None:
        return self._loads(self.participant, cookie)

    def start_token_ok(self, token: str | None, nonce: str | None) -> bool:
        signed = self._loads(self.start_csrf, token)
        return signed is not None and bool(nonce) and hmac.compare_digest(signed.encode(), nonce.encode())

    def api_token_ok(self, token: str | None, participant: str) -> bool:
        signed = self._loads(self.api_csrf, token)
        return signed is not None and hmac.compare_digest(signed.encode(), participant.encode())

    def completion_code(self, participant: str) -> str:
        digest = hmac.new(self._secret, b"completion code " + participant.encode(), hashlib.sha256).digest()
        code = base64.b32encode(digest).decode()[:10]
        return f"{code[:5]}-{code[5:]}"


# --- the application -------------------------------------------------------------------------


class _BodyTooLarge(Exception):
    pass


class _Guard:
    """Refuses bodies over ``max_body`` bytes (413) and adds the security headers to every response."""

    def __init__(self, app: ASGIApp, max_body: int = MAX_BODY):
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_guarded(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = MutableHeaders(scope=message)
                for name, value in _SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
                headers.setdefault("Cache-Control", "no-store")
            await send(message)

        for name, value in scope["headers"]:
            if name == b"content-length":
                if not value.isdigit() or int(value) > self.max_body:
                    await PlainTextResponse("Request body too large", 413)(scope, receive, send_guarded)
                    return
        received = 0

        async def receive_limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise _BodyTooLarge
            return message

        try:
            await self.app(scope, receive_limited, send_guarded)
        except _BodyTooLarge:
            if not started:
                await PlainTextResponse("Request body too large", 413)(scope, receive, send_guarded)


def _error(request: Request, status: int, text: str) -> Response:
    if request.url.path.startswith(_base(request) + "/api/"):
        return JSONResponse({"error": text}, status)
    return PlainTextResponse(text, status)


def _base(request: Request) -> str:
    return request.scope.get("root_path", "").rstrip("/")


class _Survey:
    def __init__(self, study: Study, store: AnswerStore, keys: _Keys, admin_token: str):
        self.study = study
        self.store = store
        self.keys = keys
        self._admin = admin_token.encode()
        self.questions = max(len(block) for block in study.blocks)

    # who is asking

    def _participant(self, request: Request) -> str | None:
        return self.keys.participant_of(request.cookies.get(PARTICIPANT_COOKIE))

    async def _known(self, request: Request) -> tuple[str, int] | None:
        participant = self._participant(request)
        if participant is None:
            return None
        block = await run_in_threadpool(self.store.block_of, participant)
        return None if block is None else (participant, block)

    def _admin_ok(self, request: Request) -> bool:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), self._admin)

    @staticmethod
    def _cookie(request: Request, response: Response, name: str, value: str, max_age: int | None) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path=_base(request) + "/",
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
        )

    # the participant's pages

    async def consent(self, request: Request) -> Response:
        nonce = request.cookies.get(NONCE_COOKIE)
        fresh = not nonce or len(nonce) > 64
        if fresh:
            nonce = secrets.token_urlsafe(24)
        returning = await self._known(request) is not None
        page = templates.consent_page(
            _base(request), self.keys.start_csrf.dumps(nonce), self.questions, returning=returning
        )
        response = HTMLResponse(page)
        if fresh:
            self._cookie(request, response, NONCE_COOKIE, nonce, None)
        return response

    async def start(self, request: Request) -> Response:
        form = await request.form(max_files=0, max_fields=8)
        token = form.get("csrf_token")
        if not isinstance(token, str) or not self.keys.start_token_ok(token, request.cookies.get(NONCE_COOKIE)):
            page = templates.message_page(
                _base(request),
                "Please start again",
                "This form has expired. Please go back to the start and try again.",
            )
            return HTMLResponse(page, 403)
        response = RedirectResponse(_base(request) + "/trials", 303)
        if await self._known(request) is None:
            participant = "p" + secrets.token_hex(12)
            await run_in_threadpool(self.store.add_participant, participant)
            self._cookie(
                request, response, PARTICIPANT_COOKIE, self.keys.participant.dumps(participant), COOKIE_MAX_AGE
            )
        response.delete_cookie(NONCE_COOKIE, path=_base(request) + "/")
        return response

    async def trials(self, request: Request) -> Response:
        if await self._known(request) is None:
            return RedirectResponse(_base(request) + "/", 303)
        return HTMLResponse(templates.trials_page(_base(request)))

    async def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        body, kind = (templates.SCRIPT, "text/javascript") if name == "trial.js" else (templates.STYLE, "text/css")
        return Response(body, media_type=kind, headers={"Cache-Control": "public, max-age=3600"})

    async def image(self, request: Request) -> Response:
        path = self.study.image_path(request.path_params["image_id"])
        if path is None:
            return PlainTextResponse("Not Found", 404)
        return FileResponse(path, media_type="image/png", headers={"Cache-Control": IMAGE_CACHE})

    # the participant's API

    async def next_trial(self, request: Request) -> Response:
        participant = self._participant(request)
        progress = None if participant is None else await run_in_threadpool(self.store.progress, participant)
        if progress is None:
            return _error(request, 401, "no participant: start from the first page")
        csrf = self.keys.api_csrf.dumps(participant)
        if progress.next_trial is None:
            return JSONResponse({"done": True, "code": self.keys.completion_code(participant), "csrf": csrf})
        trial = self.study.trials[progress.next_trial]
        return JSONResponse(
            {
                "trial": trial.id,
                "prompt_1": trial.prompt_1,
                "prompt_2": trial.prompt_2,
                "options": [{"id": option, "image": f"images/{trial.images[option]}.png"} for option in progress.shown],
                "progress": [progress.answered, progress.total],
                "csrf": csrf,
            }
        )

    async def answer(self, request: Request) -> Response:
        known = await self._known(request)
        if known is None:
            return _error(request, 401, "no participant: start from the first page")
        participant, block = known
        if not self.keys.api_token_ok(request.headers.get("x-csrf-token"), participant):
            return _error(request, 403, "missing or wrong CSRF token")
        try:
            data = json.loads(await request.body(), parse_constant=_refuse_constant)
        except (ValueError, UnicodeDecodeError):
            return _error(request, 400, "the body is not JSON")
        if not isinstance(data, dict):
            return _error(request, 400, "the body is not a JSON object")
        trial_id, choice, ms = data.get("trial"), data.get("choice"), data.get("ms")
        trial = self.study.trials.get(trial_id) if isinstance(trial_id, str) else None
        if trial is None:
            return _error(request, 400, "unknown trial")
        if trial_id not in self.study.block_sets[block]:
            return _error(request, 400, "the trial is not one of this participant's")
        if not isinstance(choice, str) or choice not in trial.images:
            return _error(request, 400, "the choice is not one of the trial's options")
        if type(ms) is not int or not 0 <= ms <= MAX_MS:
            return _error(request, 400, "ms must be a non-negative integer")
        if not await run_in_threadpool(self.store.record, participant, trial_id, choice, ms):
            return _error(request, 409, "this trial was answered already")
        return Response(status_code=204)

    # the researcher's

    async def answers_csv(self, request: Request) -> Response:
        if not self._admin_ok(request):
            return _unauthorized()
        rows = await run_in_threadpool(self.store.answers)
        n = self.study.max_options
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(
            [
                "participant",
                "trial",
                "pair",
                "order",
                "seed",
                *(f"position_{i + 1}" for i in range(n)),
                "chosen",
                "ms",
                "time",
            ]
        )
        for participant, trial_id, choice, ms, time, shown in rows:
            trial = self.study.trials[trial_id]
            positions = [trial.methods[option] for option in json.loads(shown)]
            positions += [""] * (n - len(positions))
            blank = lambda value: "" if value is None else value  # noqa: E731
            writer.writerow(
                [
                    participant,
                    trial_id,
                    blank(trial.pair),
                    blank(trial.order),
                    blank(trial.seed),
                    *positions,
                    trial.methods[choice],
                    ms,
                    time,
                ]
            )
        return _csv(out.getvalue(), "answers.csv")

    async def participants_csv(self, request: Request) -> Response:
        if not self._admin_ok(request):
            return _unauthorized()
        rows = await run_in_threadpool(self.store.participants)
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["participant", "k", "block", "started", "answered", "trials", "code"])
        for participant, k, block, started, answered in rows:
            total = len(self.study.blocks[block])
            code = self.keys.completion_code(participant) if answered == total else ""
            writer.writerow([participant, k, block, started, answered, total, code])
        return _csv(out.getvalue(), "participants.csv")


async def _no_icon(request: Request) -> Response:
    """Browsers ask for one; an empty answer rather than a 404 in the console."""
    return Response(status_code=204, headers={"Cache-Control": "public, max-age=86400"})


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _unauthorized() -> Response:
    return PlainTextResponse("Unauthorized", 401, headers={"WWW-Authenticate": "Bearer"})


def _csv(text: str, name: str) -> Response:
    return Response(
        text,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"},
    )


async def _server_error(request: Request, exc: Exception) -> Response:
    """A generic 500, with no traceback; the server's log has it."""
    return PlainTextResponse("Internal Server Error", 500, headers=_SECURITY_HEADERS)


def create_app(
    study_dir: str | os.PathLike,
    *,
    admin_token: str,
    secret_key: str | None = None,
    shuffle: bool = True,
    max_body: int = MAX_BODY,
) -> Starlette:
    """The study's web application: checks the study, opens ``answers.sqlite`` and the secret key (``secret.key``
    unless ``secret_key`` is given). ``admin_token`` guards ``/admin/``; ``shuffle=False`` shows options in the
    design's order."""
    if not admin_token:
        raise InputError("the admin token is empty")
    folder = Path(study_dir)
    study = Study(folder)
    keys = _Keys(secret_key if secret_key is not None else _secret_key(folder))
    store = AnswerStore(folder / "answers.sqlite", study, shuffle=shuffle)
    survey = _Survey(study, store, keys, admin_token)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        yield
        store.close()

    app = Starlette(
        debug=False,
        routes=[
            Route("/", survey.consent, methods=["GET"]),
            Route("/start", survey.start, methods=["POST"]),
            Route("/trials", survey.trials, methods=["GET"], name="trials"),
            Route("/static/{name:str}", survey.static, methods=["GET"]),
            Route("/images/{image_id}.png", survey.image, methods=["GET"]),
            Route("/api/trial", survey.next_trial, methods=["GET"]),
            Route("/api/answer", survey.answer, methods=["POST"]),
            Route("/favicon.ico", _no_icon, methods=["GET"]),
            Route("/admin/answers.csv", survey.answers_csv, methods=["GET"]),
            Route("/admin/participants.csv", survey.participants_csv, methods=["GET"]),
        ],
        exception_handlers={Exception: _server_error},
        lifespan=lifespan,
    )
    app.add_middleware(_Guard, max_body=max_body)
    app.state.study = study
    app.state.store = store
    return app


def serve(
    study_dir: str | os.PathLike,
    host: str = "127.0.0.1",
    port: int = 8000,
    admin_token: str | None = None,
    *,
    root_path: str = "",
    shuffle: bool = True,
) -> None:
    """Serve the study until interrupted; logs the participants' address and the admin token (made if not given).

    ``root_path``: the prefix a reverse proxy serves the study under (``/study``, say). Uvicorn's access log is
    off: participants' addresses are not written anywhere.
    """
    import uvicorn

    if not logging.getLogger().handlers:  # called from Python rather than the command line
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    token = admin_token or secrets.token_urlsafe(24)
    root_path = root_path.rstrip("/")
    app = create_app(study_dir, admin_token=token, shuffle=shuffle)
    shown_host = socket.gethostname() if host in ("", "0.0.0.0", "::") else host
    if ":" in shown_host:
        shown_host = f"[{shown_host}]"
    logger.info("participants: http://%s:%d%s/", shown_host, port, root_path)
    logger.info("admin token: %s", token)
    uvicorn.run(
        app,
        host=host,
        port=port,
        root_path=root_path,
        access_log=False,
        server_header=False,
        log_level="info",
        timeout_graceful_shutdown=5,
    )
