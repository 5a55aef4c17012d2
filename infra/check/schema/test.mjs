// Proves the schema check catches what it claims to: each case is a small module written to a
// temporary directory and checked against the real (cached or fetched) provider schemas.
//
//   node --test infra/check/schema/test.mjs
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { checkModules, houseRules, infra, loadSchema, parseModule, pins, satisfies } from "./lib.mjs";

const offline = process.env.GATEWAY_SCHEMA_OFFLINE === "1";
const aws = loadSchema("hashicorp/aws", { fetch: !offline }).schema;
const cloudflare = loadSchema("cloudflare/cloudflare", { fetch: !offline }).schema;
const skip = !aws || !cloudflare ? "provider schemas unavailable (npm pack failed or --offline without a cache)" : false;

const VERSIONS = `terraform {
  required_providers {
    aws        = { source = "hashicorp/aws", version = "~> 6.28" }
    cloudflare = { source = "cloudflare/cloudflare", version = "~> 5.16" }
  }
}
`;

async function check(tf, opts) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "schema-fixture-"));
  try {
    fs.writeFileSync(path.join(dir, "versions.tf"), VERSIONS);
    fs.writeFileSync(path.join(dir, "main.tf"), tf);
    const files = await parseModule(dir);
    const r = checkModules([{ dir, files }], { "hashicorp/aws": aws, "cloudflare/cloudflare": cloudflare }, opts);
    // Problems start with the module's directory; the fixtures' is a temporary one.
    r.problems = r.problems.map((p) => p.slice(p.indexOf(": ") + 2)).sort();
    return r;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const GOOD = `
resource "aws_lambda_function_url" "this" {
  function_name      = "gw"
  authorization_type = "NONE"
  invoke_mode        = "RESPONSE_STREAM"
}
`;

test("a correct resource passes", { skip }, async () => {
  const r = await check(GOOD);
  assert.deepEqual(r.problems, []);
  assert.equal(r.checked, 1);
});

test("a misspelt argument fails", { skip }, async () => {
  const r = await check(GOOD.replace("invoke_mode ", "invoke_mod  "));
  assert.deepEqual(r.problems, ["aws_lambda_function_url.this: unknown argument `invoke_mod`"]);
});

test("a misspelt resource type fails", { skip }, async () => {
  const r = await check(GOOD.replace("aws_lambda_function_url", "aws_lambda_function_uri"));
  assert.match(r.problems.join("\n"), /has no resource type `aws_lambda_function_uri`/);
});

test("a misspelt argument inside a nested block fails", { skip }, async () => {
  const r = await check(`
resource "aws_dynamodb_table" "t" {
  name     = "t"
  hash_key = "entity"
  ttl {
    attribute = "ttl"
    enabled   = true
  }
}
`);
  assert.deepEqual(r.problems, ["aws_dynamodb_table.t.ttl: unknown argument `attribute`"]);
});

test("a misspelt block name and a misspelt dynamic block fail", { skip }, async () => {
  const r = await check(`
resource "aws_lambda_function" "f" {
  function_name = "f"
  role          = "arn"
  environments {
    variables = {}
  }
  dynamic "vpc_config" {
    for_each = [1]
    content {
      subnet_id          = []
      security_group_ids = []
    }
  }
}
`);
  assert.deepEqual(r.problems, [
    "aws_lambda_function.f.vpc_config: unknown argument `subnet_id`",
    "aws_lambda_function.f: unknown argument `environments`",
  ]);
});

test("a misspelt key in a nested attribute object (provider framework) fails", { skip }, async () => {
  const r = await check(`
resource "cloudflare_connectivity_directory_service" "s" {
  account_id = "a"
  name       = "s"
  type       = "http"
  host = {
    ipv5 = "10.0.0.1"
  }
}
`);
  assert.deepEqual(r.problems, ["cloudflare_connectivity_directory_service.s.host: unknown argument `ipv5`"]);
});

test("a reference to an attribute the resource does not have fails", { skip }, async () => {
  const r = await check(GOOD + `
output "url" {
  value = aws_lambda_function_url.this.function_uri
}
output "region" {
  value = "\${data.aws_region.current.region}-\${aws_lambda_function_url.this.function_url}"
}
data "aws_region" "current" {}
`);
  assert.deepEqual(r.problems, ["aws_lambda_function_url.this.function_uri: hashicorp/aws 6.25.0 has no attribute `function_uri`"]);
});

test("a data source argument and a lifecycle argument are checked too", { skip }, async () => {
  const r = await check(`
data "aws_ec2_managed_prefix_list" "p" {
  nam = "com.amazonaws.eu-west-1.dynamodb"
}
resource "aws_cloudwatch_log_group" "g" {
  name = "g"
  lifecycle {
    prevent_destroyed = true
  }
}
`);
  assert.deepEqual(r.problems, [
    "aws_cloudwatch_log_group.g: lifecycle: unknown argument `prevent_destroyed`",
    "data.aws_ec2_managed_prefix_list.p: unknown argument `nam`",
  ]);
});

test("arguments newer than the bindings pass only while the schema predates them", { skip }, async () => {
  const tf = `
resource "aws_lambda_permission" "p" {
  action                   = "lambda:InvokeFunction"
  function_name            = "f"
  principal                = "*"
  invoked_via_function_url = true
}
`;
  const listed = await check(tf);
  assert.deepEqual(listed.problems, []);
  assert.deepEqual(listed.accepted, ["hashicorp/aws 6.28.0: resource.aws_lambda_permission.invoked_via_function_url"]);
  const unlisted = await check(tf, { newer: {} });
  assert.deepEqual(unlisted.problems, ["aws_lambda_permission.p: unknown argument `invoked_via_function_url`"]);
  // Once the schema is of a release that has the argument, the entry no longer excuses it.
  const later = await check(tf, { newer: { "hashicorp/aws": { "resource.aws_lambda_permission.invoked_via_function_url": "6.20.0" } } });
  assert.equal(later.problems.length, 1);
});

test("a resource of a provider not in required_providers fails", { skip }, async () => {
  const r = await check(`resource "google_storage_bucket" "b" {\n  name = "b"\n}\n`);
  assert.match(r.problems.join("\n"), /provider `google` is not in required_providers/);
});

test("a syntax error names the file", async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "schema-fixture-"));
  try {
    fs.writeFileSync(path.join(dir, "broken.tf"), 'resource "x" "y" {\n  a = [1, 2\n}\n');
    await assert.rejects(parseModule(dir), /broken\.tf/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("version constraints", () => {
  assert.ok(satisfies("6.28.0", "~> 6.28"));
  assert.ok(satisfies("6.40.1", "~> 6.28"));
  assert.ok(!satisfies("6.25.0", "~> 6.28"));
  assert.ok(!satisfies("7.0.0", "~> 6.28"));
  assert.ok(!satisfies("5.100.0", "~> 6.28"));
  assert.ok(satisfies("1.11.4", ">= 1.5.0"));
  assert.ok(satisfies("6.28.3", "~> 6.28.1"));
  assert.ok(!satisfies("6.29.0", "~> 6.28.1"));
  assert.ok(pins.providers["hashicorp/aws"].provider_version);
});

test("a provisioner anywhere, or terraform_data in the edge module, breaks the house rules", async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "schema-fixture-"));
  try {
    fs.writeFileSync(path.join(dir, "main.tf"), 'resource "terraform_data" "s" {\n  provisioner "local-exec" {\n    command = "echo"\n  }\n}\n');
    const files = await parseModule(dir);
    assert.equal(houseRules([{ dir, files }]).length, 1);
    assert.equal(houseRules([{ dir: path.join(infra, "modules/edge"), files }]).length, 2);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
