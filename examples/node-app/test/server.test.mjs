// The real entry point as a process: `node src/server.js --port 0`, its listening line,
// HTTP over loopback, and a clean exit on SIGTERM / SIGINT.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import { describe, test } from "node:test";

const SERVER = fileURLToPath(new URL("../src/server.js", import.meta.url));

function cleanEnv(extra = {}) {
  const env = { ...process.env, ...extra };
  for (const name of ["PORT", "HOST", "SHIPYARD_RELEASE"]) {
    if (!(name in extra)) delete env[name];
  }
  return env;
}

/** Start the server; resolve with the process, its output so far and its base URL. */
async function start(args, env) {
  const child = spawn(process.execPath, [SERVER, ...args], { env: cleanEnv(env) });
  let stdout = "";
  let stderr = "";
  child.stderr.on("data", (chunk) => {
    stderr += chunk;
  });
  const base = await new Promise((resolve, reject) => {
    child.stdout.on("data", (chunk) => {
      stdout += chunk;
      const found = stdout.match(/listening on (http:\/\/\S+?)\/?\n/);
      if (found) resolve(found[1]);
    });
    child.once("exit", (code) => reject(new Error(`exited ${code} before listening: ${stderr}`)));
  });
  return { child, base, output: () => ({ stdout, stderr }) };
}

async function stop(child, signal) {
  const exited = once(child, "exit");
  child.kill(signal);
  return exited;
}

describe("src/server.js", () => {
  for (const signal of ["SIGTERM", "SIGINT"]) {
    test(`serves on --port 0 and exits 0 on ${signal}`, async () => {
      const { child, base, output } = await start(["--port", "0"], { SHIPYARD_RELEASE: "v3" });
      try {
        assert.match(base, /^http:\/\/127\.0\.0\.1:\d+$/);
        const page = await fetch(`${base}/`);
        assert.equal(page.status, 200);
        assert.match(await page.text(), /version=1\.0\.0 release=v3/);
        const health = await fetch(`${base}/healthz`);
        assert.equal(await health.text(), "ok\n");
      } finally {
        const [code, killedBy] = await stop(child, signal);
        assert.deepEqual([code, killedBy], [0, null]);
      }
      const { stdout, stderr } = output();
      assert.equal(stdout.trim().split("\n").length, 1, "one listening line");
      assert.equal(stderr, "");
    });
  }

  test("takes the port from $PORT when --port is absent", async () => {
    const { child, base } = await start([], { PORT: "0" });
    try {
      assert.equal((await fetch(`${base}/healthz`)).status, 200);
    } finally {
      await stop(child, "SIGTERM");
    }
  });

  test("refuses a bad port with exit 2 and one line", async () => {
    const child = spawn(process.execPath, [SERVER, "--port", "http"], { env: cleanEnv() });
    let stderr = "";
    child.stderr.on("data", (chunk) => {
      stderr += chunk;
    });
    const [code] = await once(child, "exit");
    assert.equal(code, 2);
    assert.match(stderr, /^node-app: --port: expected a port number from 0 to 65535, got 'http'\n$/);
  });
});
