//! The one check of `infra/` that needs Rust: the routes module's validations and store entries
//! against `gateway-core` itself.
//!
//! Everything else is checked with HashiCorp's own tools (see `scripts/check-terraform.sh`):
//! `terraform fmt`/`validate`/`test` (each module's `tests/*.tftest.hcl`, mock providers), every
//! argument against the providers' schemas (`infra/check/schema/check.mjs`), and the module
//! READMEs' generated tables. What remains here is a small Terraform evaluator for the one module
//! without resources, `modules/routes`, so that `cargo test` can hand what it renders, and what
//! it refuses, to `gateway_core::route::Route`:
//!
//! - the Terraform functions the routes module calls ([`context`]), `jsonencode` among them;
//! - `can(f(...))`, which Terraform evaluates lazily: it is rewritten to a call that runs `f` and
//!   answers whether it succeeded ([`rewrite_can`]). Only `can` around a function call is
//!   supported, and the call's arguments must themselves evaluate;
//! - input variable type conversion, with `optional()` attributes and their defaults
//!   ([`convert`]), then the variable's `validation` conditions;
//! - a module's `locals` and `output`s ([`evaluate_module`]); no resources, data sources or child
//!   modules.

use hcl::eval::{Context, Evaluate, FuncArgs, FuncDef, ParamType};
use hcl::expr::{Expression, FuncCall, ObjectKey, Operation, TraversalOperator};
use hcl::{Block, Body, Map, Number, Value};
use std::fmt;
use std::path::{Path, PathBuf};

// ---------------------------------------------------------------------------------------------
// Files and modules
// ---------------------------------------------------------------------------------------------

/// Every `.tf` file under `root`, sorted, skipping `.terraform` directories.
pub fn tf_files(root: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            if path.is_dir() {
                if name != ".terraform" && name != "target" {
                    walk(&path, out);
                }
            } else if path.extension().is_some_and(|e| e == "tf") {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, &mut out);
    out.sort();
    out
}

/// Parses one file; the error names the file.
pub fn parse_file(path: &Path) -> Result<Body, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    hcl::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// The `.tf` files of one directory (a Terraform module), parsed.
#[derive(Debug, Clone)]
pub struct Module {
    /// The module's directory.
    pub dir: PathBuf,
    /// Each file with its parsed body.
    pub files: Vec<(PathBuf, Body)>,
}

impl Module {
    /// Loads the module in `dir` (its `.tf` files, not those of subdirectories).
    pub fn load(dir: &Path) -> Result<Module, String> {
        let mut files = Vec::new();
        let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut paths: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "tf"))
            .collect();
        paths.sort();
        for path in paths {
            let body = parse_file(&path)?;
            files.push((path, body));
        }
        if files.is_empty() {
            return Err(format!("{}: no .tf files", dir.display()));
        }
        Ok(Module { dir: dir.to_path_buf(), files })
    }

    /// Top-level blocks of one kind (`variable`, `resource`, …) across the module's files.
    pub fn blocks<'a>(&'a self, ident: &'a str) -> impl Iterator<Item = &'a Block> + 'a {
        self.files
            .iter()
            .flat_map(|(_, body)| body.blocks())
            .filter(move |b| b.identifier() == ident)
    }

    /// The top-level block of kind `ident` with exactly these labels.
    pub fn block<'a>(&'a self, ident: &'a str, labels: &[&str]) -> Option<&'a Block> {
        self.blocks(ident).find(|b| {
            b.labels().len() == labels.len() && b.labels().iter().zip(labels).all(|(l, w)| l.as_str() == *w)
        })
    }

}

/// The expression of attribute `key` directly in `body`.
pub fn attr<'a>(body: &'a Body, key: &str) -> Option<&'a Expression> {
    body.attributes().find(|a| a.key() == key).map(|a| a.expr())
}

