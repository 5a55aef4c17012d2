// Shared by check.mjs, readme.mjs and test.mjs: HashiCorp's HCL parser (@cdktf/hcl2json, the Go
// hcl library compiled to wasm) over infra/'s .tf files, and the providers' schemas distilled from
// the cdktf bindings' .jsii assemblies (fetched on demand with `npm pack` into a cache directory).

import { createRequire } from "node:module";
import { createHash } from "node:crypto";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const require = createRequire(import.meta.url);
export const here = path.dirname(fileURLToPath(import.meta.url));
export const infra = path.resolve(here, "../..");

let hcl;
function hcl2json() {
  hcl ??= require("@cdktf/hcl2json");
  return hcl;
}

/** Every file under `root` ending with `suffix`, sorted; skips .terraform, node_modules and infra/check. */
export function files(root, suffix = ".tf") {
  const out = [];
  const skip = new Set([".terraform", "node_modules", "target"]);
  (function walk(dir) {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) {
        if (!skip.has(e.name) && p !== path.join(infra, "check")) walk(p);
      } else if (e.name.endsWith(suffix)) out.push(p);
    }
  })(root);
  return out.sort();
}

/** Parses one file with HashiCorp's parser; a syntax error names the file. */
export async function parseFile(file) {
  const text = fs.readFileSync(file, "utf8");
  try {
    return await hcl2json().parse(file, text);
  } catch (e) {
    throw new Error(`${path.relative(process.cwd(), file)}: ${String(e.message ?? e).trim()}`);
  }
}

/** The .tf files of one directory (a module), parsed: [{file, body}]. */
export async function parseModule(dir) {
  const out = [];
  for (const f of fs.readdirSync(dir).filter((n) => n.endsWith(".tf")).sort()) {
    out.push({ file: path.join(dir, f), body: await parseFile(path.join(dir, f)) });
  }
  return out;
}

/** `required_providers` of a parsed module: local name → { source, version }. */
export function requiredProviders(mod) {
  const out = {};
  for (const { body } of mod) {
    for (const tf of body.terraform ?? []) {
      for (const rp of tf.required_providers ?? []) {
        for (const [name, spec] of Object.entries(rp)) {
          const source = (spec.source ?? `hashicorp/${name}`).replace(/^registry\.terraform\.io\//, "");
          out[name] = { source, version: spec.version ?? "" };
        }
      }
    }
  }
  return out;
}

// ---- versions -------------------------------------------------------------------------------

export function parseVersion(v) {
  return v.split(/[.-]/).slice(0, 3).map((x) => Number.parseInt(x, 10) || 0);
}

export function compareVersions(a, b) {
  const [x, y] = [parseVersion(a), parseVersion(b)];
  for (let i = 0; i < 3; i++) if (x[i] !== y[i]) return x[i] - y[i];
  return 0;
}

/** Does `version` satisfy a Terraform constraint such as "~> 6.28", ">= 1.5, < 2"? */
export function satisfies(version, constraint) {
  if (!constraint.trim()) return true;
  return constraint.split(",").every((part) => {
    const m = part.trim().match(/^(~>|>=|<=|!=|>|<|=)?\s*v?([0-9][0-9.]*)$/);
    if (!m) return false;
    const [, op = "=", want] = m;
    const c = compareVersions(version, want);
    switch (op) {
      case "=": return c === 0;
      case "!=": return c !== 0;
      case ">": return c > 0;
      case ">=": return c >= 0;
      case "<": return c < 0;
      case "<=": return c <= 0;
      case "~>": {
        // ~> 6.28 allows 6.28 up to (not including) 7.0; ~> 6.28.1 allows 6.28.x from .1.
        const parts = want.split(".").length;
        const w = parseVersion(want), v = parseVersion(version);
        if (c < 0) return false;
        return parts <= 1 ? true : parts === 2 ? v[0] === w[0] : v[0] === w[0] && v[1] === w[1];
      }
    }
    return false;
  });
}

// ---- provider schemas from the cdktf bindings ------------------------------------------------

export const pins = JSON.parse(fs.readFileSync(path.join(here, "providers.json"), "utf8"));

export function cacheDir() {
  const base = process.env.GATEWAY_SCHEMA_CACHE
    ?? path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), ".cache"), "ai-gateway", "terraform-schemas");
  fs.mkdirSync(base, { recursive: true });
  return base;
}

