"""The survey's report on synthetic answers, and simulated participants against a fake server."""

from __future__ import annotations

import csv
import io
import json
import random
import urllib.parse

import numpy as np
import pytest

pytest.importorskip("choix")
pytest.importorskip("krippendorff")

from blending.survey import report as survey_report  # noqa: E402
from blending.survey.report import analyse, excluded, report  # noqa: E402

METHODS = ("alpha", "beta", "gamma", "delta")


def make_design(methods=METHODS, categories=(("animals", 4), ("objects", 4)), seeds=(1, 2), attention=2):
    """A design.json in the study's format: every pair in both orders and every seed, all in one
    block (so that every participant sees every trial)."""
    trials, counter, pair = [], 0, 0
    for category, pairs in categories:
        for _ in range(pairs):
            for order in ("given", "swapped"):
                for seed in seeds:
                    options = []
                    for method in methods:
                        counter += 1
                        options.append({"id": f"o{counter}", "image": f"i{counter}", "method": method})
                    prompts = (f"p{pair}a", f"p{pair}b") if order == "given" else (f"p{pair}b", f"p{pair}a")
                    trials.append(
                        {
                            "id": f"t{len(trials) + 1:04d}",
                            "kind": "blend",
                            "category": category,
                            "pair": pair,
                            "order": order,
                            "seed": seed,
                            "prompt_1": prompts[0],
                            "prompt_2": prompts[1],
                            "options": options,
                        }
                    )
            pair += 1
    for check in range(attention):
        options = []
        for method in ("plain", "distractor", "distractor"):
            counter += 1
            options.append({"id": f"o{counter}", "image": f"i{counter}", "method": method})
        trials.append(
            {
                "id": f"t{len(trials) + 1:04d}",
                "kind": "attention",
                "category": None,
                "pair": None,
                "order": None,
                "seed": 1,
                "prompt_1": f"check{check}",
                "prompt_2": f"check{check}",
                "answer": options[0]["id"],
                "options": options,
            }
        )
    return {
        "format": "blending-survey/1",
        "source": {"run": "runs/synthetic", "experiment": "synthetic", "model": "none"},
        "settings": {
            "methods": list(methods),
            "trials_per_participant": len(trials),
            "attention_checks": attention,
            "seed": 0,
        },
        "trials": trials,
        "blocks": [[t["id"] for t in trials]],
    }


def answer_rows(design, participants, pick, *, fail=lambda p, check: False, seed=0):
    """Rows of the admin CSV: ``pick(participant, trial) -> method`` on blend trials; ``fail(participant,
    check number) -> bool`` on attention trials."""
    rng = random.Random(seed)
    width = max(len(t["options"]) for t in design["trials"])
    rows = []
    for p in range(participants):
        check = 0
        for trial in design["trials"]:
            options = list(trial["options"])
            rng.shuffle(options)
            if trial["kind"] == "attention":
                wrong = [o for o in options if o["id"] != trial["answer"]]
                chosen = wrong[0]["id"] if fail(p, check) else trial["answer"]
                check += 1
            else:
                method = pick(p, trial)
                chosen = next(o["id"] for o in options if o["method"] == method)
            row = {
                "participant": f"P{p:03d}",
                "trial": trial["id"],
                "pair": trial["pair"],
                "order": trial["order"],
                "seed": trial["seed"],
            }
            for k in range(width):
                row[f"position_{k + 1}"] = options[k]["id"] if k < len(options) else ""
            row.update({"chosen": chosen, "ms": 1000 + rng.randrange(4000), "time": f"2025-01-01T00:{p % 60:02d}:00Z"})
            rows.append(row)
    return rows


def write_csv(rows, path):
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def interval_width(analysis, method, kind="overall", name=None):
    table = analysis.win_shares[kind] if name is None else analysis.win_shares[kind][name]
    return table[method]["high"] - table[method]["low"]


