"""sig-bridge: a ServerRouter that joins pysig TCP clients and MQTT (see DESIGN.md, "Bridge")."""
