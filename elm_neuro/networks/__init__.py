"""Networks: ELM layers and networks, spiking and LSTM baselines, budgets, presets.

One idea per module, each importing only from those listed before it:

- ``checks``: validators and :class:`~elm_neuro.networks.checks.ConfigMixin` (configs that compose,
  flat names, JSON round trip);
- ``budget``: the budget vocabulary ``(n, k_e, k_c, p)`` and the N solver ``closest_n``;
- ``elm_config``, ``lif_config``: the configurations (layer configs held by network configs; the
  docs/design.md §3 ELM readout configuration shared by the ELM and spiking networks);
- ``presets``: the paper's named configurations as plain data (no imports, no registration);
- ``common``: input embedding, variational dropout masks, the one ``NetworkOutput`` type,
  leaky integration, ``from_preset`` / ``budget``;
- ``synapses``: the synapse kernels of every family (dense map, synapse list, embedding bag);
- ``elm_layer``, ``elm_network``, ``elm_neuron``: the ELM family; ``engines``: the fused sequence
  engines of the ELM layer and of the LIF / adLIF layer (one autograd Function over the whole
  time loop each; Numba kernels on the CPU, Triton on CUDA, a PyTorch reference of each kernel),
  chosen by the ``engine`` field of the layer configurations;
- ``lif_layer``, ``lif_network``: the LIF / adLIF family; ``lstm``: the LSTM baseline;
- ``registry``: families by name and the one resolver ``resolve_model_config``;
- ``stacked``: S ELM Networks of one configuration as one block-diagonal network (``stack_models``).

Nothing here reads data, trains or plots.
"""
