"""MTConnect: an agent serving machinetwin's machines, a client adapter for any agent, SHDR.

- :mod:`.agent`: ``MTConnectAgent`` serves any ``Adapter`` (virtual machines, or an SHDR
  adapter) over HTTP: ``/probe``, ``/current``, ``/sample`` (streaming), ``/assets``.
- :mod:`.client`: ``MTConnectClientAdapter`` reads any agent into sample batches and events.
- :mod:`.shdr`: the SHDR line protocol of adapters (TCP 7878): parser, an adapter-side
  server that publishes a machine, and ``ShdrAdapter`` that reads any SHDR adapter.
- :mod:`.model`: the device model and the one map between canonical signals and
  MTConnect data items; :mod:`.buffer`: the columnar ring buffer of observations.
"""