def test_a_method_that_always_wins_ranks_first_with_a_tight_interval(tmp_path):
    design = make_design()
    rows = answer_rows(design, 12, lambda p, t: "gamma")
    analysis = analyse(write_csv(rows, tmp_path / "answers.csv"), design, resamples=300)
    assert analysis.ranking[0] == "gamma"
    gamma = analysis.win_shares["overall"]["gamma"]
    assert gamma["share"] == 1 and gamma["low"] == 1 and gamma["high"] == 1
    assert gamma["p_first"] == 1
    for category in ("animals", "objects"):
        assert analysis.win_shares["by_category"][category]["gamma"]["share"] == 1
    for order in ("given", "swapped"):
        assert analysis.win_shares["by_order"][order]["gamma"]["share"] == 1
    assert analysis.bt_ranking[0] == "gamma"
    assert analysis.win_shares["chance"] == pytest.approx(0.25)


@pytest.mark.parametrize(
    ("seen", "failed", "out"),
    [
        (0, 0, False),
        (1, 0, False),
        (1, 1, True),
        (2, 1, False),
        (2, 2, True),
        (3, 1, False),
        (3, 2, True),
        (4, 2, False),
    ],
)
def test_the_exclusion_rule(seen, failed, out):
    assert excluded(seen, failed) is out


def test_exclusions_drop_every_answer_of_an_excluded_participant(tmp_path):
    design = make_design(attention=2)
    # P000: both checks failed (excluded); P001: one of two (kept); P002, P003: none failed
    failures = {0: {0, 1}, 1: {0}}
    rows = answer_rows(design, 4, lambda p, t: "alpha", fail=lambda p, c: c in failures.get(p, set()))
    # P004 saw only one check and failed it (excluded); P005 saw none (kept)
    one_check = [
        r
        for r in answer_rows(design, 1, lambda p, t: "beta", fail=lambda p, c: True)
        if r["trial"] != design["trials"][-1]["id"]
    ]
    no_check = [
        r
        for r in answer_rows(design, 1, lambda p, t: "beta")
        if r["trial"] not in {t["id"] for t in design["trials"][-2:]}
    ]
    for row in one_check:
        row["participant"] = "P004"
    for row in no_check:
        row["participant"] = "P005"
    rows += one_check + no_check
    analysis = analyse(write_csv(rows, tmp_path / "answers.csv"), design, resamples=50)
    participants = analysis.participants
    assert participants["excluded_ids"] == ["P000", "P004"]
    assert (participants["answered"], participants["excluded"], participants["kept"]) == (6, 2, 4)
    assert participants["without_checks"] == 1
    assert {r["participant"] for r in analysis.tidy} == {"P001", "P002", "P003", "P005"}
    kept_rows = [r for r in rows if r["participant"] in {"P001", "P002", "P003", "P005"}]
    assert len(analysis.tidy) == len(kept_rows)
    assert analysis.answers["dropped_with_excluded"] == len(rows) - len(kept_rows)


def test_a_repeated_answer_counts_once(tmp_path):
    design = make_design()
    rows = answer_rows(design, 2, lambda p, t: "alpha")
    repeat = dict(rows[0])
    repeat["chosen"] = next(o["id"] for o in design["trials"][0]["options"] if o["method"] == "beta")
    analysis = analyse(rows + [repeat], design, resamples=20)
    assert analysis.answers["duplicates"] == 1
    assert analysis.win_shares["overall"]["alpha"]["share"] == 1


def test_answers_that_do_not_fit_the_design_are_refused():
    design = make_design()
    rows = answer_rows(design, 1, lambda p, t: "alpha")
    with pytest.raises(ValueError, match="not in the design"):
        analyse([{**rows[0], "trial": "t9999"}], design, resamples=10)
    with pytest.raises(ValueError, match="neither an option nor a method"):
        analyse([{**rows[0], "chosen": rows[1]["chosen"]}], design, resamples=10)


def test_krippendorffs_alpha_is_one_for_identical_participants_and_near_zero_for_random_ones():
    design = make_design()

    def same(p, trial):  # everyone picks the same method on a trial, different methods across trials
        return METHODS[int(trial["id"][1:]) % len(METHODS)]

    identical = analyse(answer_rows(design, 6, same), design, resamples=20)
    assert identical.agreement["alpha"] == pytest.approx(1.0)
    assert identical.agreement["coders"] == 6
    assert identical.agreement["units_pairable"] == 32

    rng = random.Random(1)
    noisy = analyse(answer_rows(design, 40, lambda p, t: rng.choice(METHODS)), design, resamples=20)
    assert abs(noisy.agreement["alpha"]) < 0.05


