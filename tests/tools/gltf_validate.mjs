// Validate glTF/GLB files with the Khronos glTF validator; prints one JSON report per file on stdout.
// Usage: node gltf_validate.mjs <node_modules dir> file.glb [...]
import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import path from "node:path";

const [modules, ...files] = process.argv.slice(2);
const require = createRequire(path.join(path.resolve(modules), "noop.js"));
const validator = require("gltf-validator");
const reports = [];
for (const file of files) {
  const data = new Uint8Array(await readFile(file));
  const report = await validator.validateBytes(data, { uri: path.basename(file), maxIssues: 100 });
  reports.push({
    file,
    validatorVersion: report.validatorVersion,
    numErrors: report.issues.numErrors,
    numWarnings: report.issues.numWarnings,
    numInfos: report.issues.numInfos,
    messages: report.issues.messages.filter((m) => m.severity <= 1),
  });
}
console.log(JSON.stringify(reports));