/// Nested blocks of kind `ident` directly in `body`.
pub fn nested<'a>(body: &'a Body, ident: &'a str) -> impl Iterator<Item = &'a Block> + 'a {
    body.blocks().filter(move |b| b.identifier() == ident)
}

/// Label `i` of a block, or "".
pub fn label(block: &Block, i: usize) -> &str {
    block.labels().get(i).map(|l| l.as_str()).unwrap_or("")
}

// ---------------------------------------------------------------------------------------------
// Terraform functions
// ---------------------------------------------------------------------------------------------

type Builtin = fn(&[Value]) -> Result<Value, String>;

/// Terraform functions the routes module (and the examples' route locals) use, by name.
const BUILTINS: &[(&str, Builtin)] = &[
    ("alltrue", f_alltrue),
    ("contains", f_contains),
    ("distinct", f_distinct),
    ("flatten", f_flatten),
    ("floor", f_floor),
    ("jsonencode", f_jsonencode),
    ("keys", f_keys),
    ("length", f_length),
    ("merge", f_merge),
    ("regex", f_regex),
    ("startswith", f_startswith),
    ("tostring", f_tostring),
];

/// Calls the Terraform function `name` on already evaluated arguments.
pub fn call(name: &str, args: &[Value]) -> Result<Value, String> {
    match BUILTINS.iter().find(|(n, _)| *n == name) {
        Some((_, f)) => f(args),
        None => Err(format!("function {name}() is not implemented by the test evaluator")),
    }
}

fn arity(name: &str, args: &[Value], n: usize) -> Result<(), String> {
    if args.len() == n {
        Ok(())
    } else {
        Err(format!("{name}() takes {n} argument(s), got {}", args.len()))
    }
}

fn string<'a>(name: &str, v: &'a Value) -> Result<&'a str, String> {
    v.as_str().ok_or_else(|| format!("{name}(): expected a string, got {v}"))
}

fn array<'a>(name: &str, v: &'a Value) -> Result<&'a Vec<Value>, String> {
    v.as_array().ok_or_else(|| format!("{name}(): expected a list, got {v}"))
}

fn object<'a>(name: &str, v: &'a Value) -> Result<&'a Map<String, Value>, String> {
    v.as_object().ok_or_else(|| format!("{name}(): expected an object or map, got {v}"))
}


fn f_alltrue(args: &[Value]) -> Result<Value, String> {
    arity("alltrue", args, 1)?;
    let mut all = true;
    for v in array("alltrue", &args[0])? {
        match v {
            Value::Bool(b) => all &= *b,
            other => return Err(format!("alltrue(): element {other} is not a bool")),
        }
    }
    Ok(Value::Bool(all))
}






fn f_contains(args: &[Value]) -> Result<Value, String> {
    arity("contains", args, 2)?;
    Ok(Value::Bool(array("contains", &args[0])?.contains(&args[1])))
}

fn f_flatten(args: &[Value]) -> Result<Value, String> {
    arity("flatten", args, 1)?;
    fn walk(v: &Value, out: &mut Vec<Value>) {
        match v {
            Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            other => out.push(other.clone()),
        }
    }
    let mut out = Vec::new();
    for v in array("flatten", &args[0])? {
        walk(v, &mut out);
    }
    Ok(Value::Array(out))
}

fn f_distinct(args: &[Value]) -> Result<Value, String> {
    arity("distinct", args, 1)?;
    let mut out: Vec<Value> = Vec::new();
    for v in array("distinct", &args[0])? {
        if !out.contains(v) {
            out.push(v.clone());
        }
    }
    Ok(Value::Array(out))
}



fn f_floor(args: &[Value]) -> Result<Value, String> {
    arity("floor", args, 1)?;
    let n = args[0].as_f64().ok_or("floor(): expected a number")?;
    let f = n.floor();
    // Whole results as integers, so that `floor(x) == x` compares like Terraform's numbers.
    if f.abs() < 9.0e15 {
        Ok(Value::Number(Number::from(f as i64)))
    } else {
        Number::from_f64(f).map(Value::Number).ok_or_else(|| "floor(): not finite".into())
    }
}