def test_the_bootstrap_resamples_pairs_and_participants():
    """Same overall share of alpha (1/2); answers independent, or pairs that disagree, or
    participants that disagree: only resampling both widens the interval in both cases."""
    design = make_design(categories=(("animals", 8),))  # one category: its pairs are resampled together
    rng = random.Random(2)
    kwargs = {"resamples": 400, "seed": 0}
    independent = analyse(answer_rows(design, 20, lambda p, t: rng.choice(("alpha", "beta"))), design, **kwargs)
    pairs_disagree = analyse(
        answer_rows(design, 20, lambda p, t: "alpha" if t["pair"] < 4 else "beta"), design, **kwargs
    )
    people_disagree = analyse(answer_rows(design, 20, lambda p, t: "alpha" if p < 10 else "beta"), design, **kwargs)
    for analysis in (pairs_disagree, people_disagree):
        assert analysis.win_shares["overall"]["alpha"]["share"] == pytest.approx(0.5)
    base = interval_width(independent, "alpha")
    # answer-level noise is seen by both resamplings: conservative, about twice the binomial width (0.08)
    assert base < 0.2
    assert interval_width(pairs_disagree, "alpha") > 3 * base
    assert interval_width(people_disagree, "alpha") > 2 * base
    # the same seed, the same intervals
    again = analyse(answer_rows(design, 20, lambda p, t: "alpha" if t["pair"] < 4 else "beta"), design, **kwargs)
    assert again.win_shares == pairs_disagree.win_shares


def test_bradley_terry_agrees_with_win_shares_on_a_clear_case():
    import choix

    design = make_design()
    rng = np.random.default_rng(3)
    probabilities = {"alpha": 0.05, "beta": 0.55, "gamma": 0.15, "delta": 0.25}
    analysis = analyse(
        answer_rows(design, 30, lambda p, t: rng.choice(list(probabilities), p=list(probabilities.values()))),
        design,
        resamples=200,
    )
    assert analysis.ranking == ["beta", "delta", "gamma", "alpha"]
    assert analysis.bt_ranking == analysis.ranking
    strengths = [analysis.bradley_terry["strengths"][m]["log_strength"] for m in METHODS]
    assert sum(strengths) == pytest.approx(0, abs=1e-9)
    for m in METHODS:
        s = analysis.bradley_terry["strengths"][m]
        assert s["low"] <= s["log_strength"] <= s["high"]
    # the dense fit is choix's ilsr_pairwise on the list of wins
    wins = []
    for r in analysis.tidy:
        if r["kind"] == "blend":
            winner = METHODS.index(r["method"])
            wins += [(winner, loser) for loser in range(len(METHODS)) if loser != winner]
    listed = choix.ilsr_pairwise(len(METHODS), wins, alpha=survey_report.BT_ALPHA)
    np.testing.assert_allclose(strengths, listed - listed.mean(), atol=1e-5)


def test_report_writes_markdown_figures_summary_and_one_tidy_row_per_kept_answer(tmp_path):
    design = make_design()
    (tmp_path / "study").mkdir()
    (tmp_path / "study" / "design.json").write_text(json.dumps(design))
    rng = random.Random(4)
    rows = answer_rows(
        design, 10, lambda p, t: rng.choice(("beta", "beta", "alpha", "delta")), fail=lambda p, c: p == 9
    )
    answers = write_csv(rows, tmp_path / "answers.csv")
    truth = {
        "trials": 32,
        "shares": {"alpha": 0.2, "beta": 0.6, "gamma": 0.0, "delta": 0.2},
        "ranking": ["beta", "alpha", "delta", "gamma"],
    }
    summary = report(answers, tmp_path / "study", tmp_path / "out", resamples=100, truth=truth)
    out = tmp_path / "out"
    for name in ("report.md", "summary.json", "answers-tidy.csv", "win-shares.png", "strengths.png"):
        assert (out / name).stat().st_size > 0
    text = (out / "report.md").read_text()
    for heading in (
        "## Win shares",
        "### By category",
        "### By prompt order",
        "## Bradley-Terry",
        "Krippendorff",
        "pigeonhole",
    ):
        assert heading in text
    assert "![Win shares" in text and "win-shares.png" in text
    with open(out / "answers-tidy.csv", newline="") as file:
        tidy = list(csv.DictReader(file))
    kept = [r for r in rows if r["participant"] != "P009"]
    assert len(tidy) == len(kept)
    assert set(tidy[0]) == set(survey_report.TIDY_COLUMNS)
    assert {r["method"] for r in tidy if r["kind"] == "blend"} <= set(METHODS)
    written = json.loads((out / "summary.json").read_text())
    assert written == summary
    assert written["ranking"][0] == "beta"
    assert written["participants"]["excluded_ids"] == ["P009"]
    assert written["truth"]["same_first"] is True
    assert set(written["win_shares"]["by_category"]) == {"animals", "objects"}


