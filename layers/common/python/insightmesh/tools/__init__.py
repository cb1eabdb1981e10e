"""Tools that agents may call: the protocol, the lazy registry, the agent loop and the built-ins."""