fn f_jsonencode(args: &[Value]) -> Result<Value, String> {
    arity("jsonencode", args, 1)?;
    serde_json::to_string(&args[0]).map(Value::String).map_err(|e| format!("jsonencode(): {e}"))
}

fn f_keys(args: &[Value]) -> Result<Value, String> {
    arity("keys", args, 1)?;
    let mut k: Vec<&String> = object("keys", &args[0])?.keys().collect();
    k.sort();
    Ok(Value::Array(k.into_iter().map(|s| Value::String(s.clone())).collect()))
}


fn f_length(args: &[Value]) -> Result<Value, String> {
    arity("length", args, 1)?;
    let n = match &args[0] {
        Value::String(s) => s.chars().count(),
        Value::Array(a) => a.len(),
        Value::Object(o) => o.len(),
        other => return Err(format!("length(): cannot take the length of {other}")),
    };
    Ok(Value::from(n as u64))
}




fn f_merge(args: &[Value]) -> Result<Value, String> {
    let mut out = Map::new();
    for a in args {
        if a.is_null() {
            continue;
        }
        for (k, v) in object("merge", a)? {
            out.insert(k.clone(), v.clone());
        }
    }
    Ok(Value::Object(out))
}

/// Terraform's `regex`: the match; a list of the groups when it has unnamed groups; an object
/// when it has named ones. No match is an error (which is what `can(regex(...))` relies on).
fn f_regex(args: &[Value]) -> Result<Value, String> {
    arity("regex", args, 2)?;
    let re = regex::Regex::new(string("regex", &args[0])?).map_err(|e| format!("regex(): {e}"))?;
    let s = string("regex", &args[1])?;
    let caps = re.captures(s).ok_or_else(|| "regex(): pattern did not match".to_string())?;
    let names: Vec<Option<&str>> = re.capture_names().skip(1).collect();
    let text = |i: usize| caps.get(i).map_or(Value::Null, |m| Value::String(m.as_str().to_string()));
    if names.is_empty() {
        Ok(text(0))
    } else if names.iter().all(Option::is_some) {
        Ok(Value::Object(names.iter().enumerate().map(|(i, n)| (n.unwrap().to_string(), text(i + 1))).collect()))
    } else {
        Ok(Value::Array((1..=names.len()).map(text).collect()))
    }
}



fn f_startswith(args: &[Value]) -> Result<Value, String> {
    arity("startswith", args, 2)?;
    Ok(Value::Bool(string("startswith", &args[0])?.starts_with(string("startswith", &args[1])?)))
}


fn f_tostring(args: &[Value]) -> Result<Value, String> {
    arity("tostring", args, 1)?;
    match &args[0] {
        Value::String(s) => Ok(Value::String(s.clone())),
        Value::Number(n) => Ok(Value::String(n.to_string())),
        Value::Bool(b) => Ok(Value::String(b.to_string())),
        Value::Null => Ok(Value::Null),
        other => Err(format!("tostring(): cannot convert {other}")),
    }
}

fn parse_number(s: &str) -> Option<Number> {
    if let Ok(i) = s.parse::<i64>() {
        return Some(Number::from(i));
    }
    s.parse::<f64>().ok().and_then(Number::from_f64)
}

/// `can(f(args))` after [`rewrite_can`]: `__can_call("f", args...)`.
fn can_call(args: &[Value]) -> Result<Value, String> {
    let name = args.first().and_then(Value::as_str).ok_or("__can_call(): missing function name")?;
    Ok(Value::Bool(call(name, &args[1..]).is_ok()))
}

fn can_unsupported(_: &[Value]) -> Result<Value, String> {
    Err("can() is only supported around a single function call, e.g. can(regex(p, s))".into())
}

