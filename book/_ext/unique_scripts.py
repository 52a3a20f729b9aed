"""Load each script once per page.

sphinx-thebe 0.3.1 registers its scripts in a way that Sphinx 7 adds twice, and the second
``const THEBE_JS_URL`` is a console error in every browser. Drop repeated scripts from each page.
"""


def _drop_repeated_scripts(app, pagename, templatename, context, doctree):
    seen, unique = set(), []
    for script in context.get("script_files", []):
        # the copies differ only in an inline script's filename: None once, "" the other time
        key = (getattr(script, "filename", script) or "", repr(sorted(getattr(script, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"][:] = unique  # in place: it is the builder's own list


def setup(app):
    app.connect("html-page-context", _drop_repeated_scripts, priority=900)  # after the others add theirs
    return {"parallel_read_safe": True, "parallel_write_safe": True}
