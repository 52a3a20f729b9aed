"""The pages, style sheet and script the survey server sends to participants.

Nothing here names a method, a trial's kind or an answer: the trial page learns each trial from
``/api/trial`` (prompts, opaque option ids, image URLs) and renders it with ``textContent`` and
attributes, never as HTML. The script and the style sheet are served as files under ``static/``, so
the Content-Security-Policy allows scripts and styles from the server itself and nothing inline.

Every address in a page starts with the application's root path (``{base}``), so the study also
works behind a reverse proxy that serves it under a prefix.
"""

from __future__ import annotations

import hashlib
from html import escape

__all__ = ["STYLE", "SCRIPT", "consent_page", "trials_page", "message_page", "static_version"]

STYLE = """\
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%}
body{margin:0;font:18px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1b1b1b;background:#fafafa}
main{max-width:60rem;margin:0 auto;padding:1rem}
h1{font-size:1.5rem;margin:.5rem 0 1rem}
p,li{max-width:40rem}
.primary{display:block;width:100%;max-width:24rem;min-height:3.25rem;margin:1.5rem 0;padding:.75rem 1rem;
 font:inherit;font-weight:600;color:#fff;background:#1f5fbf;border:0;border-radius:.5rem;cursor:pointer}
.primary:focus-visible,.choice:focus-visible{outline:3px solid #f0a000;outline-offset:3px}
.question{font-size:1.25rem;margin:.5rem 0 1rem}
.prompt{font-weight:700}
.progress{display:flex;align-items:center;gap:.75rem;color:#555;font-size:.95rem}
.progress progress{flex:1;height:.75rem}
.options{display:grid;grid-template-columns:repeat(auto-fit,minmax(9rem,1fr));gap:.75rem}
.choice{display:flex;flex-direction:column;align-items:center;gap:.25rem;min-height:3rem;padding:.4rem;
 font:inherit;background:#fff;border:2px solid #ccc;border-radius:.5rem;cursor:pointer;touch-action:manipulation}
.choice:hover{border-color:#1f5fbf}
.choice[disabled]{opacity:.6;cursor:wait}
.choice img{display:block;width:100%;height:auto;aspect-ratio:1/1;object-fit:contain;background:#eee}
.key{font-weight:700;color:#555}
.hint{color:#555;font-size:.95rem}
.code{font:700 1.75rem/1.2 ui-monospace,monospace;letter-spacing:.1em;padding:.75rem 1rem;background:#fff;
 border:2px dashed #1f5fbf;border-radius:.5rem;display:inline-block;user-select:all}
.error{color:#a40000}
[hidden]{display:none!important}
"""

SCRIPT = """\
"use strict";
(function () {
  var base = document.body.getAttribute("data-base") || "";
  var el = function (id) { return document.getElementById(id); };
  var current = null, csrf = null, busy = false, started = 0;

  function show(section) {
    ["loading", "trial", "done", "failure"].forEach(function (name) { el(name).hidden = name !== section; });
  }
  function fail(text) { el("failure-text").textContent = text; show("failure"); busy = false; }

  function load() {
    busy = true;
    fetch(base + "/api/trial", {credentials: "same-origin", cache: "no-store"}).then(function (response) {
      if (response.status === 401) { window.location.href = base + "/"; return null; }
      if (!response.ok) { throw new Error("status " + response.status); }
      return response.json();
    }).then(function (data) {
      if (data === null) { return; }
      csrf = data.csrf;
      if (data.done) { el("code").textContent = data.code; show("done"); busy = false; return; }
      render(data);
    }).catch(function () { fail("The next question could not be loaded. Please check your connection."); });
  }

  function render(data) {
    current = data;
    el("prompt-1").textContent = data.prompt_1;
    el("prompt-2").textContent = data.prompt_2;
    el("count").textContent = (data.progress[0] + 1) + " / " + data.progress[1];
    el("bar").max = data.progress[1];
    el("bar").value = data.progress[0];
    var options = el("options"), pending = data.options.length;
    options.textContent = "";
    data.options.forEach(function (option, i) {
      var button = document.createElement("button");
      button.type = "button";
      button.className = "choice";
      button.setAttribute("data-choice", option.id);
      button.setAttribute("aria-label", "Image " + (i + 1));
      var img = document.createElement("img");
      img.alt = "Image " + (i + 1);
      img.decoding = "async";
      // the time counts from when every image has arrived (or from now, if one never does)
      img.onload = img.onerror = function () { pending -= 1; if (pending === 0 && busy === false) { started = performance.now(); } };
      img.src = option.image;
      var key = document.createElement("span");
      key.className = "key";
      key.textContent = String(i + 1);
      button.appendChild(img);
      button.appendChild(key);
      button.addEventListener("click", function () { choose(option.id); });
      options.appendChild(button);
    });
    show("trial");
    started = performance.now();
    busy = false;
  }

  function choose(choice) {
    if (busy || current === null) { return; }
    busy = true;
    var buttons = el("options").querySelectorAll("button");
    Array.prototype.forEach.call(buttons, function (b) { b.disabled = true; });
    var ms = Math.max(0, Math.round(performance.now() - started));
    fetch(base + "/api/answer", {
      method: "POST", credentials: "same-origin", cache: "no-store",
      headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf},
      body: JSON.stringify({trial: current.trial, choice: choice, ms: ms})
    }).then(function (response) {
      // 409: this question was already answered (a repeated click or a retry): go on
      if (response.status === 204 || response.status === 409) { current = null; load(); return; }
      if (response.status === 401) { window.location.href = base + "/"; return; }
      throw new Error("status " + response.status);
    }).catch(function () { fail("Your answer could not be sent. Please check your connection and try again."); });
  }

  document.addEventListener("keydown", function (event) {
    if (event.altKey || event.ctrlKey || event.metaKey || current === null || el("trial").hidden) { return; }
    var n = parseInt(event.key, 10);
    if (n >= 1 && n <= current.options.length) { event.preventDefault(); choose(current.options[n - 1].id); }
  });
  // the server serves the first unanswered question: after a lost answer, the same one again
  el("retry").addEventListener("click", function () { show("loading"); current = null; load(); });
  load();
})();
"""


