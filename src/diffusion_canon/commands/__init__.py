"""The command line's subcommands, one module each: its arguments (``add_parser``) and a ``func`` that imports the
feature only when the command runs, so that ``--help`` never imports torch, diffusers or transformers."""
