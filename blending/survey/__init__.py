"""A blind user study of blends, rerunnable: make it from a sweep, serve it, simulate it, report it.

``blending survey make RUN_DIR --out STUDY_DIR`` (:mod:`~blending.survey.design`),
``blending survey serve STUDY_DIR`` (:mod:`~blending.survey.server`),
``blending survey simulate STUDY_DIR`` (:mod:`~blending.survey.simulate`) and
``blending survey report STUDY_DIR`` (:mod:`~blending.survey.report`).

The study folder
----------------
``STUDY_DIR/design.json``: the study design, written once by ``make``; the same inputs give the
same file, byte for byte::

    {
      "format": "blending-survey/1",
      "source": {"run": "<the sweep folder's name>", "experiment": "<name>", "model": "<model>"},
      "settings": {"methods": [...], "trials_per_participant": 40, "attention_checks": 2, "seed": 0},
      "trials": [
        {"id": "t0001", "kind": "blend", "category": "<the pair's category>", "pair": 0,
         "order": "given", "seed": 21, "prompt_1": "lion", "prompt_2": "cat",
         "options": [{"id": "<opaque>", "image": "<image id>", "method": "switch"}, ...]},
        {"id": "t0037", "kind": "attention", "category": null, "pair": null, "order": null, "seed": 21,
         "prompt_1": "lion", "prompt_2": "lion", "answer": "<option id>",
         "options": [{"id": "<opaque>", "image": "<image id>", "method": "plain"},
                     {"id": "<opaque>", "image": "<image id>", "method": "distractor"}, ...]}
      ],
      "blocks": [["t0001", "t0009", ...], ...]
    }

- A ``blend`` trial is the paper's question for one pair, prompt order and seed: the blends of
  every method in ``settings.methods``, side by side; the participant picks the one that best
  blends the two prompts. ``pair`` numbers the unordered pair (both orders share it); ``order``
  is ``"given"`` (the experiment file's order) or ``"swapped"``.
- An ``attention`` trial asks the same question of one prompt twice: its right ``answer`` is that
  prompt's plain image; the other options are plain images of other prompts.
- ``blocks``: the trials each participant sees, in order; the k-th participant gets block
  ``k % len(blocks)``. Across blocks every blend trial is seen equally often; in the design, every
  method takes every position equally often. The server shuffles each trial's options again per
  participant and trial, and stores the order shown.
- A trial may carry ``ratio`` too, when the sweep has several ratios.
- Option ids are opaque and unique within the study; ``images/<image id>.png`` holds each image
  (pixels only: no PNG metadata), its id opaque and stable for the study.

Nothing a participant receives names a method: not the HTML, the JSON, the image URLs, the file
names or the PNGs. ``method``, ``kind`` and ``answer`` stay on the server.

``STUDY_DIR/answers.sqlite``: the server's, in WAL mode with ``synchronous=FULL``: ``participants``
(their block), ``shown`` (each trial's option order, stored when the participant starts) and
``answers`` (participant, trial, choice, ms, time and the order shown), each answer committed
before it is acknowledged. ``STUDY_DIR/secret.key`` signs the participants' cookies, so that a
restarted server continues every participant where they were.
"""
