/**
 * The docs cannot rot silently: every relative markdown link in README.md and docs/*.md points to a file or folder
 * inside the repository (and, with `#anchor`, to a heading of that markdown file), every docs page is listed in the
 * index docs/README.md, and README.md stays short (at most 110 lines).
 * @module
 */
import assert from "node:assert/strict";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const README_MAX_LINES = 110;

/** One markdown link: its target as written and the line it is on (1-based). */
interface Link {
  target: string;
  line: number;
}

const blank = (s: string) => s.replace(/[^\n]/g, " ");

/** The text with fenced code blocks blanked (line breaks kept). */
function withoutFences(md: string): string {
  return md.replace(/^(```|~~~)[^\n]*\n[\s\S]*?^\1[^\n]*$/gm, blank);
}

/** The text with fenced code blocks and inline code spans blanked, so code is not read as links. */
function withoutCode(md: string): string {
  return withoutFences(md).replace(/`[^`\n]*`/g, blank);
}

/**
 * The links of a markdown text outside code: inline links `[text](target)` (or `(<target with spaces>)`, with an
 * optional title), images `![alt](target)` and reference definitions `[label]: target`, in text order.
 */
export function markdownLinks(md: string): Link[] {
  const text = withoutCode(md);
  const lineOf = (at: number) => text.slice(0, at).split("\n").length;
  const found: { at: number; target: string }[] = [];
  for (const m of text.matchAll(/\]\(\s*(?:<([^>\n]+)>|([^)\s]+))(?:\s+"[^"]*")?\s*\)/g)) {
    found.push({ at: m.index, target: m[1] ?? m[2] });
  }
  for (const m of text.matchAll(/^ {0,3}\[[^\]\n]+\]:\s*<?([^\s>]+)>?/gm)) found.push({ at: m.index, target: m[1] });
  return found.sort((a, b) => a.at - b.at).map((f) => ({ target: f.target, line: lineOf(f.at) }));
}

/** GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens. */
export function headingAnchor(heading: string): string {
  return heading.trim().toLowerCase().replace(/[^\p{L}\p{N} _-]/gu, "").replace(/ /g, "-");
}

/** The anchors of a markdown file's headings. */
function anchorsOf(md: string): Set<string> {
  return new Set([...withoutFences(md).matchAll(/^#{1,6}\s+(.+?)\s*#*\s*$/gm)].map((m) => headingAnchor(m[1])));
}

/** The markdown files the docs are made of: README.md and docs/*.md. */
function docFiles(): string[] {
  const docs = [...Deno.readDirSync(join(ROOT, "docs"))].filter((e) => e.isFile && e.name.endsWith(".md"))
    .map((e) => join(ROOT, "docs", e.name)).sort();
  return [join(ROOT, "README.md"), ...docs];
}

/** What is wrong with one link of `file` ("" when it is fine). */
function problemOf(file: string, link: Link): string {
  const where = `${relative(ROOT, file)}:${link.line}: ${link.target}`;
  if (/^[a-z][a-z0-9+.-]*:/i.test(link.target)) return ""; // https:, mailto: ...: not checked here
  const [path, anchor] = link.target.split("#", 2);
  const target = path === "" ? file : resolve(dirname(file), decodeURIComponent(path.split("?")[0]));
  const rel = relative(ROOT, target);
  if (rel.startsWith("..") || rel.startsWith("/")) return `${where}: points outside the repository`;
  let stat: Deno.FileInfo;
  try {
    stat = Deno.statSync(target);
  } catch {
    return `${where}: expected an existing file or folder, found nothing at ${rel}`;
  }
  if (anchor !== undefined && stat.isFile && target.endsWith(".md")) {
    if (!anchorsOf(Deno.readTextFileSync(target)).has(anchor)) {
      return `${where}: expected a heading with anchor #${anchor} in ${rel}`;
    }
  }
  return "";
}

Deno.test("docs links: the link reader finds links and anchors as GitHub does, outside code", () => {
  const md =
    'See [a](a.md) and ![i](img/x.png).\n\n```sh\necho [no](skip.md)\n```\n`[no](inline.md)` [b](<b c.md> "t")\n\n[r]: ref.md';
  assert.deepEqual(markdownLinks(md), [
    { target: "a.md", line: 1 },
    { target: "img/x.png", line: 1 },
    { target: "b c.md", line: 6 },
    { target: "ref.md", line: 8 },
  ]);
  assert.equal(headingAnchor("GaLore and BAdam"), "galore-and-badam");
  assert.equal(headingAnchor("Interop is the point"), "interop-is-the-point");
  assert.equal(headingAnchor("`deno task` verbs: train/chat"), "deno-task-verbs-trainchat");
});

Deno.test("docs links: every relative link of README.md and docs/*.md points to something in the repository", () => {
  const problems: string[] = [];
  let checked = 0;
  for (const file of docFiles()) {
    for (const link of markdownLinks(Deno.readTextFileSync(file))) {
      checked++;
      const p = problemOf(file, link);
      if (p) problems.push(p);
    }
  }
  assert.ok(checked >= 20, `expected the docs to hold at least 20 links, found ${checked}`);
  assert.deepEqual(problems, []);
});

Deno.test("docs links: docs/README.md lists every docs page", () => {
  const index = join(ROOT, "docs", "README.md");
  const listed = new Set(markdownLinks(Deno.readTextFileSync(index)).map((l) => resolve(dirname(index), l.target)));
  const missing = docFiles().filter((f) => f.startsWith(join(ROOT, "docs")) && f !== index && !listed.has(f));
  assert.deepEqual(missing.map((f) => relative(ROOT, f)), [], "pages missing from the index docs/README.md");
});

Deno.test(`docs links: README.md stays at most ${README_MAX_LINES} lines`, () => {
  const lines = Deno.readTextFileSync(join(ROOT, "README.md")).trimEnd().split("\n").length;
  assert.ok(lines <= README_MAX_LINES, `README.md has ${lines} lines; expected at most ${README_MAX_LINES}`);
});
