"""The command line: dispatch, error model, one module per subcommand."""