macro_rules! hcl_funcs {
    ($($name:literal => $wrapper:ident),* $(,)?) => {
        $(fn $wrapper(args: FuncArgs) -> Result<Value, String> { call($name, &args) })*
        const DECLARED: &[(&str, fn(FuncArgs) -> Result<Value, String>)] = &[$(($name, $wrapper)),*];
    };
}

hcl_funcs! {
    "alltrue" => w_alltrue, "contains" => w_contains, "distinct" => w_distinct, "flatten" => w_flatten, "floor" => w_floor,
    "jsonencode" => w_jsonencode, "keys" => w_keys, "length" => w_length, "merge" => w_merge,
    "regex" => w_regex, "startswith" => w_startswith, "tostring" => w_tostring,
}

fn w_can_call(args: FuncArgs) -> Result<Value, String> {
    can_call(&args)
}

fn w_can(args: FuncArgs) -> Result<Value, String> {
    can_unsupported(&args)
}

/// A context with every implemented Terraform function and no variables.
pub fn context() -> Context<'static> {
    let mut ctx = Context::new();
    let variadic = || FuncDef::builder().variadic_param(ParamType::Any);
    for (name, f) in DECLARED {
        ctx.declare_func(*name, variadic().build(*f));
    }
    ctx.declare_func("__can_call", variadic().build(w_can_call));
    ctx.declare_func("can", variadic().build(w_can));
    ctx
}

/// Rewrites every `can(f(args))` in `expr` into `__can_call("f", args)`, which Terraform's lazy
/// `can` amounts to when `args` evaluate. Other uses of `can` are left, and fail when evaluated.
pub fn rewrite_can(expr: &mut Expression) {
    match expr {
        Expression::Array(items) => items.iter_mut().for_each(rewrite_can),
        Expression::Object(obj) => {
            // Keys are rewritten in place via a rebuilt object, values directly.
            let old = std::mem::take(obj);
            for (mut k, mut v) in old {
                if let ObjectKey::Expression(e) = &mut k {
                    rewrite_can(e);
                }
                rewrite_can(&mut v);
                obj.insert(k, v);
            }
        }
        Expression::Traversal(t) => {
            rewrite_can(&mut t.expr);
            for op in &mut t.operators {
                if let TraversalOperator::Index(e) = op {
                    rewrite_can(e);
                }
            }
        }
        Expression::FuncCall(fc) => {
            fc.args.iter_mut().for_each(rewrite_can);
            let is_can = !fc.name.is_namespaced() && fc.name.name.as_str() == "can" && fc.args.len() == 1;
            if is_can {
                if let Expression::FuncCall(inner) = &fc.args[0] {
                    if !inner.name.is_namespaced() && !inner.expand_final {
                        let mut rewritten = FuncCall::new("__can_call");
                        rewritten.args.push(Expression::String(inner.name.name.as_str().to_string()));
                        rewritten.args.extend(inner.args.iter().cloned());
                        **fc = rewritten;
                    }
                }
            }
        }
        Expression::Parenthesis(e) => rewrite_can(e),
        Expression::Conditional(c) => {
            rewrite_can(&mut c.cond_expr);
            rewrite_can(&mut c.true_expr);
            rewrite_can(&mut c.false_expr);
        }
        Expression::Operation(op) => match &mut **op {
            Operation::Unary(u) => rewrite_can(&mut u.expr),
            Operation::Binary(b) => {
                rewrite_can(&mut b.lhs_expr);
                rewrite_can(&mut b.rhs_expr);
            }
        },
        Expression::ForExpr(f) => {
            rewrite_can(&mut f.collection_expr);
            if let Some(k) = &mut f.key_expr {
                rewrite_can(k);
            }
            rewrite_can(&mut f.value_expr);
            if let Some(c) = &mut f.cond_expr {
                rewrite_can(c);
            }
        }
        _ => {}
    }
}