const snake = (camel) => camel.replace(/([A-Z])/g, "_$1").toLowerCase();

/** A property's Terraform name: from its registry link (`…#ipv4 X#ipv4`), else from camelCase. */
function tfName(prop) {
  const m = (prop.docs?.summary ?? "").match(/#([a-z0-9_]+) [A-Za-z0-9]+#/);
  return m ? m[1] : snake(prop.name);
}

/** The interface a property type nests (a block or a nested attribute), if any. */
function nestedFqn(type, types) {
  if (!type) return null;
  if (type.fqn) return types[type.fqn]?.kind === "interface" ? type.fqn : null;
  if (type.collection) return nestedFqn(type.collection.elementtype, types);
  if (type.union) {
    for (const t of type.union.types) {
      const f = nestedFqn(t, types);
      if (f) return f;
    }
  }
  return null;
}

function interfaceProps(fqn, types) {
  const t = types[fqn];
  if (!t) return [];
  const inherited = (t.interfaces ?? []).filter((i) => !i.startsWith("cdktf.")).flatMap((i) => interfaceProps(i, types));
  return [...inherited, ...(t.properties ?? [])];
}

/** { a: [argument names], n: { nested name: node } } for one Config/block interface. */
function distillNode(fqn, types, depth = 0) {
  const node = { a: [], n: {} };
  for (const p of interfaceProps(fqn, types)) {
    const name = tfName(p);
    const inner = depth < 8 ? nestedFqn(p.type, types) : null;
    if (inner) node.n[name] = distillNode(inner, types, depth + 1);
    else node.a.push(name);
  }
  node.a.sort();
  return node;
}

/** Reduces a cdktf .jsii assembly to { provider_version, resource: {type: node}, data: {type: node} }. */
export function distillJsii(jsii) {
  const types = jsii.types;
  const out = { resource: {}, data: {} };
  for (const t of Object.values(types)) {
    if (t.kind !== "class" || !["cdktf.TerraformResource", "cdktf.TerraformDataSource"].includes(t.base)) continue;
    const m = (t.docs?.summary ?? "").match(/\{@link https:\/\/registry\.terraform\.io\/providers\/[^/]+\/[^/]+\/([0-9.]+)\/docs\/(resources|data-sources)\/\S+ ([a-z0-9_]+)\}/);
    if (!m) continue;
    const [, version, kind, tfType] = m;
    out.provider_version ??= version;
    const config = t.initializer?.parameters?.[2]?.type?.fqn;
    const node = config ? distillNode(config, types) : { a: [], n: {} };
    // Attributes a reference may read: every getter of the class (computed ones included).
    node.r = [...new Set((t.properties ?? []).filter((p) => !p.static && !p.const && !p.name.endsWith("Input")).map((p) => snake(p.name)))].sort();
    out[kind === "resources" ? "resource" : "data"][tfType] = node;
  }
  return out;
}

/**
 * The distilled schema of one provider source ("hashicorp/aws"), from the cache or fetched with
 * `npm pack` (integrity checked against providers.json). Returns null, with `why`, when it cannot.
 */
export function loadSchema(source, { fetch = true, log = () => {} } = {}) {
  const pin = pins.providers[source];
  if (!pin) return { schema: null, why: `no bindings pinned for ${source} in providers.json` };
  const dir = cacheDir();
  const cached = path.join(dir, `${pin.package.replace(/[@/]/g, "_")}-${pin.version}.schema.json`);
  if (fs.existsSync(cached)) return { schema: JSON.parse(fs.readFileSync(cached, "utf8")), pin };
  if (!fetch) return { schema: null, why: `${pin.package}@${pin.version} not in ${dir} (run without --offline to fetch it)` };
  const tmp = fs.mkdtempSync(path.join(dir, "fetch-"));
  try {
    log(`fetching ${pin.package}@${pin.version} (provider ${pin.provider_version}) with npm pack into ${dir}`);
    let tgz;
    try {
      const out = execFileSync("npm", ["pack", `${pin.package}@${pin.version}`, "--pack-destination", tmp, "--silent"], {
        encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: 300_000,
      });
      tgz = path.join(tmp, out.trim().split("\n").pop());
    } catch (e) {
      return { schema: null, why: `npm pack ${pin.package}@${pin.version} failed: ${String(e.stderr ?? e.message).trim().split("\n").pop()}` };
    }
    const integrity = "sha512-" + createHash("sha512").update(fs.readFileSync(tgz)).digest("base64");
    if (integrity !== pin.integrity) throw new Error(`${pin.package}@${pin.version}: integrity ${integrity} is not the pinned ${pin.integrity}`);
    const jsii = execFileSync("tar", ["-xzOf", tgz, "package/.jsii"], { maxBuffer: 1 << 30 });
    const schema = { source, package: pin.package, package_version: pin.version, ...distillJsii(JSON.parse(jsii)) };
    if (schema.provider_version !== pin.provider_version) {
      throw new Error(`${pin.package}@${pin.version} binds ${source} ${schema.provider_version}, providers.json says ${pin.provider_version}`);
    }
    fs.writeFileSync(cached, JSON.stringify(schema));
    return { schema, pin };
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

/** Terraform's built-in provider (terraform.io/builtin/terraform). */
export const builtin = {
  resource: { terraform_data: { a: ["input", "triggers_replace"], n: {}, r: ["id", "input", "output", "triggers_replace"] } },
  data: { terraform_remote_state: { a: ["backend", "config", "defaults", "workspace"], n: {}, r: ["backend", "config", "defaults", "outputs", "workspace"] } },
};

// ---- the check ------------------------------------------------------------------------------

const META = {
  resource: new Set(["count", "for_each", "depends_on", "provider", "lifecycle", "provisioner", "connection"]),
  data: new Set(["count", "for_each", "depends_on", "provider", "lifecycle"]),
};

const LIFECYCLE = new Set(["create_before_destroy", "prevent_destroy", "ignore_changes", "replace_triggered_by", "precondition", "postcondition"]);

const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);

/** Checks one block body against a schema node; pushes "path: message" problems. */
function checkBody(body, node, where, problems, allowed, key = where) {
  for (const [k, value] of Object.entries(body)) {
    if (k === "dynamic" && isObject(value)) {
      for (const [name, instances] of Object.entries(value)) {
        if (!node.n[name]) {
          if (!allowed(`${key}.${name}`)) problems.push(`${where}: unknown dynamic block \`${name}\``);
          continue;
        }
        for (const d of [].concat(instances)) {
          for (const c of [].concat(d.content ?? [])) checkBody(c, node.n[name], `${where}.${name}`, problems, allowed, `${key}.${name}`);
        }
      }
      continue;
    }
    if (node.n[k]) {
      // A block (array of bodies), a nested attribute written as an object, or a list of them;
      // an expression ("${…}") cannot be looked into.
      for (const v of [].concat(value)) if (isObject(v)) checkBody(v, node.n[k], `${where}.${k}`, problems, allowed, `${key}.${k}`);
      continue;
    }
    if (node.a.includes(k)) continue;
    if (!allowed(`${key}.${k}`)) problems.push(`${where}: unknown argument \`${k}\``);
  }
}

const REF = /(?<![\w.])(data\.)?([a-z][a-z0-9]*_[a-z0-9_]+)\.([A-Za-z_][\w-]*)((?:\[[^\][]*(?:\[[^\][]*\][^\][]*)*\])*)\.([a-z_][a-z0-9_]*)/g;

/** Every string inside a parsed value (where hcl2json keeps expressions as "${…}"). */
function* strings(v) {
  if (typeof v === "string") yield v;
  else if (Array.isArray(v)) for (const x of v) yield* strings(x);
  else if (isObject(v)) for (const x of Object.values(v)) yield* strings(x);
}

/**
 * Checks the resource and data source blocks of parsed modules against provider schemas.
 * `modules`: [{ dir, files: [{file, body}] }]; `schemas`: source → distilled schema (or null,
 * then its blocks are not checked); returns { problems, checked, unchecked, accepted }.
 */
export function checkModules(modules, schemas, { newer = pins.newer_than_bindings } = {}) {
  const problems = [];
  const accepted = new Set();
  let checked = 0;
  const unchecked = new Set();
  for (const { dir, files: mod } of modules) {
    const rp = requiredProviders(mod);
    const rel = path.relative(infra, dir) || ".";
    const schemaFor = (type) => {
      if (builtin.resource[type] || builtin.data[type]) return { s: builtin, source: "terraform.io/builtin/terraform" };
      const local = type.split("_")[0];
      const source = rp[local]?.source;
      if (!source) return { missing: `provider \`${local}\` is not in required_providers` };
      return { s: schemas[source], source };
    };
    const allowedFor = (source, schema) => (p) => {
      const since = newer?.[source]?.[p];
      if (since && schema?.provider_version && compareVersions(schema.provider_version, since) < 0) {
        accepted.add(`${source} ${since}: ${p}`);
        return true;
      }
      return false;
    };
    const declared = { resource: new Map(), data: new Map() };
    for (const { body } of mod) {
      for (const kind of ["resource", "data"]) {
        for (const [type, byName] of Object.entries(body[kind] ?? {})) {
          for (const [name, bodies] of Object.entries(byName)) {
            const at = `${rel}: ${kind === "data" ? "data." : ""}${type}.${name}`;
            const { s, source, missing } = schemaFor(type);
            declared[kind].set(`${type}.${name}`, type);
            if (missing) { problems.push(`${at}: ${missing}`); continue; }
            if (!s) { unchecked.add(source); continue; }
            const node = s[kind][type];
            if (!node) { problems.push(`${at}: ${source} ${s.provider_version ?? ""} has no ${kind === "data" ? "data source" : "resource type"} \`${type}\``); continue; }
            for (const b of bodies) {
              const meta = Object.fromEntries(Object.entries(b).filter(([k]) => META[kind].has(k)));
              const rest = Object.fromEntries(Object.entries(b).filter(([k]) => !META[kind].has(k)));
              const local = [];
              checkBody(rest, node, `${kind === "data" ? "data." : ""}${type}.${name}`, local, allowedFor(source, s), `${kind}.${type}`);
              problems.push(...local.map((p) => `${rel}: ${p}`));
              for (const lc of [].concat(meta.lifecycle ?? [])) {
                for (const k of Object.keys(lc)) if (!LIFECYCLE.has(k)) problems.push(`${at}: lifecycle: unknown argument \`${k}\``);
              }
              checked++;
            }
          }
        }
      }
    }
    // References to resource and data source attributes: `aws_x.name.attr`, `data.aws_y.name[0].attr`.
    for (const { body } of mod) {
      for (const text of strings(body)) {
        for (const m of text.matchAll(/\$\{[\s\S]*?\}|%\{[\s\S]*?\}/g)) {
          for (const r of m[0].matchAll(REF)) {
            const [, data, type, name, , attr] = r;
            const kind = data ? "data" : "resource";
            const { s, source } = schemaFor(type);
            if (!s || !s[kind]?.[type]) continue; // not a resource reference, or unchecked provider
            if (!declared[kind].has(`${type}.${name}`)) {
              problems.push(`${rel}: reference to undeclared ${data ?? ""}${type}.${name}`);
              continue;
            }
            const node = s[kind][type];
            const readable = new Set([...(node.r ?? []), ...node.a, ...Object.keys(node.n), "id"]);
            if (!readable.has(attr) && !allowedFor(source, s)(`${kind}.${type}.${attr}`)) {
              problems.push(`${rel}: ${data ?? ""}${type}.${name}.${attr}: ${source} ${s.provider_version} has no attribute \`${attr}\``);
            }
          }
        }
      }
    }
  }
  return { problems: [...new Set(problems)], checked, unchecked: [...unchecked], accepted: [...accepted] };
}

/**
 * House rules read from the parsed files: no provisioner anywhere (a local-exec would run commands,
 * with secrets in their environment, on whoever applies), and no terraform_data in the edge module
 * (its secrets are put by wrangler, outside Terraform).
 */
export function houseRules(modules) {
  const problems = [];
  for (const { dir, files: mod } of modules) {
    const rel = path.relative(infra, dir) || ".";
    for (const { body } of mod) {
      for (const [type, byName] of Object.entries(body.resource ?? {})) {
        for (const [name, bodies] of Object.entries(byName)) {
          for (const b of bodies) {
            for (const kind of Object.keys(b.provisioner ?? {})) problems.push(`${rel}: ${type}.${name}: provisioner "${kind}": provisioners are not used in infra/`);
          }
          if (rel === "modules/edge" && type === "terraform_data") problems.push(`${rel}: ${type}.${name}: the edge module holds no terraform_data (no secret passes through Terraform there)`);
        }
      }
    }
  }
  return problems;
}

/** Directories under `root` that hold .tf files (modules and examples). */
export function moduleDirs(root = infra) {
  return [...new Set(files(root).map((f) => path.dirname(f)))].sort();
}