def test_the_command_line_reads_the_answers_next_to_the_report(tmp_path, capsys):
    design = make_design()
    study = tmp_path / "study"
    study.mkdir()
    (study / "design.json").write_text(json.dumps(design))
    write_csv(answer_rows(design, 3, lambda p, t: "delta"), tmp_path / "answers.csv")
    assert survey_report.main([str(study), "--answers", str(tmp_path / "answers.csv"), "--resamples", "20"]) == 0
    assert (study / "report" / "report.md").exists()
    assert "ranking delta" in capsys.readouterr().out
    assert survey_report.main([str(study), "--out", str(tmp_path / "nothing")]) == 2


# --- simulated participants against a fake server --------------------------------------------------


class FakeServer:
    """The HTTP contract of blending.survey.server, in process: sessions by cookie, CSRF on /start
    and /api/answer, shuffled option order, the admin CSV."""

    TOKEN = "admin-secret"

    def __init__(self, design, images):
        self.design, self.images = design, images
        self.trials = {t["id"]: t for t in design["trials"]}
        self.sessions: dict[str, dict] = {}
        self.answers: list[dict] = []
        self.rng = random.Random(0)
        self.image_requests = 0

    def handler(self, request):
        import httpx

        cookies = dict(
            part.strip().split("=", 1) for part in request.headers.get("cookie", "").split(";") if "=" in part
        )
        session = self.sessions.get(cookies.get("sid", ""))
        path = request.url.path
        if request.method == "GET" and path == "/":
            sid = f"s{len(self.sessions)}"
            self.sessions[sid] = {"csrf": f"csrf-{sid}", "started": False}
            html = f'<html><form method="post" action="/start"><input type="hidden" value="csrf-{sid}" name="csrf_token"><button>Start</button></form></html>'
            return httpx.Response(200, html=html, headers={"set-cookie": f"sid={sid}; Path=/"})
        if request.method == "POST" and path == "/start":
            form = urllib.parse.parse_qs(request.content.decode())
            if session is None or form.get("csrf_token") != [session["csrf"]]:
                return httpx.Response(403)
            block = self.design["blocks"][
                sum(s["started"] for s in self.sessions.values()) % len(self.design["blocks"])
            ]
            session.update(started=True, participant=f"P{len(self.sessions):03d}", queue=list(block), orders={})
            return httpx.Response(303, headers={"location": "/study"})
        if request.method == "GET" and path == "/study":
            return httpx.Response(200, html="<html>study</html>")
        if path.startswith("/images/"):
            self.image_requests += 1
            return httpx.Response(200, content=self.images[path.removeprefix("/images/").removesuffix(".png")])
        if path == "/admin/answers.csv":
            if request.headers.get("authorization") != f"Bearer {self.TOKEN}":
                return httpx.Response(401)
            return httpx.Response(200, text=self.csv())
        if session is None or not session["started"]:
            return httpx.Response(403)
        if request.method == "GET" and path == "/api/trial":
            if not session["queue"]:
                return httpx.Response(
                    200, json={"done": True, "code": f"CODE-{session['participant']}", "csrf": session["csrf"]}
                )
            trial = self.trials[session["queue"][0]]
            options = list(trial["options"])
            self.rng.shuffle(options)
            session["orders"][trial["id"]] = [o["id"] for o in options]
            done = len(self.design["blocks"][0]) - len(session["queue"])
            return httpx.Response(
                200,
                json={
                    "trial": trial["id"],
                    "prompt_1": trial["prompt_1"],
                    "prompt_2": trial["prompt_2"],
                    "options": [{"id": o["id"], "image": f"/images/{o['image']}.png"} for o in options],
                    "progress": [done, len(self.design["blocks"][0])],
                    "csrf": session["csrf"],
                },
            )
        if request.method == "POST" and path == "/api/answer":
            if request.headers.get("x-csrf-token") != session["csrf"]:
                return httpx.Response(403)
            body = json.loads(request.content)
            if body["trial"] != session["queue"][0] or body["choice"] not in session["orders"][body["trial"]]:
                return httpx.Response(409)
            trial = self.trials[body["trial"]]
            self.answers.append(
                {
                    "participant": session["participant"],
                    "trial": trial["id"],
                    "pair": trial["pair"],
                    "order": trial["order"],
                    "seed": trial["seed"],
                    "positions": session["orders"][trial["id"]],
                    "chosen": body["choice"],
                    "ms": body["ms"],
                }
            )
            session["queue"].pop(0)
            return httpx.Response(200, json={"ok": True})
        return httpx.Response(404)

    def csv(self):
        width = max(len(t["options"]) for t in self.design["trials"])
        columns = [
            "participant",
            "trial",
            "pair",
            "order",
            "seed",
            *(f"position_{k + 1}" for k in range(width)),
            "chosen",
            "ms",
            "time",
        ]
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=columns)
        writer.writeheader()
        for a in self.answers:
            row = {k: a[k] for k in ("participant", "trial", "pair", "order", "seed", "chosen", "ms")}
            row.update(
                {f"position_{k + 1}": (a["positions"][k] if k < len(a["positions"]) else "") for k in range(width)}
            )
            row["time"] = "2025-01-01T00:00:00Z"
            writer.writerow(row)
        return out.getvalue()


