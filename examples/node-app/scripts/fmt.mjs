// A tiny formatter for the project's .js/.mjs/.cjs/.json files: no tabs, no trailing
// whitespace, LF line endings, exactly one final newline.
//   node scripts/fmt.mjs --check   report `file:line: problem` lines, exit 1 if any
//   node scripts/fmt.mjs --write   fix the files in place
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { ROOT, projectFiles } from "./files.mjs";

const EXTENSIONS = [".js", ".mjs", ".cjs", ".json"];
const INDENT = "  ";

function problems(text) {
  const found = [];
  const lines = text.split("\n");
  const last = lines.length - 1; // after the final "\n" comes an empty string
  lines.forEach((line, index) => {
    const number = index + 1;
    if (index === last) return;
    if (line.endsWith("\r")) found.push([number, "CRLF line ending"]);
    const content = line.replace(/\r$/, "");
    if (content.includes("\t")) found.push([number, "tab character (indent with spaces)"]);
    if (/[ \t]+$/.test(content)) found.push([number, "trailing whitespace"]);
  });
  if (text.length > 0 && !text.endsWith("\n")) {
    const content = lines[last];
    if (content.includes("\t")) found.push([last + 1, "tab character (indent with spaces)"]);
    if (/[ \t]+$/.test(content)) found.push([last + 1, "trailing whitespace"]);
    found.push([last + 1, "no newline at end of file"]);
  } else if (/\n\s*\n$/.test(text)) {
    found.push([last, "blank line at end of file"]);
  }
  return found;
}

function format(text) {
  if (text.trim() === "") return "";
  const lines = text
    .replace(/\r\n?/g, "\n")
    .split("\n")
    .map((line) => line.replace(/\t/g, INDENT).replace(/\s+$/, ""));
  return `${lines.join("\n").replace(/\n+$/, "")}\n`;
}

function main(argv) {
  const mode = argv[0];
  if (argv.length !== 1 || (mode !== "--check" && mode !== "--write")) {
    process.stderr.write("usage: node scripts/fmt.mjs --check | --write\n");
    return 2;
  }
  const files = projectFiles(EXTENSIONS);
  let count = 0;
  let changed = 0;
  for (const file of files) {
    const full = path.join(ROOT, file);
    const text = readFileSync(full, "utf8");
    if (mode === "--write") {
      const fixed = format(text);
      if (fixed !== text) {
        writeFileSync(full, fixed);
        changed += 1;
        console.log(`formatted ${file}`);
      }
      continue;
    }
    for (const [line, problem] of problems(text)) {
      console.log(`${file}:${line}: ${problem}`);
      count += 1;
    }
  }
  if (mode === "--write") {
    process.stderr.write(`fmt: ${changed} of ${files.length} files reformatted\n`);
    return 0;
  }
  if (count > 0) {
    process.stderr.write(`fmt: ${count} problem(s); run \`npm run fmt:write\` to fix them\n`);
    return 1;
  }
  process.stderr.write(`fmt: ${files.length} files ok\n`);
  return 0;
}

process.exitCode = main(process.argv.slice(2));
