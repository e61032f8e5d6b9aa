"""sig's applications: the layer above the ``sig`` and ``sig_mqtt`` libraries.

* :mod:`sig_apps.cli`: the ``sig`` command (``server``, ``send``, ``listen``, ``request``,
  ``web``, ``alert``), reaching a pysig server over TCP or a broker with ``--mqtt``;
* :mod:`sig_apps.web`: the web event log and its REST API (``sig web``; needs ``sig[web]``);
* :mod:`sig_apps.alert`: desktop notifications per event (``sig alert``);
* :mod:`sig_apps.conformance`: ``sig conformance``, a device checked against ``docs/convention.md``;
* :mod:`sig_apps.options`: what the commands share (addresses, ``--listen``, logging, clean stops),
  also used by ``sig-bridge``.

Nothing below this layer imports it.
"""
