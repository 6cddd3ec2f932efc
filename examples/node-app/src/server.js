// Entry point: `node src/server.js [--port N]`. Port from --port, else $PORT, else 8080
// (fly.toml's internal_port); host from $HOST, else 127.0.0.1 (the Dockerfile sets 0.0.0.0).
import { appInfo, createAppServer } from "./app.js";

const DEFAULT_PORT = 8080;
const DEFAULT_HOST = "127.0.0.1";
const STOP_GRACE_MS = 5000;

function fail(message) {
  process.stderr.write(`node-app: ${message}\n`);
  process.exit(2);
}

function parsePort(text, where) {
  if (!/^\d{1,5}$/.test(text) || Number(text) > 65535) {
    fail(`${where}: expected a port number from 0 to 65535, got '${text}'`);
  }
  return Number(text);
}

function portFrom(argv, env) {
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i];
    if (arg === "--port") {
      if (i + 1 >= argv.length) fail("--port needs a value");
      return parsePort(argv[i + 1], "--port");
    }
    if (arg.startsWith("--port=")) return parsePort(arg.slice("--port=".length), "--port");
    fail(`unknown argument '${arg}' (usage: node src/server.js [--port N])`);
  }
  if (env.PORT) return parsePort(env.PORT, "$PORT");
  return DEFAULT_PORT;
}

const port = portFrom(process.argv.slice(2), process.env);
const host = process.env.HOST || DEFAULT_HOST;
const info = appInfo();
const server = createAppServer(info);

server.on("error", (error) => fail(`cannot listen on ${host}:${port}: ${error.message}`));

server.listen(port, host, () => {
  const { address, port: bound } = server.address();
  const shown = address.includes(":") ? `[${address}]` : address;
  console.log(`${info.name} ${info.version} listening on http://${shown}:${bound}/`);
});

function shutdown() {
  server.close(() => process.exit(0));
  server.closeIdleConnections();
  setTimeout(() => {
    server.closeAllConnections();
    process.exit(0);
  }, STOP_GRACE_MS).unref();
}

process.once("SIGTERM", shutdown);
process.once("SIGINT", shutdown);
