// A node-opcua server (not asyncua) for hazardgw's interoperability test.
//
//   node server.js <port> <pki dir> <cert out>
//
// Serves Objects/Plant/{TT101 Double, PT101 Float, LT101 Int32, XS101 Boolean, AI101 Double
// with a Bad status, TAG String}; the numeric values ramp every 200 ms with SourceTimestamp
// = now. Endpoints None and Basic256Sha256 Sign/SignAndEncrypt; logins: anonymous or
// operator/op-secret; unknown client certificates are accepted (a DCS administrator
// trusts ours). Small operation limits (read 4, browse 3, monitored items 5 per call) so the
// client must batch. Writes the server certificate (DER) to <cert out>, then prints "ready".
"use strict";
const fs = require("fs");
const path = require("path");
const { OPCUAServer } = require("node-opcua-server");
const { OPCUACertificateManager } = require("node-opcua-certificate-manager");
const { Variant, DataType } = require("node-opcua-variant");
const { StatusCodes } = require("node-opcua-status-code");
const { SecurityPolicy, MessageSecurityMode } = require("node-opcua-secure-channel");

async function main() {
  const [port, pkiDir, certOut] = process.argv.slice(2);
  const serverCertificateManager = new OPCUACertificateManager({
    automaticallyAcceptUnknownCertificate: true,
    rootFolder: path.join(pkiDir, "pki"),
  });
  await serverCertificateManager.initialize();
  const server = new OPCUAServer({
    port: Number(port),
    hostname: "127.0.0.1",
    alternateHostname: ["127.0.0.1"],
    resourcePath: "",
    serverCertificateManager,
    securityPolicies: [SecurityPolicy.None, SecurityPolicy.Basic256Sha256],
    securityModes: [MessageSecurityMode.None, MessageSecurityMode.Sign, MessageSecurityMode.SignAndEncrypt],
    allowAnonymous: true,
    userManager: { isValidUser: (user, password) => user === "operator" && password === "op-secret" },
    serverCapabilities: {
      operationLimits: { maxNodesPerRead: 4, maxNodesPerBrowse: 3, maxMonitoredItemsPerCall: 5 },
    },
    buildInfo: { productName: "hazardgw interop (node-opcua)" },
  });
  await server.initialize();
  const space = server.engine.addressSpace;
  const ns = space.getOwnNamespace();
  const plant = ns.addFolder(space.rootFolder.objects, { browseName: "Plant" });
  const vars = {};
  const add = (name, dataType, value) => {
    vars[name] = ns.addVariable({
      componentOf: plant, browseName: name, nodeId: `s=Plant.${name}`, dataType,
      value: new Variant({ dataType, value }),
    });
  };
  add("TT101", DataType.Double, 20.5);
  add("PT101", DataType.Float, 1.25);
  add("LT101", DataType.Int32, 7);
  add("XS101", DataType.Boolean, true);
  add("AI101", DataType.Double, 0);
  add("TAG", DataType.String, "12.5");
  vars.AI101.setValueFromSource(new Variant({ dataType: DataType.Double, value: 3 }), StatusCodes.BadSensorFailure);
  await server.start();
  const chain = server.getCertificateChain();
  fs.writeFileSync(certOut, Array.isArray(chain) ? chain[0] : chain);
  let k = 0;
  setInterval(() => {
    k += 1;
    const now = new Date();
    const set = (name, dataType, value) => vars[name].setValueFromSource(
      new Variant({ dataType, value }), StatusCodes.Good, now);
    set("TT101", DataType.Double, 20.5 + (k % 10));
    set("PT101", DataType.Float, 1.25 + (k % 4) / 4);
    set("LT101", DataType.Int32, 7 + (k % 3));
  }, 200);
  process.stdout.write(`ready ${server.getEndpointUrl()}\n`);
  const stop = async () => { await server.shutdown(0); process.exit(0); };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

main().catch((err) => { process.stderr.write(`${err.stack || err}\n`); process.exit(1); });
