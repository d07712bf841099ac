"""One module per ``saphnet`` subcommand; see :mod:`saphnet.cli`."""
