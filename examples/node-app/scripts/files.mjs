// The project's own files, for fmt and lint: a walk that skips dependencies, build output,
// Shipyard's evidence and state, and hidden folders (.git, .shipyard, ...).
import { readdirSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

const SKIPPED_DIRS = new Set(["node_modules", "dist", "artifacts", "feedback", "coverage"]);

/** Sorted POSIX paths, relative to the project root, of files ending in one of `extensions`. */
export function projectFiles(extensions, root = ROOT) {
  const found = [];
  const walk = (dir) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) {
        if (!entry.name.startsWith(".") && !SKIPPED_DIRS.has(entry.name)) walk(full);
      } else if (entry.isFile() && extensions.some((ext) => entry.name.endsWith(ext))) {
        found.push(path.relative(root, full).split(path.sep).join("/"));
      }
    }
  };
  walk(root);
  return found.sort();
}
