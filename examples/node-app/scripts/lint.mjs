// Lint without dependencies: `node --check` on every source file, JSON files must parse,
// and a few rules. Prints `file:line: problem` lines and exits 1 when there are any.
//   - no `var` declarations (use let or const);
//   - no `debugger` statements;
//   - no console.log in src/: the server prints exactly one line, the listening line.
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { ROOT, projectFiles } from "./files.mjs";

const SOURCES = [".js", ".mjs", ".cjs"];
const RULES = [
  {
    pattern: /(?:^|[;{}(]|\bexport)\s*var\s+[A-Za-z_$[{]/,
    problem: "`var` declaration (use let or const)",
    applies: () => true,
  },
  {
    pattern: /(?:^|[;{}])\s*debugger\s*(?:;|$)/,
    problem: "`debugger` statement",
    applies: () => true,
  },
  {
    pattern: /\bconsole\.log\s*\(/,
    problem: "console.log in src/ (only the listening line may print)",
    applies: (file, line) => file.startsWith("src/") && !line.includes("listening on"),
  },
];

function isComment(line) {
  const start = line.trimStart();
  return start.startsWith("//") || start.startsWith("/*") || start.startsWith("*");
}

function syntaxProblems(file) {
  const checked = spawnSync(process.execPath, ["--check", path.join(ROOT, file)], {
    encoding: "utf8",
  });
  if (checked.status === 0) return [];
  const output = checked.stderr || checked.stdout || "";
  const where = output.match(/:(\d+)\r?\n/);
  const message = output.match(/^(\w*Error: .*)$/m);
  return [[where ? Number(where[1]) : 1, `syntax: ${message ? message[1] : output.trim()}`]];
}

function ruleProblems(file, text) {
  const found = [];
  text.split("\n").forEach((line, index) => {
    if (isComment(line)) return;
    for (const rule of RULES) {
      if (rule.pattern.test(line) && rule.applies(file, line)) found.push([index + 1, rule.problem]);
    }
  });
  return found;
}

function jsonProblems(text) {
  try {
    JSON.parse(text);
    return [];
  } catch (error) {
    return [[1, `invalid JSON: ${error.message}`]];
  }
}

function main() {
  const files = projectFiles([...SOURCES, ".json"]);
  let count = 0;
  for (const file of files) {
    const text = readFileSync(path.join(ROOT, file), "utf8");
    const found = file.endsWith(".json")
      ? jsonProblems(text)
      : [...syntaxProblems(file), ...ruleProblems(file, text)];
    for (const [line, problem] of found.sort((a, b) => a[0] - b[0])) {
      console.log(`${file}:${line}: ${problem}`);
      count += 1;
    }
  }
  if (count > 0) {
    process.stderr.write(`lint: ${count} problem(s) in ${files.length} files\n`);
    return 1;
  }
  process.stderr.write(`lint: ${files.length} files ok\n`);
  return 0;
}

process.exitCode = main();