def _png(colour):
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), colour).save(buffer, format="png")
    return buffer.getvalue()


def test_simulated_participants_go_through_the_http_contract(tmp_path):
    import httpx

    from blending.survey.simulate import csrf_token, simulate

    design = make_design(categories=(("animals", 3),), seeds=(1,))
    # alpha's blends are red, the other methods' blue; an attention check's plain image is red
    red = {o["image"] for t in design["trials"] for o in t["options"] if o["method"] in ("alpha", "plain")}
    images = {
        o["image"]: _png((220, 20, 20) if o["image"] in red else (20, 20, 220))
        for t in design["trials"]
        for o in t["options"]
    }
    server = FakeServer(design, images)
    transport = httpx.MockTransport(server.handler)

    def reddest(prompt_1, prompt_2, options):
        return max(options, key=lambda i: np.asarray(options[i])[..., 0].mean())

    done = simulate(
        "http://survey.test", 12, choose=reddest, random_rate=0.05, careless=0.3, seed=5, transport=transport
    )
    assert [p.code for p in done] == [f"CODE-P{i + 1:03d}" for i in range(12)]
    assert all(len(p.answers) == len(design["trials"]) for p in done)
    assert server.image_requests == 12 * sum(len(t["options"]) for t in design["trials"])
    careless = {f"P{p.index + 1:03d}" for p in done if p.careless}
    assert 0 < len(careless) < 12

    answers = survey_report.fetch_answers(
        "http://survey.test", FakeServer.TOKEN, tmp_path / "answers.csv", transport=transport
    )
    with pytest.raises(httpx.HTTPStatusError):
        survey_report.fetch_answers("http://survey.test", "wrong", tmp_path / "x.csv", transport=transport)
    analysis = analyse(answers, design, resamples=100)
    assert analysis.ranking[0] == "alpha"
    assert set(analysis.participants["excluded_ids"]) <= careless
    careful = [p for p in done if not p.careless]
    lapses = sum(a["random"] for p in careful for a in p.answers)
    assert 0 < lapses < 0.2 * sum(len(p.answers) for p in careful)

    assert csrf_token('<form><input name="csrf_token" type="hidden" value="abc"/></form>') == "abc"
    with pytest.raises(ValueError):
        csrf_token("<form></form>")


