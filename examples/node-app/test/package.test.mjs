// What `npm run build` ships: `npm pack --dry-run --json` must list the server and its routes.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { test } from "node:test";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

function npm(...args) {
  // Under `npm run`, npm_execpath is npm's own CLI script: use the npm that runs us.
  const cli = process.env.npm_execpath;
  const [command, prefix] = cli && /\.c?js$/.test(cli) ? [process.execPath, [cli]] : ["npm", []];
  return spawnSync(command, [...prefix, ...args], { cwd: ROOT, encoding: "utf8" });
}

test("the package holds the server and nothing from the dev tree", () => {
  const packed = npm("pack", "--dry-run", "--json", "--ignore-scripts");
  assert.equal(packed.status, 0, packed.stderr);
  const [{ name, version, files }] = JSON.parse(packed.stdout);
  assert.deepEqual([name, version], ["node-app", "1.0.0"]);
  const paths = files.map((file) => file.path).sort();
  for (const needed of ["package.json", "src/app.js", "src/server.js"]) {
    assert.ok(paths.includes(needed), `${needed} missing from ${paths.join(", ")}`);
  }
  for (const path of paths) {
    assert.doesNotMatch(path, /^(test|scripts|dist|artifacts|node_modules)\//, path);
  }
});
