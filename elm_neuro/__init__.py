"""elm_neuro: recurrent networks of Expressive Leaky Memory (ELM) neurons beside spiking baselines.

See ``SPEC`` sections referenced in each module's docstring for the equations implemented.
"""
__version__ = "0.1.0"
