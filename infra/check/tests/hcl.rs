//! Checks of the Terraform in `infra/`: every file parses; the modules keep the promises of their
//! READMEs (descriptions, sensitive inputs, least-privilege IAM, streaming URL, table settings,
//! pinned providers); the routes module renders the examples' routes into store entries that
//! `gateway-core` decodes and accepts; and its variable validations refuse what the core refuses.

use gateway_core::route::Route;
use gateway_infra_check::{
    attr, evaluate_module, label, nested, parse_file, tf_files, Evaluation, Failure, Module, Options,
};
use hcl::{Block, Map, Value};
use serde_json::json;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

// ---------------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------------

fn infra() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn dir(rel: &str) -> PathBuf {
    infra().join(rel)
}

/// Every Terraform module and example, relative to infra/.
const MODULE_DIRS: &[&str] = &[
    "modules/edge",
    "modules/lambda",
    "modules/routes",
    "modules/routes/edge",
    "modules/routes/lambda",
    "examples/edge",
    "examples/lambda",
];

/// JSON literal → HCL value (module inputs).
fn hv(v: serde_json::Value) -> Value {
    serde_json::from_value(v).unwrap()
}

/// HCL value → JSON (assertions).
fn js(v: &Value) -> serde_json::Value {
    serde_json::to_value(v).unwrap()
}

fn inputs(v: serde_json::Value) -> Map<String, Value> {
    match hv(v) {
        Value::Object(o) => o,
        other => panic!("inputs must be an object, got {other}"),
    }
}

fn load(rel: &str) -> Module {
    Module::load(&dir(rel)).unwrap_or_else(|e| panic!("{e}"))
}

fn resource<'a>(m: &'a Module, t: &str, n: &str) -> &'a Block {
    m.block("resource", &[t, n]).unwrap_or_else(|| panic!("{}: no resource {t}.{n}", m.dir.display()))
}

