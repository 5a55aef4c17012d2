#!/usr/bin/env node
// Parses every .tf file under infra/ (or the directories given) with HashiCorp's HCL parser and
// checks every resource and data source type, argument, nested block (as deep as the file spells
// it out) and attribute reference against the providers' own schemas.
//
//   node infra/check/schema/check.mjs [--offline] [dir ...]
//
// Schemas come from the cdktf bindings pinned in providers.json, fetched once with `npm pack` into
// ~/.cache/ai-gateway/terraform-schemas (GATEWAY_SCHEMA_CACHE); --offline uses only that cache.
// Exit 0: no problems (a provider whose schema cannot be had is reported as skipped); 1: problems.
import path from "node:path";
import { checkModules, houseRules, infra, loadSchema, moduleDirs, parseModule, pins, requiredProviders, satisfies } from "./lib.mjs";

const args = process.argv.slice(2);
const offline = args.includes("--offline");
const dirs = args.filter((a) => !a.startsWith("--")).map((d) => path.resolve(d));
const roots = dirs.length ? dirs.flatMap((d) => moduleDirs(d)) : moduleDirs(infra);
const say = (m) => console.log(`check-schema: ${m}`);

let modules;
try {
  modules = [];
  for (const dir of roots) modules.push({ dir, files: await parseModule(dir) });
} catch (e) {
  console.error(`check-schema: syntax error: ${e.message}`);
  process.exit(1);
}
say(`parsed ${modules.reduce((n, m) => n + m.files.length, 0)} .tf files in ${modules.length} directories with HashiCorp's HCL parser`);

// The providers the modules require, and the constraint each module puts on them.
const wanted = new Map();
for (const m of modules) {
  for (const { source, version } of Object.values(requiredProviders(m.files))) {
    if (!wanted.has(source)) wanted.set(source, new Set());
    if (version) wanted.get(source).add(version);
  }
}
const schemas = {};
for (const [source, constraints] of wanted) {
  const { schema, why } = loadSchema(source, { fetch: !offline, log: say });
  if (!schema) {
    say(`skip: ${source}: ${why}`);
    continue;
  }
  schemas[source] = schema;
  const c = [...constraints].join(", ");
  const fits = [...constraints].every((k) => satisfies(schema.provider_version, k));
  say(`${source}: schema of ${schema.provider_version} from ${schema.package}@${schema.package_version}${fits ? "" : ` (the modules want ${c}; arguments added since are accepted only as listed in providers.json)`}`);
}

const { problems, checked, unchecked, accepted } = checkModules(modules, schemas);
problems.push(...houseRules(modules));
for (const a of accepted) say(`accepted, newer than the bindings: ${a}`);
for (const u of unchecked) say(`skip: blocks of ${u} not checked (no schema)`);
// Arguments listed as newer than the bindings that the bindings do know are stale entries.
for (const [source, entries] of Object.entries(pins.newer_than_bindings)) {
  for (const p of Object.keys(entries)) {
    const [kind, type, ...rest] = p.split(".");
    const node = schemas[source]?.[kind]?.[type];
    if (node && rest.length === 1 && (node.a.includes(rest[0]) || node.n[rest[0]])) problems.push(`providers.json: ${p} is in the ${source} bindings: remove it from newer_than_bindings`);
  }
}
if (problems.length) {
  for (const p of problems) console.error(`check-schema: ${p}`);
  console.error(`check-schema: FAILED, ${problems.length} problem(s)`);
  process.exit(1);
}
say(`OK: ${checked} resource and data source blocks match their provider schemas`);
