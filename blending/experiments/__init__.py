"""Experiments at scale: experiment files (``paper.yaml``, ``toy.yaml``) and ``blending sweep``,
which runs them resumably into an indexed folder."""
