// node-opcua (an independent OPC UA stack) against machinetwin's server: browse the
// Machines folder, check the MachineTool's type and BrowseNames, read, subscribe.
// Usage: node opcua_node_client.js URL MACHINE SECONDS; prints one JSON object.
const {
  OPCUAClient, AttributeIds, TimestampsToReturn, makeBrowsePath, ClientSubscription,
  ClientMonitoredItem, MessageSecurityMode, SecurityPolicy,
} = require("node-opcua");

async function main() {
  const [url, machineName, seconds] = process.argv.slice(2);
  const client = OPCUAClient.create({
    endpointMustExist: false,
    securityMode: MessageSecurityMode.None,
    securityPolicy: SecurityPolicy.None,
    connectionStrategy: { maxRetry: 3, initialDelay: 200, maxDelay: 1000 },
  });
  await client.connect(url);
  const session = await client.createSession();
  const ns = await session.readNamespaceArray();
  const mt = ns.indexOf("http://opcfoundation.org/UA/MachineTool/");
  const di = ns.indexOf("http://opcfoundation.org/UA/DI/");
  const machinery = ns.indexOf("http://opcfoundation.org/UA/Machinery/");
  const twin = ns.indexOf("urn:machinetwin:opcua");
  const folder = await session.translateBrowsePath(makeBrowsePath("ObjectsFolder", `/${machinery}:Machines`));
  const machines = await session.browse(folder.targets[0].targetId);
  const ref = machines.references.find((r) => r.browseName.name === machineName);
  const typeName = await session.read({ nodeId: ref.typeDefinition, attributeId: AttributeIds.BrowseName });
  const top = await session.browse(ref.nodeId);
  const paths = {
    channelState: `/${mt}:Monitoring/${mt}:Channel1/${mt}:ChannelState`,
    channelMode: `/${mt}:Monitoring/${mt}:Channel1/${mt}:ChannelMode`,
    feedOverride: `/${mt}:Monitoring/${mt}:Channel1/${mt}:FeedOverride`,
    isRotating: `/${mt}:Monitoring/${mt}:Spindle/${mt}:IsRotating`,
    program: `/${mt}:Production/${mt}:ActiveProgram/${mt}:Name`,
    programState: `/${mt}:Production/${mt}:ActiveProgram/${mt}:State/0:CurrentState`,
    serial: `/${di}:Identification/${di}:SerialNumber`,
    telemetry: `/${twin}:Telemetry`,
  };
  const names = Object.keys(paths);
  const found = await session.translateBrowsePath(names.map((k) => makeBrowsePath(ref.nodeId, paths[k])));
  const ids = {};
  names.forEach((k, i) => { ids[k] = found[i].targets && found[i].targets[0] ? found[i].targets[0].targetId : null; });
  const readNames = names.filter((k) => k !== "telemetry" && ids[k]);
  const dvs = await session.read(readNames.map((k) => ({ nodeId: ids[k], attributeId: AttributeIds.Value })));
  const values = {};
  readNames.forEach((k, i) => {
    const v = dvs[i].value.value;
    values[k] = v && v.text !== undefined ? v.text : v;
  });
  // x.pos: a dot is an operator in relative path syntax, so browse the folder instead
  const telemetry = await session.browse(ids.telemetry);
  const xpos = telemetry.references.find((r) => r.browseName.name === "x.pos").nodeId;
  const sub = ClientSubscription.create(session, {
    requestedPublishingInterval: 100, requestedMaxKeepAliveCount: 10, requestedLifetimeCount: 100,
    maxNotificationsPerPublish: 0, publishingEnabled: true, priority: 1,
  });
  const item = ClientMonitoredItem.create(sub, { nodeId: xpos, attributeId: AttributeIds.Value },
    { samplingInterval: 100, discardOldest: true, queueSize: 10 }, TimestampsToReturn.Both);
  const changes = [];
  item.on("changed", (dv) => changes.push([dv.sourceTimestamp ? dv.sourceTimestamp.getTime() / 1000 : null, dv.value.value]));
  await new Promise((r) => setTimeout(r, 1000 * Number(seconds)));
  await sub.terminate();
  await session.close();
  await client.disconnect();
  console.log(JSON.stringify({
    type: { ns: typeName.value.value.namespaceIndex, name: typeName.value.value.name },
    ns: { mt, di, machinery, twin },
    top: top.references.map((r) => `${r.browseName.namespaceIndex}:${r.browseName.name}`),
    values, changes,
  }));
}

main().catch((e) => { console.error(e); process.exit(1); });