fn eval_ok(rel: &str, inp: serde_json::Value, opts: Options) -> Evaluation {
    evaluate_module(&dir(rel), &inputs(inp), opts).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// A literal attribute of a block (`"PAY_PER_REQUEST"`, `true`, …).
fn lit(body: &hcl::Body, key: &str) -> serde_json::Value {
    let e = attr(body, key).unwrap_or_else(|| panic!("attribute {key} missing"));
    js(&gateway_infra_check::eval_const(e).unwrap_or_else(|err| panic!("{key}: {err}")))
}

const SIGNING_KEYS: &str = r#"[{"kid":"k-test","alg":"HS256","secret":"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="}]"#;

fn lambda_inputs() -> serde_json::Value {
    json!({
        "name": "ai-gateway",
        "artifact_path": "/build/target/lambda/gateway-lambda/bootstrap.zip",
        "architecture": "arm64",
        "signing_keys": SIGNING_KEYS,
        "upstream_api_keys": {"VLLM_API_KEY": "not-a-real-key"},
        "vpc_id": "vpc-0123",
        "subnet_ids": ["subnet-a", "subnet-b"],
        "route_table_ids": ["rtb-a"],
        "vllm_cidr_blocks": ["10.0.1.0/24"],
    })
}

fn edge_example_inputs() -> serde_json::Value {
    json!({
        "account_id": "0123456789abcdef0123456789abcdef",
        "zone_id": "fedcba9876543210fedcba9876543210",
        "worker_deployed": true,
        "signing_keys": SIGNING_KEYS,
        "vllm_api_key": "not-a-real-key",
    })
}

fn lambda_example_inputs() -> serde_json::Value {
    json!({
        "vpc_id": "vpc-0123",
        "subnet_ids": ["subnet-a", "subnet-b"],
        "route_table_ids": ["rtb-a"],
        "signing_keys": SIGNING_KEYS,
        "vllm_api_key": "not-a-real-key",
    })
}

const STRICT: Options = Options { strict_types: true, skip_validation: false };

// ---------------------------------------------------------------------------------------------
// 1. parsing
// ---------------------------------------------------------------------------------------------

#[test]
fn every_tf_file_under_infra_parses() {
    let files = tf_files(&infra());
    // 7 directories of 4 files each at least.
    assert!(files.len() >= 28, "expected the modules' and examples' .tf files, found {}", files.len());
    let errors: Vec<String> = files.iter().filter_map(|f| parse_file(f).err()).collect();
    assert!(errors.is_empty(), "syntax errors:\n{}", errors.join("\n"));
    for d in MODULE_DIRS {
        for f in ["main.tf", "variables.tf", "outputs.tf", "versions.tf"] {
            let p = dir(d).join(f);
            assert!(files.contains(&p), "{} is missing", p.display());
        }
    }
}

#[test]
fn a_syntax_error_is_reported_with_the_file_name() {
    let tmp = std::env::temp_dir().join(format!("infra-check-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let bad = tmp.join("broken.tf");
    std::fs::write(&bad, "resource \"x\" \"y\" {\n  a = [1, 2\n}\n").unwrap();
    let err = parse_file(&bad).expect_err("an unclosed list must not parse");
    assert!(err.contains("broken.tf"), "error does not name the file: {err}");
    let good = tmp.join("fine.tf");
    std::fs::write(&good, "locals {\n  a = [1, 2]\n}\n").unwrap();
    parse_file(&good).unwrap();
    std::fs::remove_dir_all(&tmp).ok();
}

// ---------------------------------------------------------------------------------------------
// 2. structure
// ---------------------------------------------------------------------------------------------

fn all_variables() -> Vec<(PathBuf, Block)> {
    let mut out = Vec::new();
    for f in tf_files(&infra()) {
        let body = parse_file(&f).unwrap();
        for b in body.blocks().filter(|b| b.identifier() == "variable") {
            out.push((f.clone(), b.clone()));
        }
    }
    out
}

#[test]
fn every_variable_has_a_description() {
    let vars = all_variables();
    assert!(vars.len() >= 40, "expected the modules' variables, found {}", vars.len());
    let missing: Vec<String> = vars
        .iter()
        .filter(|(_, b)| {
            let d = attr(b.body(), "description").and_then(|e| gateway_infra_check::eval_const(e).ok());
            d.as_ref().and_then(Value::as_str).is_none_or(|s| s.trim().len() < 10)
        })
        .map(|(f, b)| format!("{}: variable {}", f.display(), label(b, 0)))
        .collect();
    assert!(missing.is_empty(), "variables without a real description:\n{}", missing.join("\n"));
}

#[test]
fn secret_looking_variables_are_sensitive_and_have_no_default_value() {
    let re = regex::Regex::new("(?i)(key|secret|token|password)").unwrap();
    let mut checked = BTreeSet::new();
    let mut problems = Vec::new();
    for (f, b) in all_variables() {
        let name = label(&b, 0).to_string();
        let sensitive = matches!(attr(b.body(), "sensitive"), Some(hcl::Expression::Bool(true)));
        if re.is_match(&name) {
            checked.insert(name.clone());
            if !sensitive {
                problems.push(format!("{}: variable {name} must be sensitive = true", f.display()));
            }
        }
        if sensitive {
            if let Some(d) = attr(b.body(), "default") {
                let d = gateway_infra_check::eval_const(d).unwrap();
                let empty = match &d {
                    Value::Null => true,
                    Value::String(s) => s.is_empty(),
                    Value::Object(o) => o.is_empty(),
                    Value::Array(a) => a.is_empty(),
                    _ => false,
                };
                if !empty {
                    problems.push(format!("{}: sensitive variable {name} has a default value", f.display()));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    for expected in ["signing_keys", "upstream_api_keys", "vllm_api_key"] {
        assert!(checked.contains(expected), "variable {expected} was not seen by the check");
    }
}

#[test]
fn versions_pin_provider_majors_with_pessimistic_constraints() {
    let majors = [("cloudflare", "~> 5."), ("aws", "~> 6.")];
    for d in MODULE_DIRS {
        let m = load(d);
        let body = m.file("versions.tf").unwrap_or_else(|| panic!("{d}: no versions.tf"));
        let tf = body.blocks().find(|b| b.identifier() == "terraform").unwrap_or_else(|| panic!("{d}: no terraform block"));
        let rv = lit(tf.body(), "required_version");
        assert!(rv.as_str().is_some_and(|s| s.starts_with(">= 1.")), "{d}: required_version {rv}");

        let mut declared = BTreeSet::new();
        for rp in nested(tf.body(), "required_providers") {
            for a in rp.body().attributes() {
                let spec = js(&gateway_infra_check::eval_const(a.expr()).unwrap());
                let version = spec["version"].as_str().unwrap_or_else(|| panic!("{d}: provider {} unpinned", a.key()));
                assert!(version.starts_with("~> "), "{d}: provider {} must be pinned with ~>, is {version}", a.key());
                for (p, major) in majors {
                    if a.key() == p {
                        assert!(version.starts_with(major), "{d}: {p} must stay on {major}x, is {version}");
                    }
                }
                declared.insert(a.key().to_string());
            }
        }
        // Every provider whose resources the module uses is declared (and so pinned).
        for kind in ["resource", "data"] {
            for b in m.blocks(kind) {
                let prefix = label(b, 0).split('_').next().unwrap();
                if prefix == "terraform" {
                    continue; // built in
                }
                assert!(declared.contains(prefix), "{d}: {kind} {} uses provider {prefix}, not in required_providers", label(b, 0));
            }
        }
    }
}

#[test]
fn every_module_readme_documents_its_inputs_and_outputs() {
    for d in MODULE_DIRS {
        let m = load(d);
        let readme = std::fs::read_to_string(dir(d).join("README.md")).unwrap_or_else(|_| panic!("{d}: no README.md"));
        for kind in ["variable", "output"] {
            for b in m.blocks(kind) {
                let name = label(b, 0);
                assert!(readme.contains(&format!("`{name}`")), "{d}/README.md does not document {kind} `{name}`");
            }
        }
    }
    let top = std::fs::read_to_string(infra().join("README.md")).expect("infra/README.md");
    for step in [
        "cargo lambda build --release",
        "terraform init",
        "terraform apply",
        "wrangler deploy",
        "gatewayctl token mint --subject ops --groups admin --ttl 1h",
        "GATEWAY_SIGNING_KEYS",
        "kv_namespace_id",
    ] {
        assert!(top.contains(step), "infra/README.md does not show `{step}`");
    }
}

/// The Lambda's inline policy, statement by statement.
fn lambda_policy_statements() -> Vec<serde_json::Value> {
    let ev = eval_ok("modules/lambda", lambda_inputs(), STRICT);
    let m = load("modules/lambda");
    let policies: Vec<&Block> = m.blocks("resource").filter(|b| label(b, 0) == "aws_iam_role_policy").collect();
    assert_eq!(policies.len(), 1, "one inline policy expected");
    let inst = ev.instances(policies[0]).unwrap();
    let doc = inst[0].1.get("policy").and_then(Value::as_str).expect("policy evaluates to a JSON string");
    let doc: serde_json::Value = serde_json::from_str(doc).unwrap();
    assert_eq!(doc["Version"], "2012-10-17");
    doc["Statement"].as_array().expect("Statement list").clone()
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    match v {
        serde_json::Value::String(s) => vec![s.clone()],
        serde_json::Value::Array(a) => a.iter().map(|x| x.as_str().expect("string").to_string()).collect(),
        other => panic!("expected a string or list, got {other}"),
    }
}

#[test]
fn lambda_inline_policy_is_least_privilege_and_wildcard_free() {
    const DYNAMODB: [&str; 7] = [
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
        "dynamodb:Query",
        "dynamodb:Scan",
        "dynamodb:TransactWriteItems",
    ];
    const LOGS: [&str; 2] = ["logs:CreateLogStream", "logs:PutLogEvents"];
    let table_arn = "aws_dynamodb_table.this.arn";
    // The gateway's and the prober's own log groups.
    let own_groups = ["aws_cloudwatch_log_group.this.arn", "aws_cloudwatch_log_group.probe.arn"];
    let log_streams: Vec<String> = own_groups.iter().map(|g| format!("{g}:*")).collect();

    let statements = lambda_policy_statements();
    let mut dynamodb_actions = BTreeSet::new();
    for s in &statements {
        assert_eq!(s["Effect"], "Allow", "{s}");
        for forbidden in ["NotAction", "NotResource", "Principal"] {
            assert!(s.get(forbidden).is_none(), "{forbidden} in {s}");
        }
        let actions = strings(&s["Action"]);
        let resources = strings(&s["Resource"]);
        for a in &actions {
            assert!(!a.contains('*'), "wildcard action {a}");
            assert!(DYNAMODB.contains(&a.as_str()) || LOGS.contains(&a.as_str()), "action {a} is not needed");
        }
        if actions.iter().all(|a| a.starts_with("dynamodb:")) {
            assert_eq!(resources, vec![table_arn.to_string()], "DynamoDB actions only on the table");
            dynamodb_actions.extend(actions.iter().cloned());
        } else {
            assert!(actions.iter().all(|a| a.starts_with("logs:")), "a statement mixes services: {s}");
            // Log streams are named at run time; the only `*` allowed is the streams of the
            // functions' own log groups.
            assert_eq!(resources, log_streams, "logs only on the functions' own log groups");
        }
        for r in &resources {
            let without_own_streams = r.strip_suffix(":*").filter(|p| own_groups.contains(p));
            assert!(!r.contains('*') || without_own_streams.is_some(), "wildcard resource {r}");
            assert_ne!(r, "*");
        }
    }
    assert_eq!(dynamodb_actions, DYNAMODB.iter().map(|s| s.to_string()).collect(), "exactly the seven table actions");

    // The role is for Lambda only, and the only other permissions are AWS's ENI-only policy.
    let ev = eval_ok("modules/lambda", lambda_inputs(), STRICT);
    let m = load("modules/lambda");
    let role = ev.instances(resource(&m, "aws_iam_role", "this")).unwrap();
    let trust: serde_json::Value = serde_json::from_str(role[0].1["assume_role_policy"].as_str().unwrap()).unwrap();
    assert_eq!(trust["Statement"][0]["Principal"]["Service"], "lambda.amazonaws.com");
    assert_eq!(trust["Statement"][0]["Action"], "sts:AssumeRole");
    let attachments: Vec<&Block> =
        m.blocks("resource").filter(|b| label(b, 0).starts_with("aws_iam_") && label(b, 0).contains("attachment")).collect();
    assert_eq!(attachments.len(), 1);
    let att = ev.instances(attachments[0]).unwrap();
    let arn = att[0].1["policy_arn"].as_str().unwrap();
    assert!(arn.ends_with(":iam::aws:policy/service-role/AWSLambdaENIManagementAccess"), "{arn}");
    for b in m.blocks("resource") {
        assert!(!["aws_iam_policy", "aws_iam_role_policies_exclusive"].contains(&label(b, 0)), "unexpected {}", label(b, 0));
    }
}

#[test]
fn function_url_streams_and_is_publicly_invocable_through_the_url_only() {
    let ev = eval_ok("modules/lambda", lambda_inputs(), STRICT);
    let m = load("modules/lambda");
    let url = ev.instances(resource(&m, "aws_lambda_function_url", "this")).unwrap();
    assert_eq!(js(&url[0].1["invoke_mode"]), "RESPONSE_STREAM");
    assert_eq!(js(&url[0].1["authorization_type"]), "NONE");
    assert_eq!(js(&url[0].1["function_name"]), "aws_lambda_function.this.function_name");

    let perms: Vec<Map<String, Value>> = m
        .blocks("resource")
        .filter(|b| label(b, 0) == "aws_lambda_permission")
        .flat_map(|b| ev.instances(b).unwrap().into_iter().map(|(_, a)| a))
        .collect();
    let by_action = |a: &str| perms.iter().find(|p| p["action"].as_str() == Some(a)).unwrap_or_else(|| panic!("no {a} permission"));
    let url_perm = by_action("lambda:InvokeFunctionUrl");
    assert_eq!(js(&url_perm["function_url_auth_type"]), "NONE");
    let gateway: Vec<&Map<String, Value>> =
        perms.iter().filter(|p| js(&p["function_name"]) == "aws_lambda_function.this.function_name").collect();
    assert_eq!(gateway.len(), 2, "the URL's two permissions, nothing else, on the gateway");
    let invoke = gateway.iter().find(|p| p["action"].as_str() == Some("lambda:InvokeFunction")).expect("InvokeFunction permission");
    assert_eq!(js(&invoke["invoked_via_function_url"]), true, "InvokeFunction only through the URL");
    // The third is the prober's, for its schedule only (see the probe test).
    assert_eq!(perms.len(), 3);
}

#[test]
fn the_prober_runs_the_same_package_in_probe_mode_on_the_schedule() {
    let m = load("modules/lambda");
    let ev = eval_ok("modules/lambda", lambda_inputs(), STRICT);
    let one = |t: &str, n: &str| ev.instances(resource(&m, t, n)).unwrap().remove(0).1;

    // The schedule is the variable, every minute unless set.
    let rule_block = resource(&m, "aws_cloudwatch_event_rule", "probe");
    let expr = attr(rule_block.body(), "schedule_expression").expect("schedule_expression");
    assert_eq!(expr.to_string(), "var.probe_schedule");
    assert_eq!(js(&one("aws_cloudwatch_event_rule", "probe")["schedule_expression"]), "rate(1 minute)");
    let mut every_five = lambda_inputs();
    every_five["probe_schedule"] = json!("rate(5 minutes)");
    let ev5 = eval_ok("modules/lambda", every_five, STRICT);
    assert_eq!(js(&ev5.instances(rule_block).unwrap()[0].1["schedule_expression"]), "rate(5 minutes)");

    // The rule's target is the prober.
    let target = one("aws_cloudwatch_event_target", "probe");
    assert_eq!(js(&target["rule"]), "aws_cloudwatch_event_rule.probe.name");
    assert_eq!(js(&target["arn"]), "aws_lambda_function.probe.arn");
    let targets: Vec<&Block> = m.blocks("resource").filter(|b| label(b, 0) == "aws_cloudwatch_event_target").collect();
    assert_eq!(targets.len(), 1);

    // The prober: the gateway's package and role, probe mode, the same table, and no secrets.
    let probe_block = resource(&m, "aws_lambda_function", "probe");
    let gateway_block = resource(&m, "aws_lambda_function", "this");
    let probe = one("aws_lambda_function", "probe");
    let gateway = one("aws_lambda_function", "this");
    for same in ["role", "runtime", "handler", "architectures", "filename", "kms_key_arn"] {
        assert_eq!(probe.get(same), gateway.get(same), "{same}");
    }
    assert_eq!(js(&probe["role"]), "aws_iam_role.this.arn");
    assert_eq!(js(&probe["function_name"]), "ai-gateway-probe");
    let timeout = js(&probe["timeout"]).as_u64().unwrap();
    assert!((10..=60).contains(&timeout), "a round takes seconds: timeout {timeout}");
    assert!(js(&probe["memory_size"]).as_u64().unwrap() <= 256);
    let env_of = |b: &Block| {
        let env_block = nested(b.body(), "environment").next().expect("environment block");
        js(&ev.eval(attr(env_block.body(), "variables").unwrap()).unwrap())
    };
    let (probe_env, gateway_env) = (env_of(probe_block), env_of(gateway_block));
    assert_eq!(probe_env["GATEWAY_MODE"], "probe");
    assert_eq!(probe_env["GATEWAY_TABLE"], gateway_env["GATEWAY_TABLE"]);
    assert_eq!(probe_env["GATEWAY_TABLE"], "aws_dynamodb_table.this.name");
    assert!(gateway_env.get("GATEWAY_MODE").is_none(), "the gateway itself is not in probe mode");
    for secret in ["GATEWAY_SIGNING_KEYS", "VLLM_API_KEY"] {
        assert!(probe_env.get(secret).is_none(), "the prober does not get {secret}");
    }
    let logging = nested(probe_block.body(), "logging_config").next().expect("logging_config");
    assert_eq!(js(&ev.eval(attr(logging.body(), "log_group").unwrap()).unwrap()), "aws_cloudwatch_log_group.probe.name");
    // It reaches the vLLM hosts the way the gateway does.
    let vpc = |b: &Block| nested(b.body(), "dynamic").find(|d| label(d, 0) == "vpc_config").map(|d| d.body().clone());
    assert!(vpc(probe_block).is_some());
    assert_eq!(vpc(probe_block), vpc(gateway_block));

    // Only EventBridge, and only through this rule, may invoke it.
    let perm = one("aws_lambda_permission", "probe_schedule");
    assert_eq!(js(&perm["action"]), "lambda:InvokeFunction");
    assert_eq!(js(&perm["function_name"]), "aws_lambda_function.probe.function_name");
    assert_eq!(js(&perm["principal"]), "events.amazonaws.com");
    assert_eq!(js(&perm["source_arn"]), "aws_cloudwatch_event_rule.probe.arn");
}

#[test]
fn table_has_the_gateway_keys_ttl_on_demand_billing_and_pitr() {
    let m = load("modules/lambda");
    let t = resource(&m, "aws_dynamodb_table", "this");
    let b = t.body();
    assert_eq!(lit(b, "billing_mode"), "PAY_PER_REQUEST");
    assert_eq!(lit(b, "hash_key"), "entity");
    assert_eq!(lit(b, "range_key"), "item");
    let attrs: BTreeSet<(String, String)> = nested(b, "attribute")
        .map(|a| (lit(a.body(), "name").as_str().unwrap().into(), lit(a.body(), "type").as_str().unwrap().into()))
        .collect();
    assert_eq!(attrs, [("entity".into(), "S".into()), ("item".into(), "S".into())].into_iter().collect());
    let ttl: Vec<&Block> = nested(b, "ttl").collect();
    assert_eq!(ttl.len(), 1);
    assert_eq!(lit(ttl[0].body(), "attribute_name"), "ttl");
    assert_eq!(lit(ttl[0].body(), "enabled"), true);
    let pitr: Vec<&Block> = nested(b, "point_in_time_recovery").collect();
    assert_eq!(pitr.len(), 1);
    assert_eq!(lit(pitr[0].body(), "enabled"), true);
}

#[test]
fn lambda_function_runs_the_cargo_lambda_artifact_with_the_gateway_environment() {
    let ev = eval_ok("modules/lambda", lambda_inputs(), STRICT);
    let m = load("modules/lambda");
    let f = resource(&m, "aws_lambda_function", "this");
    let inst = ev.instances(f).unwrap();
    let a = &inst[0].1;
    assert_eq!(js(&a["runtime"]), "provided.al2023");
    assert_eq!(js(&a["handler"]), "bootstrap");
    assert_eq!(js(&a["architectures"]), json!(["arm64"]));
    assert_eq!(js(&a["filename"]), "/build/target/lambda/gateway-lambda/bootstrap.zip");

    let env_block = nested(f.body(), "environment").next().expect("environment block");
    let env = js(&ev.eval(attr(env_block.body(), "variables").unwrap()).unwrap());
    assert_eq!(env["GATEWAY_TABLE"], "aws_dynamodb_table.this.name");
    assert_eq!(env["GATEWAY_SIGNING_KEYS"], SIGNING_KEYS);
    assert_eq!(env["GATEWAY_ISSUER"], "ai-gateway");
    assert_eq!(env["GATEWAY_AUDIENCE"], "ai-gateway");
    assert_eq!(env["GATEWAY_MAX_TOKEN_TTL_SECONDS"], "7776000");
    assert_eq!(env["VLLM_API_KEY"], "not-a-real-key");
    let logging = nested(f.body(), "logging_config").next().expect("logging_config");
    assert_eq!(js(&ev.eval(attr(logging.body(), "log_group").unwrap()).unwrap()), "aws_cloudwatch_log_group.this.name");

    // The security group: no inline rules; egress only to the vLLM CIDRs on the vLLM port, and
    // DynamoDB's prefix list on 443.
    let sg = resource(&m, "aws_security_group", "this");
    assert!(nested(sg.body(), "ingress").next().is_none() && nested(sg.body(), "egress").next().is_none());
    for b in m.blocks("resource") {
        assert_ne!(label(b, 0), "aws_vpc_security_group_ingress_rule", "the function needs no inbound rule");
    }
    let vllm = ev.instances(resource(&m, "aws_vpc_security_group_egress_rule", "vllm")).unwrap();
    assert_eq!(vllm.len(), 1);
    assert_eq!(js(&vllm[0].1["cidr_ipv4"]), "10.0.1.0/24");
    assert_eq!(js(&vllm[0].1["security_group_id"]), "aws_security_group.this[0].id");
    assert_eq!(js(&vllm[0].1["ip_protocol"]), "tcp");
    assert_eq!((js(&vllm[0].1["from_port"]), js(&vllm[0].1["to_port"])), (json!(8000), json!(8000)));
    let ddb = ev.instances(resource(&m, "aws_vpc_security_group_egress_rule", "dynamodb")).unwrap();
    assert_eq!(js(&ddb[0].1["prefix_list_id"]), "data.aws_ec2_managed_prefix_list.dynamodb[0].id");
    assert_eq!(js(&ddb[0].1["from_port"]), 443);
}

#[test]
fn lambda_module_refuses_unsafe_inputs() {
    let cases = [
        ("architecture", json!("ppc64le")),
        ("upstream_api_keys", json!({"GATEWAY_SIGNING_KEYS": "x"})),
        ("upstream_api_keys", json!({"vllm-key": "x"})),
        ("extra_environment", json!({"GATEWAY_TABLE": "other"})),
        ("vllm_cidr_blocks", json!(["0.0.0.0/0"])),
        ("signing_keys", json!("not json")),
        ("timeout_seconds", json!(901)),
        ("extra_environment", json!({"GATEWAY_MODE": "probe"})),
        ("probe_schedule", json!("every minute")),
    ];
    for (var, value) in cases {
        let mut inp = lambda_inputs();
        inp[var] = value.clone();
        match evaluate_module(&dir("modules/lambda"), &inputs(inp), STRICT) {
            Err(Failure::Validation(v)) => assert!(v.iter().any(|(_, name, _)| name == var), "{var}={value}: {v:?}"),
            other => panic!("{var}={value} was not refused by validation: {other:?}"),
        }
    }
}

#[test]
fn edge_module_refuses_unsafe_inputs_and_example_vias_name_its_bindings() {
    let base = json!({"account_id": "0123456789abcdef0123456789abcdef"});
    eval_ok("modules/edge", base.clone(), STRICT);
    let cases = [
        json!({"account_id": "acme"}),
        json!({"upstream_api_keys": {"GATEWAY_SIGNING_KEYS": "x"}}),
        json!({"vllm_pools": {"a": {"services": {"X": {"ipv4": "10.0.0.1"}}}, "b": {"services": {"X": {"ipv4": "10.0.0.2"}}}}}),
        json!({"vllm_pools": {"a": {"services": {"X": {"ipv4": "10.0.0.1", "hostname": "h.internal"}}}}}),
        json!({"vllm_pools": {"a": {"services": {"bad-binding": {"ipv4": "10.0.0.1"}}}}}),
    ];
    for case in cases {
        let mut inp = base.clone();
        for (k, v) in case.as_object().unwrap() {
            inp[k] = v.clone();
        }
        assert!(
            matches!(evaluate_module(&dir("modules/edge"), &inputs(inp), STRICT), Err(Failure::Validation(_))),
            "{case} was not refused"
        );
    }

    // Each endpoint of the edge example goes through a VPC service the example creates.
    let ex = eval_ok("examples/edge", edge_example_inputs(), STRICT);
    let bindings: BTreeSet<String> = js(&ex.locals["vllm_pools"])
        .as_object()
        .unwrap()
        .values()
        .flat_map(|p| p["services"].as_object().unwrap().keys().cloned().collect::<Vec<_>>())
        .collect();
    let edge = &ex.children["edge"];
    let services = edge.locals["vpc_services"].as_object().unwrap();
    assert_eq!(services.keys().cloned().collect::<BTreeSet<_>>(), bindings);
    let mut vias = 0;
    for r in js(&ex.locals["routes"]).as_object().unwrap().values() {
        for e in r["endpoints"].as_array().unwrap() {
            let via = e["via"].as_str().expect("edge example endpoints go through a VPC service");
            assert!(bindings.contains(via), "via {via} names no VPC service");
            vias += 1;
        }
    }
    assert_eq!(vias, 2);
    // The secrets Terraform puts: the signing keys and the key the route names.
    assert_eq!(js(&edge.locals["secret_names"]), json!(["GATEWAY_SIGNING_KEYS", "VLLM_API_KEY"]));
}

// ---------------------------------------------------------------------------------------------
// 3. the routes module's store entries, from the examples, through gateway-core
// ---------------------------------------------------------------------------------------------

/// API.md's route object fields, exactly.
const ROUTE_FIELDS: [&str; 12] = [
    "affinity",
    "auth",
    "enabled",
    "endpoints",
    "forward_set_cookie",
    "host",
    "managed_by",
    "max_body_bytes",
    "name",
    "sandbox",
    "timeouts",
    "upstream_api_key_secret",
];

/// Decodes a stored route JSON with the core and checks it: valid, Terraform-managed, named
/// `name`, exactly API.md's fields, and nothing lost in the round trip.
fn check_route_json(text: &str, name: &str) -> Route {
    let route: Route = serde_json::from_str(text).unwrap_or_else(|e| panic!("{name}: core cannot decode {text}: {e}"));
    route.validate().unwrap_or_else(|e| panic!("{name}: core refuses {text}: {e:?}"));
    assert_eq!(route.name, name);
    assert_eq!(route.managed_by.as_deref(), Some("terraform"));
    assert!(route.is_externally_managed());
    let raw: serde_json::Value = serde_json::from_str(text).unwrap();
    let fields: Vec<&str> = raw.as_object().unwrap().keys().map(String::as_str).collect();
    // `rate_limit_rpm` is optional and written only when set.
    let mut sorted: Vec<&str> = fields.iter().copied().filter(|f| *f != "rate_limit_rpm").collect();
    sorted.sort();
    assert_eq!(sorted, ROUTE_FIELDS, "{name}: fields of the stored route");
    for e in raw["endpoints"].as_array().unwrap() {
        for k in e.as_object().unwrap().keys() {
            assert!(["id", "url", "weight", "via"].contains(&k.as_str()), "endpoint field {k}");
        }
        assert!(e.get("via").is_none_or(|v| v.is_string()), "via is left out when unset, not null");
    }
    // Numbers compare as numbers: Terraform writes a factor of 0 as `0`, the core as `0.0`.
    fn numbers_as_floats(v: serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Number(n) => json!(n.as_f64()),
            serde_json::Value::Array(a) => serde_json::Value::Array(a.into_iter().map(numbers_as_floats).collect()),
            serde_json::Value::Object(o) => serde_json::Value::Object(o.into_iter().map(|(k, v)| (k, numbers_as_floats(v))).collect()),
            other => other,
        }
    }
    assert_eq!(numbers_as_floats(serde_json::to_value(&route).unwrap()), numbers_as_floats(raw), "{name}: core re-encodes the route differently");
    route
}

/// The example route: a vLLM pool of two endpoints, session affinity by header, an internal
/// group and a partner group, and an upstream key by name.
fn check_example_route(route: &Route) {
    assert_eq!(route.endpoints.len(), 2);
    assert!(route.endpoints.iter().all(|e| e.url.starts_with("http://10.")), "private vLLM hosts");
    assert_eq!(route.affinity.header.as_deref(), Some("x-session-id"));
    assert!(route.auth.required);
    assert!(route.auth.groups.iter().any(|g| g == "ml-team"), "internal group");
    assert!(route.auth.groups.iter().any(|g| g.starts_with("partner-")), "partner group");
    assert_eq!(route.upstream_api_key_secret.as_deref(), Some("VLLM_API_KEY"));
}

#[test]
fn edge_example_routes_become_kv_entries_the_core_accepts() {
    let ex = eval_ok("examples/edge", edge_example_inputs(), STRICT);
    let routes_call = &ex.children["routes"];
    assert_eq!(js(&routes_call.vars["namespace_id"]), "cloudflare_workers_kv_namespace.this.id", "KV entries go to the module's namespace");
    let m = Module::load(&routes_call.dir).unwrap();
    let kv = resource(&m, "cloudflare_workers_kv", "entry");
    let instances = routes_call.instances(kv).unwrap();

    let example_routes = js(&ex.locals["routes"]);
    let mut seen_routes = BTreeSet::new();
    let mut hosts = 0;
    for (key, a) in &instances {
        let key = key.as_str().unwrap();
        assert_eq!(a["key_name"].as_str(), Some(key), "for_each is keyed by the KV key, so a rename replaces the entry");
        assert_eq!(js(&a["account_id"]), "0123456789abcdef0123456789abcdef");
        let value = a["value"].as_str().unwrap();
        if let Some(name) = key.strip_prefix("route:") {
            let route = check_route_json(value, name);
            check_example_route(&route);
            assert!(route.endpoints.iter().all(|e| e.via.is_some()));
            assert_eq!(route.endpoints.iter().map(|e| e.weight).collect::<Vec<_>>(), vec![2, 1]);
            seen_routes.insert(name.to_string());
        } else if let Some(host) = key.strip_prefix("host:") {
            assert_eq!(example_routes[value]["host"], host, "host:{host} names the route that has that host");
            hosts += 1;
        } else {
            panic!("unexpected KV key {key}");
        }
    }
    let expected: BTreeSet<String> = example_routes.as_object().unwrap().keys().cloned().collect();
    assert_eq!(seen_routes, expected);
    assert_eq!(hosts, 1);
    assert_eq!(instances.len(), 2);
}

#[test]
fn lambda_example_routes_become_table_items_the_core_accepts() {
    let ex = eval_ok("examples/lambda", lambda_example_inputs(), STRICT);
    let routes_call = &ex.children["routes"];
    assert_eq!(js(&routes_call.vars["table_name"]), "aws_dynamodb_table.this.name", "items go to the module's table");
    let m = Module::load(&routes_call.dir).unwrap();
    let items = resource(&m, "aws_dynamodb_table_item", "entry");
    let instances = routes_call.instances(items).unwrap();
    assert_eq!(instances.len(), 1);
    for (key, a) in &instances {
        let key = key.as_str().unwrap();
        assert_eq!(js(&a["hash_key"]), "entity");
        assert_eq!(js(&a["range_key"]), "item");
        let item: serde_json::Value = serde_json::from_str(a["item"].as_str().unwrap()).unwrap();
        assert_eq!(item["entity"]["S"], key, "for_each is keyed by the partition key, so a rename replaces the item");
        assert_eq!(item["item"]["S"], "def");
        let name = key.strip_prefix("route#").expect("only route items: the Lambda example has no host route");
        let route = check_route_json(item["route"]["S"].as_str().unwrap(), name);
        check_example_route(&route);
        assert!(route.endpoints.iter().all(|e| e.via.is_none()), "the Lambda ignores via; the example sets none");
        assert_eq!(item.as_object().unwrap().len(), 3, "entity, item, route");
    }
    // The Lambda example builds the artifact cargo lambda writes.
    let lambda = &ex.children["lambda"];
    assert!(js(&lambda.vars["artifact_path"]).as_str().unwrap().ends_with("/target/lambda/gateway-lambda/bootstrap.zip"));
}

#[test]
fn host_routes_become_host_items_for_the_lambda() {
    let routes = json!({
        "llama": {"host": "llama.models.example.com", "endpoints": [{"id": "a", "url": "http://10.0.1.5:8000"}]},
        "qwen": {"endpoints": [{"id": "a", "url": "https://qwen.internal:8443/v1", "weight": 1000}]},
    });
    let ev = eval_ok("modules/routes", json!({"routes": routes}), STRICT);
    let items = js(&ev.outputs["dynamodb_items"]);
    let keys: BTreeSet<&str> = items.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["host#llama.models.example.com", "route#llama", "route#qwen"].into_iter().collect());
    let host: serde_json::Value = serde_json::from_str(items["host#llama.models.example.com"].as_str().unwrap()).unwrap();
    assert_eq!(host, json!({"entity": {"S": "host#llama.models.example.com"}, "item": {"S": "def"}, "route_name": {"S": "llama"}}));
    let kv = js(&ev.outputs["kv_entries"]);
    assert_eq!(kv["host:llama.models.example.com"], "llama");
    let llama = check_route_json(kv["route:llama"].as_str().unwrap(), "llama");
    assert_eq!(llama.host.as_deref(), Some("llama.models.example.com"));
    // Defaults match the core's: auth required, x-session-id, weight 1, 2 s / 300 s, 10 MiB.
    assert_eq!(llama, {
        let mut r = Route::new("llama", vec![gateway_core::route::Endpoint::new("a", "http://10.0.1.5:8000")]);
        r.host = Some("llama.models.example.com".into());
        r.managed_by = Some("terraform".into());
        r
    });
    check_route_json(kv["route:qwen"].as_str().unwrap(), "qwen");

    // Renaming a route changes every key the for_each uses: the old entries are destroyed.
    let renamed = json!({"routes": {"llama-v2": {"host": "llama.models.example.com", "endpoints": []}}});
    let ev2 = eval_ok("modules/routes", renamed, STRICT);
    let kv2 = js(&ev2.outputs["kv_entries"]);
    assert!(kv2.get("route:llama").is_none() && kv2.get("route:llama-v2").is_some());
    assert_eq!(kv2["host:llama.models.example.com"], "llama-v2");
}

// ---------------------------------------------------------------------------------------------
// 4. the routes module's validations against the core's
// ---------------------------------------------------------------------------------------------

fn render(routes: &serde_json::Value, skip_validation: bool) -> Result<Evaluation, Failure> {
    evaluate_module(
        &dir("modules/routes"),
        &inputs(json!({"routes": routes})),
        Options { strict_types: true, skip_validation },
    )
}

fn one_route(name: &str, route: serde_json::Value) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    m.insert(name.to_string(), route);
    serde_json::Value::Object(m)
}

fn pool() -> serde_json::Value {
    json!([
        {"id": "gpu-a", "url": "http://10.0.1.5:8000", "weight": 2},
        {"id": "gpu-b", "url": "http://10.0.1.6:8000", "weight": 1},
    ])
}

#[test]
fn good_routes_pass_both_terraform_and_core_validation() {
    let long = "a".repeat(63);
    let cases = vec![
        ("llama-prod", json!({"endpoints": pool(), "auth": {"groups": ["ml-team", "partner-acme"]}})),
        ("a", json!({})),
        ("0", json!({"endpoints": [{"id": "x", "url": "https://vllm.internal/prefix/v1"}]})),
        (long.as_str(), json!({"enabled": false})),
        ("public", json!({"auth": {"required": false}, "endpoints": [{"id": "v6", "url": "http://[fd00::1]:8000"}]})),
        ("cookie", json!({"affinity": {"header": "X-Conversation", "cookie": "sid"}, "endpoints": pool()})),
        ("balanced", json!({"affinity": {"fallback": "prefix", "balance_factor": 1.5}, "endpoints": pool()})),
        ("unbounded", json!({"affinity": {"fallback": "none", "balance_factor": 0}, "endpoints": pool()})),
        ("hosted", json!({"host": "llama.models.example.com", "endpoints": pool(), "upstream_api_key_secret": "VLLM_API_KEY_2"})),
        ("limits", json!({"timeouts": {"connect_ms": 60000, "response_ms": 3600000}, "max_body_bytes": 1073741824})),
        ("via", json!({"endpoints": [{"id": "a", "url": "http://10.0.0.1:65535", "weight": 1000, "via": "VLLM_A"}]})),
        ("partner-group", json!({"auth": {"groups": ["partner:acme.corp", "desk-infrastructure-team-members"]}})),
    ];
    for (name, route) in cases {
        let routes = one_route(name, route);
        let ev = render(&routes, false).unwrap_or_else(|e| panic!("{name}: Terraform refuses a good route: {e}"));
        let json = js(&ev.outputs["route_json"]);
        check_route_json(json[name].as_str().unwrap(), name);
    }
}

#[test]
fn routes_the_core_refuses_are_refused_by_the_module_validation() {
    let long = "a".repeat(64);
    let ep = |e: serde_json::Value| json!({"endpoints": [e]});
    // (what, route name, route, a fragment of the error message of the rule that must refuse it)
    let cases: Vec<(&str, &str, serde_json::Value, &str)> = vec![
        ("bad name", "Bad_Name", json!({}), "Route names"),
        ("reserved e", "e", json!({}), "Route names"),
        ("reserved _ prefix", "_x", json!({}), "Route names"),
        ("leading dash", "-a", json!({}), "Route names"),
        ("64 characters", long.as_str(), json!({}), "Route names"),
        ("zero weight", "w0", ep(json!({"id": "a", "url": "http://10.0.0.1:8000", "weight": 0})), "weights"),
        ("weight over 1000", "w1001", ep(json!({"id": "a", "url": "http://10.0.0.1:8000", "weight": 1001})), "weights"),
        ("gateway's own key", "own", json!({"upstream_api_key_secret": "GATEWAY_SIGNING_KEYS"}), "upstream_api_key_secret must NAME"),
        ("the Lambda role's credentials", "aws", json!({"upstream_api_key_secret": "AWS_SECRET_ACCESS_KEY"}), "upstream_api_key_secret must NAME"),
        ("key value instead of name", "val", json!({"upstream_api_key_secret": "sk-live-0123456789abcdef"}), "upstream_api_key_secret must NAME"),
        ("ftp url", "ftp", ep(json!({"id": "a", "url": "ftp://10.0.0.1/"})), "Endpoint urls"),
        ("credentials in url", "creds", ep(json!({"id": "a", "url": "http://user:pw@10.0.0.1:8000"})), "Endpoint urls"),
        ("query in url", "query", ep(json!({"id": "a", "url": "http://10.0.0.1:8000/v1?api_key=abc"})), "Endpoint urls"),
        ("no host in url", "nohost", ep(json!({"id": "a", "url": "http:///v1"})), "Endpoint urls"),
        ("bad endpoint id", "epid", ep(json!({"id": "a b", "url": "http://10.0.0.1:8000"})), "Endpoint ids must match"),
        (
            "duplicate endpoint ids",
            "dup",
            json!({"endpoints": [{"id": "a", "url": "http://10.0.0.1:8000"}, {"id": "a", "url": "http://10.0.0.2:8000"}]}),
            "unique within a route",
        ),
        ("uppercase host", "host", json!({"host": "Llama.example.com"}), "lowercase DNS name"),
        ("bad via", "via", ep(json!({"id": "a", "url": "http://10.0.0.1:8000", "via": "vllm-a"})), "`via`"),
        ("bad group", "group", json!({"auth": {"groups": ["ml team"]}}), "Groups must match"),
        ("bad cookie", "cookie", json!({"affinity": {"cookie": "a;b"}}), "affinity cookie"),
        ("bad fallback", "fb", json!({"affinity": {"fallback": "sometimes"}}), "affinity.fallback"),
        ("factor under one", "bf", json!({"affinity": {"balance_factor": 0.5}}), "affinity.balance_factor"),
        ("zero connect timeout", "t0", json!({"timeouts": {"connect_ms": 0}}), "timeouts.connect_ms"),
        ("response timeout over an hour", "t1", json!({"timeouts": {"response_ms": 3600001}}), "timeouts.connect_ms"),
        ("idle timeout under a second", "i0", json!({"timeouts": {"idle_ms": 999}}), "timeouts.idle_ms"),
        ("zero rate limit", "r0", json!({"rate_limit_rpm": 0}), "rate_limit_rpm"),
        ("fractional rate limit", "r1", json!({"rate_limit_rpm": 1.5}), "rate_limit_rpm"),
        ("zero body limit", "b0", json!({"max_body_bytes": 0}), "max_body_bytes"),
        ("body limit over 1 GiB", "b1", json!({"max_body_bytes": 1073741825}), "max_body_bytes"),
    ];
    let mut checked = 0;
    for (what, name, route, rule) in cases {
        let routes = one_route(name, route);
        match render(&routes, false) {
            Err(Failure::Validation(v)) => {
                assert!(v.iter().all(|(_, var, _)| var == "routes"), "{what}: {v:?}");
                assert!(v.iter().any(|(_, _, msg)| msg.contains(rule)), "{what}: not refused by the {rule:?} rule but {v:?}");
            }
            Err(Failure::Error(e)) => panic!("{what}: a validation did not evaluate: {e}"),
            Ok(_) => panic!("{what}: Terraform accepts a route the core refuses"),
        }
        // The same input, rendered without validation, is refused by the core.
        let ev = render(&routes, true).unwrap_or_else(|e| panic!("{what}: {e}"));
        let text = js(&ev.outputs["route_json"])[name].as_str().unwrap().to_string();
        // Refused when decoded (a fractional count) or when validated.
        let refused = serde_json::from_str::<Route>(&text).map_or(true, |route| route.validate().is_err());
        assert!(refused, "{what}: the core accepts {text}");
        checked += 1;
    }
    assert_eq!(checked, 29);
}

#[test]
fn the_module_also_refuses_what_only_terraform_can_see() {
    let cases = vec![
        // Key-looking values anywhere in a route (the core cannot tell a group from a key).
        ("api key as a group", json!({"a": {"auth": {"groups": ["sk-proj-abcdefghijklmnopqrstuvwxyz012345"]}}})),
        ("hugging face token in a url path", json!({"a": {"endpoints": [{"id": "x", "url": "http://10.0.0.1:8000/hf_abcdefghijklmnopqrstuvwxyz"}]}})),
        ("jwt in a header name", json!({"a": {"affinity": {"header": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0"}}})),
        // Two routes claiming one host.
        ("duplicate host", json!({"a": {"host": "h.example.com"}, "b": {"host": "h.example.com"}})),
        // `name` disagreeing with its key.
        ("name differs from key", json!({"a": {"name": "b"}})),
    ];
    for (what, routes) in cases {
        assert!(matches!(render(&routes, false), Err(Failure::Validation(_))), "{what} was not refused");
    }
    // Misspelt attributes are caught by the strict conversion used here (Terraform would drop them).
    let typo = json!({"a": {"endpoints": [{"id": "x", "url": "http://10.0.0.1:8000", "wieght": 5}]}});
    assert!(matches!(render(&typo, false), Err(Failure::Error(e)) if e.contains("wieght")));
}