def test_simulate_stops_when_the_server_does_not_take_an_answer():
    import httpx

    from blending.survey.simulate import random_chooser, simulate

    design = make_design(categories=(("animals", 1),), seeds=(1,), attention=0)
    server = FakeServer(design, {o["image"]: _png((0, 0, 0)) for t in design["trials"] for o in t["options"]})
    original = server.handler

    def forgetful(request):  # acknowledges answers without recording them
        if request.url.path == "/api/answer":
            return httpx.Response(200, json={"ok": True})
        return original(request)

    with pytest.raises(RuntimeError, match="again"):
        simulate("http://survey.test", 1, choose=random_chooser(), transport=httpx.MockTransport(forgetful))


# --- the attribute readers' rule ------------------------------------------------------------------


@pytest.fixture(scope="module")
def readers():
    pytest.importorskip("torch")
    from blending.toy.readers import READERS_PATH, load_readers

    if not READERS_PATH.exists():
        pytest.skip("the readers' weights are not there")
    return load_readers()


def _render(shape, colour, size):
    from PIL import Image

    from blending.toy.world import Attributes, render

    return Image.fromarray((render(Attributes(shape, colour, size)) * 255).round().astype(np.uint8))


def test_the_readers_chooser_picks_the_blend_and_the_plain_image_on_a_check(readers):
    from blending.survey.simulate import readers_chooser

    choose = readers_chooser(net=readers)
    prompt_1, prompt_2 = "a large red circle", "a small blue square"
    options = {
        "plain-1": _render("circle", "red", "large"),
        "plain-2": _render("square", "blue", "small"),
        "blend": _render("square", "red", "large"),  # 2/3 of prompt 1, 1/3 of prompt 2
        "neither": _render("star", "green", "small"),
    }
    assert choose(prompt_1, prompt_2, options) == "blend"
    check = {
        "plain": _render("circle", "red", "large"),
        "other": _render("star", "green", "small"),
        "near": _render("circle", "blue", "small"),
    }
    assert choose(prompt_1, prompt_1, check) == "plain"


def test_readers_ranking_ranks_the_method_whose_images_blend(tmp_path, readers):
    from blending.survey.simulate import readers_ranking

    design = make_design(methods=("good", "plain", "off"), categories=(("toy", 2),), seeds=(1,), attention=1)
    prompts = [("a large red circle", "a small blue square"), ("a small green star", "a large yellow cross")]
    pictures = {
        0: {
            "good": ("square", "red", "large"),
            "plain": ("circle", "red", "large"),
            "off": ("triangle", "purple", "small"),
        },
        1: {
            "good": ("cross", "green", "small"),
            "plain": ("cross", "yellow", "large"),
            "off": ("circle", "blue", "large"),
        },
    }
    (tmp_path / "images").mkdir()
    for trial in design["trials"]:
        if trial["kind"] == "blend":
            trial["prompt_1"], trial["prompt_2"] = prompts[trial["pair"]][:: 1 if trial["order"] == "given" else -1]
        for option in trial["options"]:
            attributes = (
                pictures[trial["pair"]][option["method"]] if trial["kind"] == "blend" else ("star", "red", "large")
            )
            _render(*attributes).save(tmp_path / "images" / f"{option['image']}.png")
    (tmp_path / "design.json").write_text(json.dumps(design))
    ranking = readers_ranking(tmp_path, net=readers)
    assert ranking["trials"] == 4
    assert ranking["ranking"][0] == "good"
    assert ranking["shares"]["good"] == 1.0
    assert ranking["by_category"]["toy"]["good"] == 1.0


