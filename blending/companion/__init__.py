"""What only the companion book uses: the chapters' helpers, their regeneration and checks.

- :mod:`~blending.companion.notebook`: what the chapters share (loading, provenance, figure files, glue);
- :mod:`~blending.companion.figures`: ``python -m blending.companion.figures`` regenerates every chapter;
- :mod:`~blending.companion.fingerprint` and :mod:`~blending.companion.status`: the committed record of
  the pictures, and how they were checked;
- :mod:`~blending.companion.numerics` and :mod:`~blending.companion.portability`: pinned CPU numerics,
  and how far the pictures move on other CPUs;
- :mod:`~blending.companion.explorer`: the interactive explorer.

Importing this package imports nothing else, so that :func:`~blending.companion.numerics.pin` can
run before torch is imported.
"""
