"""Command-line interface: ``elm-neuro <command> ...``. One module per command group."""
