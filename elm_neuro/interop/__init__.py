"""Exchange with other tools: NIR graphs of LIF networks (:mod:`elm_neuro.interop.nir_graph`).

``nir`` is an optional dependency (``pip install 'elm-neuro[nir]'``); importing this package does
not import it, the functions do."""
from elm_neuro.interop.nir_graph import DISCRETISATIONS, NIRUnsupported, from_nir, lif_layer_from_nir, to_nir

__all__ = ["DISCRETISATIONS", "NIRUnsupported", "from_nir", "lif_layer_from_nir", "to_nir"]
