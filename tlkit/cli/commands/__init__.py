"""One module per ``tlkit`` subcommand.

Each module defines ``NAME``, ``HELP``, ``ORDER`` (position in ``tlkit --help``),
``add_arguments(parser)`` and ``run(args) -> int``. Modules import nothing heavy
at module level (no TensorFlow, no Keras): ``tlkit --help`` must stay instant.
"""
