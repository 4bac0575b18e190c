"""Wiring: fixed random connectomes (docs/design.md §2), :mod:`~elm_neuro.wiring.connectome`.

Bottom layer with :mod:`elm_neuro.neurons`: imports only the base modules (and itself).
"""