def static_version() -> str:
    """A short hash of the script and the style sheet, appended to their URLs so browsers refetch them after a change."""
    return hashlib.sha256((SCRIPT + STYLE).encode()).hexdigest()[:12]


def _page(title: str, base: str, body: str, *, script: bool = False) -> str:
    version = static_version()
    base_html = escape(base, quote=True)
    tail = f'<script src="{base_html}/static/trial.js?v={version}"></script>\n' if script else ""
    return (
        "<!doctype html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="referrer" content="no-referrer">\n'
        f"<title>{escape(title)}</title>\n"
        f'<link rel="stylesheet" href="{base_html}/static/style.css?v={version}">\n'
        f'</head>\n<body data-base="{base_html}">\n<main>\n{body}</main>\n{tail}</body>\n</html>\n'
    )


def consent_page(base: str, csrf_token: str, questions: int, *, returning: bool = False) -> str:
    """The consent and instructions page for a study of ``questions`` questions; its form posts to ``{base}/start``."""
    base_html = escape(base, quote=True)
    again = "<p><strong>Welcome back.</strong> You will continue where you left off.</p>\n" if returning else ""
    body = f"""<h1>Image study</h1>
{again}<p>Thank you for your interest. In this study you will see two words or short descriptions and a few
images made by a computer. For each question, choose the image that <strong>best blends the two
descriptions</strong> into one picture.</p>
<ul>
<li>There are no right or wrong answers for most questions: we want your impression.</li>
<li>Tap or click an image to choose it; on a keyboard, press its number (1, 2, 3, ...).</li>
<li>There are {questions} questions. You can stop at any time; if you come back on the same device
and browser, you continue where you left off.</li>
<li>At the end you receive a completion code.</li>
</ul>
<p>We store only your choices, how long each took and when; we do not ask for your name or e-mail
address. The answers are used for research and may be published in aggregate form. Taking part is
voluntary.</p>
<form method="post" action="{base_html}/start">
<input type="hidden" name="csrf_token" value="{escape(csrf_token, quote=True)}">
<button class="primary" type="submit">I agree, start</button>
</form>
"""
    return _page("Image study", base, body)


def trials_page(base: str) -> str:
    """The trial page: its script fetches each question from ``{base}/api/trial``."""
    body = """<div id="loading"><p>Loading...</p></div>
<section id="trial" hidden>
<div class="progress"><span id="count"></span><progress id="bar" value="0" max="1"></progress></div>
<p class="question">Which image best blends <span class="prompt">&ldquo;<span id="prompt-1"></span>&rdquo;</span>
and <span class="prompt">&ldquo;<span id="prompt-2"></span>&rdquo;</span>?</p>
<div class="options" id="options"></div>
<p class="hint">Tap or click an image, or press its number.</p>
</section>
<section id="done" hidden>
<h1>Thank you!</h1>
<p>You have answered every question. Your completion code:</p>
<p><span class="code" id="code"></span></p>
<p class="hint">Keep this code; you may close the page.</p>
</section>
<section id="failure" hidden>
<p class="error" id="failure-text"></p>
<button class="primary" type="button" id="retry">Try again</button>
</section>
<noscript><p class="error">This study needs JavaScript.</p></noscript>
"""
    return _page("Image study", base, body, script=True)


def message_page(base: str, title: str, text: str) -> str:
    """A short page for an error shown to a person (a stale form, say)."""
    base_html = escape(base, quote=True)
    body = f'<h1>{escape(title)}</h1>\n<p>{escape(text)}</p>\n<p><a href="{base_html}/">Back to the start</a></p>\n'
    return _page(title, base, body)
