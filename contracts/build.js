// Compile BEZ.sol with the pinned solc (package.json) and write ../infra/contracts/BEZ.json
// (package data, so the embedded chain can deploy it from an installed image): {contractName, compiler, abi, bytecode}.
// Run with contracts/build.sh (or: cd contracts && npm ci && node build.js).
"use strict";
const fs = require("fs");
const path = require("path");
const solc = require("solc");

const source = fs.readFileSync(path.join(__dirname, "BEZ.sol"), "utf8");
const input = {
  language: "Solidity",
  sources: { "BEZ.sol": { content: source } },
  settings: {
    // Shanghai: understood by py-evm (eth-tester) and every current network.
    evmVersion: "shanghai",
    optimizer: { enabled: true, runs: 200 },
    outputSelection: { "*": { "*": ["abi", "evm.bytecode.object"] } },
  },
};
const output = JSON.parse(solc.compile(JSON.stringify(input)));
const errors = (output.errors || []).filter((e) => e.severity === "error");
for (const e of output.errors || []) console.error(e.formattedMessage);
if (errors.length) process.exit(1);
const contract = output.contracts["BEZ.sol"].BEZ;
const artifact = {
  contractName: "BEZ",
  compiler: `solc ${solc.version()}`,
  evmVersion: input.settings.evmVersion,
  abi: contract.abi,
  bytecode: "0x" + contract.evm.bytecode.object,
};
fs.writeFileSync(path.join(__dirname, "..", "infra", "contracts", "BEZ.json"), JSON.stringify(artifact, null, 2) + "\n");
console.log(`wrote infra/contracts/BEZ.json with ${artifact.compiler}`);
