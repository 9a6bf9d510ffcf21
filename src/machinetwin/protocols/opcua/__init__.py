"""OPC UA (OPC 40501-1, umati machine tools): a server for machinetwin's machines, a client
adapter for any server of that model.

- :mod:`.model`: the address space's names and the one map between canonical signals and
  its variables (execution as ChannelState + program state, alarms as AlertType events).
- :mod:`.server`: ``MachineToolServer`` serves any ``Adapter`` as MachineTool objects.
- :mod:`.client`: ``OpcUaClientAdapter`` browses any server for MachineTool objects,
  subscribes, and yields sample batches and events; reconnects after a restart.
- :mod:`.session`: one session and subscription per server, shared by the adapters of
  its machines; notifications go into numpy columns, not one object per sample.
"""
