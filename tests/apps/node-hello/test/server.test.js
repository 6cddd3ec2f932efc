"use strict";

const assert = require("node:assert/strict");
const { once } = require("node:events");
const test = require("node:test");
const { listen } = require("../server.js");

test("GET / answers 200", async () => {
  const server = listen(0, "127.0.0.1");
  await once(server, "listening");
  try {
    const answer = await fetch(`http://127.0.0.1:${server.address().port}/`);
    assert.equal(answer.status, 200);
    assert.match(await answer.text(), /^hello from node-hello/);
  } finally {
    server.close();
  }
});