/// Evaluates `expr` (after [`rewrite_can`]) in `ctx`.
pub fn eval(expr: &Expression, ctx: &Context) -> Result<Value, String> {
    let mut e = expr.clone();
    rewrite_can(&mut e);
    e.evaluate(ctx).map_err(|err| err.to_string())
}

/// Evaluates an expression that needs no variables (defaults, literals).
pub fn eval_const(expr: &Expression) -> Result<Value, String> {
    eval(expr, &context())
}

// ---------------------------------------------------------------------------------------------
// Type constraints
// ---------------------------------------------------------------------------------------------

/// Converts `value` to the Terraform type constraint `ty` as Terraform converts an input
/// variable: primitives convert between string, number and bool where Terraform allows it;
/// object attributes missing or null take their `optional()` default (nested defaults applied),
/// a missing required attribute is an error. Terraform drops attributes the type does not
/// declare; with `strict` they are an error instead, to catch misspelt attributes.
pub fn convert(value: &Value, ty: &Expression, strict: bool) -> Result<Value, String> {
    convert_at(value, ty, strict, "value")
}

fn type_name(ty: &Expression) -> Option<&str> {
    match ty {
        Expression::Variable(v) => Some(v.as_str()),
        Expression::FuncCall(fc) if !fc.name.is_namespaced() => Some(fc.name.name.as_str()),
        _ => None,
    }
}

fn convert_at(value: &Value, ty: &Expression, strict: bool, at: &str) -> Result<Value, String> {
    let name = type_name(ty).ok_or_else(|| format!("{at}: unsupported type expression {ty}"))?;
    if value.is_null() {
        return Ok(Value::Null);
    }
    let args: &[Expression] = match ty {
        Expression::FuncCall(fc) => &fc.args,
        _ => &[],
    };
    match (name, value) {
        ("any", v) => Ok(v.clone()),
        ("string", Value::String(s)) => Ok(Value::String(s.clone())),
        ("string", Value::Number(n)) => Ok(Value::String(n.to_string())),
        ("string", Value::Bool(b)) => Ok(Value::String(b.to_string())),
        ("number", Value::Number(n)) => Ok(Value::Number(*n)),
        ("number", Value::String(s)) => {
            parse_number(s).map(Value::Number).ok_or_else(|| format!("{at}: {s:?} is not a number"))
        }
        ("bool", Value::Bool(b)) => Ok(Value::Bool(*b)),
        ("bool", Value::String(s)) if s == "true" || s == "false" => Ok(Value::Bool(s == "true")),
        ("list" | "set", Value::Array(items)) => {
            let elem = args.first().ok_or_else(|| format!("{at}: {name}() needs an element type"))?;
            let mut out = Vec::with_capacity(items.len());
            for (i, v) in items.iter().enumerate() {
                let c = convert_at(v, elem, strict, &format!("{at}[{i}]"))?;
                if name == "list" || !out.contains(&c) {
                    out.push(c);
                }
            }
            Ok(Value::Array(out))
        }
        ("map", Value::Object(items)) => {
            let elem = args.first().ok_or_else(|| format!("{at}: map() needs an element type"))?;
            let mut out = Map::new();
            for (k, v) in items {
                out.insert(k.clone(), convert_at(v, elem, strict, &format!("{at}[{k:?}]"))?);
            }
            Ok(Value::Object(out))
        }
        ("object", Value::Object(items)) => {
            let Some(Expression::Object(attrs)) = args.first() else {
                return Err(format!("{at}: object() needs an attribute map"));
            };
            let mut out = Map::new();
            let mut declared = Vec::new();
            for (key, attr_ty) in attrs {
                let key = match key {
                    ObjectKey::Identifier(i) => i.as_str().to_string(),
                    ObjectKey::Expression(Expression::String(s)) => s.clone(),
                    other => return Err(format!("{at}: unsupported attribute name {other:?}")),
                };
                let here = format!("{at}.{key}");
                let (inner_ty, optional, default) = match attr_ty {
                    Expression::FuncCall(fc) if fc.name.name.as_str() == "optional" => {
                        let inner = fc.args.first().ok_or_else(|| format!("{here}: optional() needs a type"))?;
                        let default = fc.args.get(1).map(eval_const).transpose()?;
                        (inner, true, default)
                    }
                    other => (other, false, None),
                };
                let given = items.get(&key).filter(|v| !v.is_null());
                let v = match (given, optional, default) {
                    (Some(v), _, _) => convert_at(v, inner_ty, strict, &here)?,
                    (None, true, Some(d)) => convert_at(&d, inner_ty, strict, &here)?,
                    (None, true, None) => Value::Null,
                    (None, false, _) if items.contains_key(&key) => Value::Null,
                    (None, false, _) => return Err(format!("{here}: attribute is required")),
                };
                declared.push(key.clone());
                out.insert(key, v);
            }
            if strict {
                if let Some(extra) = items.keys().find(|k| !declared.contains(k)) {
                    return Err(format!("{at}: unexpected attribute {extra:?}"));
                }
            }
            Ok(Value::Object(out))
        }
        (_, v) => Err(format!("{at}: cannot convert {v} to {name}")),
    }
}

