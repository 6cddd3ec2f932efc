// The HTTP application: routes only, no listening, so tests can mount it on any port.
import { readFileSync } from "node:fs";
import http from "node:http";

const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"));

/** What is running: the package version and the Shipyard release (e.g. `v3`). */
export function appInfo(env = process.env) {
  return {
    name: pkg.name,
    version: pkg.version,
    release: env.SHIPYARD_RELEASE || "unreleased",
  };
}

const HTML_ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (ch) => HTML_ESCAPES[ch]);
}

function page(info) {
  const name = escapeHtml(info.name);
  return [
    "<!doctype html>",
    '<html lang="en">',
    `<head><meta charset="utf-8"><title>${name}</title></head>`,
    "<body>",
    `<h1>${name}</h1>`,
    `<p id="build">version=${escapeHtml(info.version)} release=${escapeHtml(info.release)}</p>`,
    "</body>",
    "</html>",
    "",
  ].join("\n");
}

function send(request, response, status, type, body, extraHeaders = {}) {
  const bytes = Buffer.from(body, "utf8");
  response.writeHead(status, {
    "content-type": type,
    "content-length": bytes.length,
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
    ...extraHeaders,
  });
  response.end(request.method === "HEAD" ? undefined : bytes);
}

/** The request handler: `GET /` (HTML), `GET /healthz` (`ok`), 404 for anything else. */
export function createHandler(info = appInfo()) {
  const routes = {
    "/": () => ({ type: "text/html; charset=utf-8", body: page(info) }),
    "/healthz": () => ({ type: "text/plain; charset=utf-8", body: "ok\n" }),
  };
  return (request, response) => {
    const { pathname } = new URL(request.url ?? "/", "http://localhost");
    const route = Object.hasOwn(routes, pathname) ? routes[pathname] : undefined;
    if (!route) {
      send(request, response, 404, "text/plain; charset=utf-8", "not found\n");
      return;
    }
    if (request.method !== "GET" && request.method !== "HEAD") {
      send(request, response, 405, "text/plain; charset=utf-8", "method not allowed\n", {
        allow: "GET, HEAD",
      });
      return;
    }
    const { type, body } = route();
    send(request, response, 200, type, body);
  };
}

export function createAppServer(info = appInfo()) {
  return http.createServer(createHandler(info));
}
