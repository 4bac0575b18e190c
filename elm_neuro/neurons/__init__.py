"""Neurons: single-step dynamics as small pure torch functions over a population of neurons.

- :mod:`~elm_neuro.neurons.elm`: the Expressive Leaky Memory neuron (docs/design.md §1): branch integration,
  decayed memory, MLP update, output; timescale helpers.
- :mod:`~elm_neuro.neurons.lif`: leaky integrate-and-fire and adaptive LIF dynamics.
- :mod:`~elm_neuro.neurons.surrogate`: the spike non-linearity with surrogate gradients.

Bottom layer with :mod:`elm_neuro.wiring`: imports only the base modules (and itself).
"""