// ---------------------------------------------------------------------------------------------
// Module evaluation
// ---------------------------------------------------------------------------------------------

/// What evaluating a module gave: its variables after conversion, its locals and its outputs.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// The module's directory.
    pub dir: PathBuf,
    /// Input variables after type conversion and defaults.
    pub vars: Map<String, Value>,
    /// Locals that evaluated.
    pub locals: Map<String, Value>,
    /// The module's outputs that evaluated.
    pub outputs: Map<String, Value>,
}

/// Why a module could not be evaluated.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// Variable validations whose condition was false: `(module dir, variable, error_message)`.
    Validation(Vec<(String, String, String)>),
    /// Anything else: a missing or unconvertible input, a condition that did not evaluate, …
    Error(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Validation(v) => {
                for (dir, var, msg) in v {
                    writeln!(f, "{dir}: var.{var}: {msg}")?;
                }
                Ok(())
            }
            Failure::Error(e) => f.write_str(e),
        }
    }
}

/// How to evaluate.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Refuse object attributes a variable's type does not declare (Terraform drops them).
    pub strict_types: bool,
    /// Do not run `validation` blocks (to see what a refused input would render to).
    pub skip_validation: bool,
}

impl Evaluation {
    /// A context with the functions and `var`, `local` and `path`.
    pub fn context(&self) -> Context<'static> {
        let mut ctx = context();
        ctx.declare_var("var", Value::Object(self.vars.clone()));
        ctx.declare_var("local", Value::Object(self.locals.clone()));
        let dir = Value::String(self.dir.display().to_string());
        let path: Map<String, Value> =
            ["module", "root", "cwd"].iter().map(|k| (k.to_string(), dir.clone())).collect();
        ctx.declare_var("path", Value::Object(path));
        ctx
    }

    /// Evaluates an expression of this module.
    pub fn eval(&self, expr: &Expression) -> Result<Value, String> {
        eval(expr, &self.context())
    }
}

