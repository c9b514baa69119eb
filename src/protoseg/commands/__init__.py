"""One module per subcommand of the ``protoseg`` program (see protoseg.cli)."""
