#!/usr/bin/env node
// Writes each module README's Inputs and Outputs tables (name, type, default, description,
// sensitive; "ephemeral" marks inputs Terraform keeps out of the plan and the state) from its
// variables and outputs (parsed by HashiCorp's HCL parser), between <!-- BEGIN_INPUTS --> / <!-- END_INPUTS --> and
// <!-- BEGIN_OUTPUTS --> / <!-- END_OUTPUTS -->. Text outside the markers is left alone.
//
//   node infra/check/schema/readme.mjs           # rewrite the tables
//   node infra/check/schema/readme.mjs --check   # fail when a README is stale (the test command)
import fs from "node:fs";
import path from "node:path";
import { infra, parseModule } from "./lib.mjs";

export const MODULES = (process.env.README_MODULES?.split(",") ?? ["modules/routes", "modules/routes/edge", "modules/routes/lambda", "modules/lambda", "modules/edge"]);

const cell = (s) => String(s).replace(/\s*\n\s*/g, " ").replace(/\|/g, "\\|").trim();
const code = (s) => (s.includes("`") ? "`` " + s + " ``" : "`" + s + "`");

/** `${map(object({…}))}` → "map(object)": long object types are abbreviated (the description and variables.tf say more). */
function typeOf(t) {
  if (t === undefined) return "any";
  let s = String(t).replace(/^\$\{([\s\S]*)\}$/, "$1").replace(/#[^\n]*/g, "").replace(/\s+/g, " ").trim();
  if (s.length <= 40) return s.replace(/\( /g, "(").replace(/ \)/g, ")").replace(/\{ /g, "{ ").replace(/ \}/g, " }");
  // Replace every object({...}) (balanced) by `object`.
  let out = "";
  for (let i = 0; i < s.length; ) {
    if (s.startsWith("object(", i)) {
      let depth = 0, j = i + "object".length;
      for (; j < s.length; j++) {
        if (s[j] === "(") depth++;
        else if (s[j] === ")" && --depth === 0) break;
      }
      out += "object";
      i = j + 1;
    } else out += s[i++];
  }
  return out;
}

function hclValue(v) {
  if (v === null) return "null";
  if (typeof v === "string") return JSON.stringify(v);
  if (typeof v === "number" || typeof v === "boolean") return String(v);
  if (Array.isArray(v)) return `[${v.map(hclValue).join(", ")}]`;
  const entries = Object.entries(v);
  return entries.length ? `{ ${entries.map(([k, x]) => `${k} = ${hclValue(x)}`).join(", ")} }` : "{}";
}

export async function tables(dir) {
  const mod = await parseModule(dir);
  const vars = [], outs = [];
  for (const { body } of mod) {
    for (const [name, [v]] of Object.entries(body.variable ?? {})) vars.push({ name, ...v });
    for (const [name, [o]] of Object.entries(body.output ?? {})) outs.push({ name, ...o });
  }
  // Required inputs first, each group by name (HashiCorp's parser returns blocks by name).
  const required = vars.filter((v) => !("default" in v));
  const optional = vars.filter((v) => "default" in v);
  const inputs = [
    "| name | type | default | description | sensitive |",
    "| --- | --- | --- | --- | --- |",
    ...[...required, ...optional].map((v) =>
      `| ${code(v.name)} | ${code(typeOf(v.type))} | ${"default" in v ? code(hclValue(v.default)) : "required"} | ${cell(v.description ?? "")} | ${v.sensitive === true ? (v.ephemeral === true ? "yes, ephemeral" : "yes") : v.ephemeral === true ? "no, ephemeral" : "no"} |`),
  ];
  const outputs = [
    "| name | description | sensitive |",
    "| --- | --- | --- |",
    ...outs.map((o) => `| ${code(o.name)} | ${cell(o.description ?? "")} | ${o.sensitive === true ? "yes" : "no"} |`),
  ];
  if (!vars.length) inputs.splice(0, inputs.length, "None.");
  if (!outs.length) outputs.splice(0, outputs.length, "None.");
  return { inputs: inputs.join("\n"), outputs: outputs.join("\n") };
}

const NOTE = "<!-- generated from variables.tf / outputs.tf by infra/check/schema/readme.mjs; edit those, then run it -->";

function splice(text, kind, table) {
  const begin = `<!-- BEGIN_${kind} -->`, end = `<!-- END_${kind} -->`;
  const i = text.indexOf(begin), j = text.indexOf(end);
  if (i < 0 || j < i) return null;
  return text.slice(0, i) + `${begin}\n${NOTE}\n\n${table}\n${end}` + text.slice(j + end.length);
}

/** Puts markers around the first table under `## Inputs` / `## Outputs` (first run only). */
function addMarkers(text, heading, kind) {
  if (text.includes(`<!-- BEGIN_${kind} -->`)) return text;
  const lines = text.split("\n");
  const h = lines.findIndex((l) => l.trim() === `## ${heading}`);
  if (h < 0) return text.trimEnd() + `\n\n## ${heading}\n\n<!-- BEGIN_${kind} -->\n<!-- END_${kind} -->\n`;
  let a = h + 1;
  while (a < lines.length && !lines[a].startsWith("|") && !lines[a].startsWith("## ")) a++;
  if (a >= lines.length || !lines[a].startsWith("|")) {
    lines.splice(h + 1, 0, "", `<!-- BEGIN_${kind} -->`, `<!-- END_${kind} -->`);
    return lines.join("\n");
  }
  let b = a;
  while (b < lines.length && lines[b].startsWith("|")) b++;
  lines.splice(a, b - a, `<!-- BEGIN_${kind} -->`, `<!-- END_${kind} -->`);
  return lines.join("\n");
}

export async function render(rel, text) {
  const t = await tables(path.join(infra, rel));
  let out = splice(text, "INPUTS", t.inputs);
  if (out !== null) out = splice(out, "OUTPUTS", t.outputs);
  return out;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const check = process.argv.includes("--check");
  const stale = [];
  for (const rel of MODULES) {
    const file = path.join(infra, rel, "README.md");
    const text = fs.readFileSync(file, "utf8");
    const source = check ? text : addMarkers(addMarkers(text, "Inputs", "INPUTS"), "Outputs", "OUTPUTS");
    const out = await render(rel, source);
    if (out === null) {
      stale.push(`infra/${rel}/README.md has no <!-- BEGIN_INPUTS -->/<!-- END_INPUTS --> and <!-- BEGIN_OUTPUTS -->/<!-- END_OUTPUTS --> markers`);
    } else if (out !== text) {
      if (check) stale.push(`infra/${rel}/README.md: the Inputs/Outputs tables differ from the variables and outputs`);
      else {
        fs.writeFileSync(file, out);
        console.log(`readme: wrote infra/${rel}/README.md`);
      }
    }
  }
  if (stale.length) {
    for (const s of stale) console.error(`check-readme: ${s}`);
    console.error("check-readme: FAILED, run `node infra/check/schema/readme.mjs` and commit the READMEs");
    process.exit(1);
  }
  if (check) console.log(`check-readme: OK, the Inputs/Outputs tables of ${MODULES.length} module READMEs are current`);
}
