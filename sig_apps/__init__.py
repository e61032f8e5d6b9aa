"""sig's applications, above ``sig`` and ``sig_mqtt`` (they import only those packages' public names)."""