/// Evaluates the module in `dir` (one without resources, such as `modules/routes`) with these
/// inputs: variables are converted and validated, then locals are evaluated until nothing more
/// resolves, then outputs.
pub fn evaluate_module(dir: &Path, inputs: &Map<String, Value>, opts: Options) -> Result<Evaluation, Failure> {
    let module = Module::load(dir).map_err(Failure::Error)?;
    let err = |m: String| Failure::Error(format!("{}: {m}", dir.display()));
    if let Some(b) = module.blocks("resource").chain(module.blocks("data")).chain(module.blocks("module")).next() {
        return Err(err(format!("{} {}: only modules without resources, data sources or child modules are evaluated", b.identifier(), label(b, 0))));
    }

    // Variables: conversion, then validation.
    let mut vars = Map::new();
    for v in module.blocks("variable") {
        let name = label(v, 0);
        let ty = attr(v.body(), "type").cloned().unwrap_or_else(|| Expression::Variable(hcl::expr::Variable::unchecked("any")));
        let raw = match (inputs.get(name), attr(v.body(), "default")) {
            (Some(v), _) => v.clone(),
            (None, Some(d)) => eval_const(d).map_err(|e| err(format!("var.{name} default: {e}")))?,
            (None, None) => return Err(err(format!("var.{name} is required"))),
        };
        let value = convert_at(&raw, &ty, opts.strict_types, &format!("var.{name}")).map_err(err)?;
        vars.insert(name.to_string(), value);
    }
    for k in inputs.keys() {
        if module.block("variable", &[k]).is_none() {
            return Err(err(format!("no variable {k:?} in the module")));
        }
    }
    let mut ev = Evaluation { dir: dir.to_path_buf(), vars, locals: Map::new(), outputs: Map::new() };
    if !opts.skip_validation {
        let mut failed = Vec::new();
        for v in module.blocks("variable") {
            for val in nested(v.body(), "validation") {
                let cond = attr(val.body(), "condition").ok_or_else(|| err("validation without condition".into()))?;
                match ev.eval(cond) {
                    Ok(Value::Bool(true)) => {}
                    Ok(Value::Bool(false)) => {
                        let msg = attr(val.body(), "error_message").and_then(|m| eval_const(m).ok());
                        let msg = msg.and_then(|m| m.as_str().map(str::to_string)).unwrap_or_default();
                        failed.push((dir.display().to_string(), label(v, 0).to_string(), msg));
                    }
                    Ok(other) => return Err(err(format!("var.{} validation gave {other}, not a bool", label(v, 0)))),
                    Err(e) => return Err(err(format!("var.{} validation did not evaluate: {e}", label(v, 0)))),
                }
            }
        }
        if !failed.is_empty() {
            return Err(Failure::Validation(failed));
        }
    }

    // Locals, until nothing more resolves; then every local and output must have evaluated.
    let locals: Vec<(String, Expression)> = module
        .blocks("locals")
        .flat_map(|b| b.body().attributes().map(|a| (a.key().to_string(), a.expr().clone())))
        .collect();
    loop {
        let mut progress = false;
        for (name, expr) in &locals {
            if ev.locals.contains_key(name) {
                continue;
            }
            if let Ok(v) = ev.eval(expr) {
                ev.locals.insert(name.clone(), v);
                progress = true;
            }
        }
        if !progress {
            break;
        }
    }
    for (name, expr) in &locals {
        if !ev.locals.contains_key(name) {
            return Err(err(format!("local.{name} did not evaluate: {}", ev.eval(expr).err().unwrap_or_default())));
        }
    }
    for o in module.blocks("output") {
        let e = attr(o.body(), "value").ok_or_else(|| err(format!("output {} has no value", label(o, 0))))?;
        let v = ev.eval(e).map_err(|e| err(format!("output {}: {e}", label(o, 0))))?;
        ev.outputs.insert(label(o, 0).to_string(), v);
    }
    Ok(ev)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expr(src: &str) -> Expression {
        let body = hcl::parse(&format!("x = {src}\n")).unwrap();
        attr(&body, "x").unwrap().clone()
    }

    fn ev(src: &str) -> Result<Value, String> {
        eval(&expr(src), &context())
    }

    #[test]
    fn can_answers_whether_the_call_succeeds() {
        assert_eq!(ev(r#"can(regex("^a+$", "aaa"))"#), Ok(Value::Bool(true)));
        assert_eq!(ev(r#"can(regex("^a+$", "b"))"#), Ok(Value::Bool(false)));
        assert_eq!(ev(r#"can(regex("(", "a"))"#), Ok(Value::Bool(false)), "an invalid pattern");
        assert_eq!(ev(r#"[for s in ["a", "B"] : can(regex("^[a-z]$", s))]"#), Ok(hcl::value!([true, false])));
        assert!(ev("can(1)").is_err(), "can() around anything but a call is not supported");
        assert!(ev(r#"regex("^a$", "b")"#).is_err(), "regex without can fails on no match");
    }

    #[test]
    fn regex_returns_what_terraform_returns() {
        assert_eq!(ev(r#"regex("[0-9]+", "ab12cd")"#), Ok(Value::from("12")));
        assert_eq!(ev(r#"regex("(a)(b)", "ab")"#), Ok(hcl::value!(["a", "b"])));
        assert_eq!(ev(r#"regex("(?P<x>a)", "a")"#), Ok(hcl::value!({ x = "a" })));
    }

    #[test]
    fn functions_and_operators() {
        assert_eq!(ev(r#"jsonencode({ a = 1, b = [true, null], c = "x" })"#), Ok(Value::from(r#"{"a":1,"b":[true,null],"c":"x"}"#)));
        assert_eq!(ev(r#"merge({ a = 1 }, null, { a = 2, b = 3 })"#), Ok(hcl::value!({ a = 2, b = 3 })));
        assert_eq!(ev("alltrue([])"), Ok(Value::Bool(true)));
        assert_eq!(ev("alltrue([true, false])"), Ok(Value::Bool(false)));
        assert!(ev(r#"alltrue(["yes"])"#).is_err());
        assert_eq!(ev("floor(2.5) == 2"), Ok(Value::Bool(true)));
        assert_eq!(ev("floor(3) == 3"), Ok(Value::Bool(true)));
        assert_eq!(ev(r#"length("héllo")"#), Ok(Value::from(5u64)));
        assert_eq!(ev(r#"distinct(["a", "b", "a"])"#), Ok(hcl::value!(["a", "b"])));
        assert_eq!(ev(r#"startswith("GATEWAY_X", "GATEWAY_")"#), Ok(Value::Bool(true)));
        assert_eq!(ev(r#"null == null ? "lazy" : length(null)"#), Ok(Value::from("lazy")));
        assert_eq!(ev(r#"{ for k, v in { a = null, b = 1 } : k => v if v != null }"#), Ok(hcl::value!({ b = 1 })));
        assert_eq!(ev("merge([{ a = 1 }, { b = 2 }]...)"), Ok(hcl::value!({ a = 1, b = 2 })));
        assert!(ev("nosuchfunction(1)").is_err());
    }

    #[test]
    fn conversion_fills_optional_defaults_like_terraform() {
        let ty = expr(
            r#"map(object({
                a = string
                b = optional(number, 7)
                c = optional(object({ d = optional(bool, true), e = optional(list(string), []) }), {})
                f = optional(string)
            }))"#,
        );
        let got = convert(&hcl::value!({ k = { a = 1 } }), &ty, true).unwrap();
        assert_eq!(got, hcl::value!({ k = { a = "1", b = 7, c = { d = true, e = [] }, f = null } }));
        // An explicit null takes the default too.
        let got = convert(&hcl::value!({ k = { a = "x", b = null } }), &ty, true).unwrap();
        assert_eq!(got.as_object().unwrap()["k"].as_object().unwrap()["b"], Value::from(7));
        // A missing required attribute, a wrong type, an undeclared attribute (strict only).
        assert!(convert(&hcl::value!({ k = {} }), &ty, true).unwrap_err().contains("k\"].a: attribute is required"));
        assert!(convert(&hcl::value!({ k = { a = "x", b = "many" } }), &ty, true).is_err());
        assert!(convert(&hcl::value!({ k = { a = "x", z = 1 } }), &ty, true).unwrap_err().contains("\"z\""));
        assert!(convert(&hcl::value!({ k = { a = "x", z = 1 } }), &ty, false).is_ok());
    }
}
