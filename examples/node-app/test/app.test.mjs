// The routes, served in-process on a free port (port 0) and called with fetch.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { appInfo, createAppServer } from "../src/app.js";

async function listen(info) {
  const server = createAppServer(info);
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { server, base: `http://127.0.0.1:${server.address().port}` };
}

function close(server) {
  server.closeAllConnections();
  return new Promise((resolve) => server.close(resolve));
}

describe("routes", () => {
  let server;
  let base;

  before(async () => {
    ({ server, base } = await listen(appInfo({ SHIPYARD_RELEASE: "v7" })));
  });
  after(() => close(server));

  test("GET / shows the version and the release", async () => {
    const response = await fetch(`${base}/`);
    assert.equal(response.status, 200);
    assert.match(response.headers.get("content-type"), /^text\/html/);
    const body = await response.text();
    assert.match(body, /version=1\.0\.0 release=v7/);
  });

  test("GET /healthz answers ok", async () => {
    const response = await fetch(`${base}/healthz?probe=1`);
    assert.equal(response.status, 200);
    assert.equal(await response.text(), "ok\n");
  });

  test("HEAD works and has no body", async () => {
    const response = await fetch(`${base}/healthz`, { method: "HEAD" });
    assert.equal(response.status, 200);
    assert.equal(await response.text(), "");
  });

  test("unknown paths are 404", async () => {
    for (const path of ["/nope", "/healthz/", "/index.html", "/__proto__", "/constructor"]) {
      const response = await fetch(`${base}${path}`);
      assert.equal(response.status, 404, path);
      await response.arrayBuffer();
    }
  });

  test("other methods on a route are 405 with Allow", async () => {
    const response = await fetch(`${base}/`, { method: "POST", body: "x" });
    assert.equal(response.status, 405);
    assert.equal(response.headers.get("allow"), "GET, HEAD");
    await response.arrayBuffer();
  });
});

describe("appInfo", () => {
  test("is unreleased without SHIPYARD_RELEASE", () => {
    assert.deepEqual(appInfo({}), { name: "node-app", version: "1.0.0", release: "unreleased" });
  });

  test("the page escapes what it shows", async () => {
    const { server, base } = await listen({ name: "node-app", version: "1", release: "<b>&" });
    try {
      const body = await (await fetch(`${base}/`)).text();
      assert.match(body, /release=&lt;b&gt;&amp;/);
      assert.doesNotMatch(body, /<b>&/);
    } finally {
      await close(server);
    }
  });
});