def test_simulated_participants_against_the_real_server(tmp_path):
    pytest.importorskip("itsdangerous")
    testclient = pytest.importorskip("starlette.testclient")
    server = pytest.importorskip("blending.survey.server")
    from blending.survey.report import answers_from_sqlite
    from blending.survey.simulate import simulate

    design = make_design(categories=(("animals", 2), ("objects", 1)), seeds=(1,))
    study = tmp_path / "study"
    (study / "images").mkdir(parents=True)
    (study / "design.json").write_text(json.dumps(design))
    for trial in design["trials"]:
        for option in trial["options"]:
            red = option["method"] in ("alpha", "plain")
            (study / "images" / f"{option['image']}.png").write_bytes(_png((220, 20, 20) if red else (20, 20, 220)))

    def reddest(prompt_1, prompt_2, options):
        return max(options, key=lambda i: np.asarray(options[i])[..., 0].mean())

    app = server.create_app(study, admin_token="admin-token", secret_key="test-secret")
    with testclient.TestClient(app) as client:
        done = simulate("http://testserver", 8, choose=reddest, random_rate=0.0, careless=0.4, seed=3, client=client)
        admin = {"Authorization": "Bearer admin-token"}
        answers_csv = client.get("/admin/answers.csv", headers=admin)
        participants_csv = client.get("/admin/participants.csv", headers=admin)
    assert answers_csv.status_code == 200 and participants_csv.status_code == 200
    assert all(p.code and len(p.answers) == len(design["trials"]) for p in done)
    (tmp_path / "answers.csv").write_text(answers_csv.text)
    by_code = {r["code"]: r["participant"] for r in csv.DictReader(io.StringIO(participants_csv.text))}
    careless = {by_code[p.code] for p in done if p.careless}
    assert 0 < len(careless) < 8

    from_csv = analyse(tmp_path / "answers.csv", design, resamples=50)  # methods in the CSV
    from_sqlite = analyse(answers_from_sqlite(study), design, resamples=50)  # option ids
    assert from_csv.ranking[0] == "alpha"
    assert set(from_csv.participants["excluded_ids"]) <= careless
    assert from_csv.win_shares == from_sqlite.win_shares
    assert from_csv.participants == from_sqlite.participants
    assert from_csv.positions == from_sqlite.positions
    assert survey_report.main([str(study), "--resamples", "20"]) == 0  # reads answers.sqlite
    assert json.loads((study / "report" / "summary.json").read_text())["ranking"][0] == "alpha"


def test_a_rehearsal_serves_a_copy_of_the_study_in_process(tmp_path, capsys):
    pytest.importorskip("itsdangerous")
    pytest.importorskip("starlette.testclient")
    pytest.importorskip("blending.survey.server")
    from blending.survey import simulate

    design = make_design(categories=(("animals", 2),), seeds=(1,), attention=1)
    study = tmp_path / "study"
    (study / "images").mkdir(parents=True)
    (study / "design.json").write_text(json.dumps(design))
    for trial in design["trials"]:
        for option in trial["options"]:
            (study / "images" / f"{option['image']}.png").write_bytes(_png((90, 90, 90)))
    assert simulate.main([str(study), "--chooser", "random", "-n", "3", "--resamples", "20"]) == 0
    rehearsal = tmp_path / "study-rehearsal"
    assert (rehearsal / "answers.sqlite").exists() and not (study / "answers.sqlite").exists()
    assert (rehearsal / "report" / "report.md").exists()
    assert "3 simulated participants" in capsys.readouterr().out
    assert simulate.main([str(study), "--chooser", "random", "-n", "1"]) == 2  # not over a rehearsal's answers


def test_a_design_with_several_ratios_gets_a_table_per_ratio(tmp_path):
    design = make_design()
    for trial in design["trials"]:
        trial["ratio"] = (0.25 if trial["seed"] == 1 else 0.75) if trial["kind"] == "blend" else None
    rows = answer_rows(design, 4, lambda p, t: "alpha" if t["ratio"] == 0.25 else "beta")
    summary = report(rows, design, tmp_path / "out", resamples=20)
    assert summary["win_shares"]["by_ratio"]["0.25"]["alpha"]["share"] == 1
    assert summary["win_shares"]["by_ratio"]["0.75"]["beta"]["share"] == 1
    assert "### By ratio" in (tmp_path / "out" / "report.md").read_text()
    single = analyse(answer_rows(make_design(), 2, lambda p, t: "alpha"), make_design(), resamples=10)
    assert "by_ratio" not in single.win_shares
