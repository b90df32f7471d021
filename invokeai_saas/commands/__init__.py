"""The ``invokeai-saas`` subcommands, one module each."""
