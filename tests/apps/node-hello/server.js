// node-hello: the smallest Node.js web app, on node:http.
// It listens on $PORT (default 3000) at $HOST (default 127.0.0.1) and answers `GET /` with
// 200 and one line naming the release Shipyard runs ($SHIPYARD_RELEASE).
"use strict";

const http = require("node:http");

function handle(request, response) {
  if (request.url !== "/") {
    response.writeHead(404, { "Content-Type": "text/plain" });
    response.end("not found\n");
    return;
  }
  const release = process.env.SHIPYARD_RELEASE || "unreleased";
  response.writeHead(200, { "Content-Type": "text/plain; charset=utf-8" });
  response.end(`hello from node-hello, release=${release}\n`);
}

function listen(port, host) {
  return http.createServer(handle).listen(port, host);
}

if (require.main === module) {
  const host = process.env.HOST || "127.0.0.1";
  const server = listen(Number(process.env.PORT || 3000), host);
  server.on("listening", () => {
    process.stdout.write(`node-hello listening on http://${host}:${server.address().port}/\n`);
  });
  process.on("SIGTERM", () => server.close(() => process.exit(0)));
}

module.exports = { handle, listen };
