//! Model routing: one OpenAI base URL (`https://gateway/v1`) in front of every route.
//!
//! A route lists the model names it serves (`models`, unique across routes). Under `/v1/…`
//! the gateway reads `model` from the JSON body (at most [`PEEK_BYTES`] buffered before the
//! request is dispatched, the rest streamed on) and sends the request to the route serving
//! it, with everything a path route applies: authentication, RBAC, rate limits, affinity,
//! metering. `GET /v1/models` answers from the routes' declared models, merged over every
//! route the caller may use, without an upstream call. An unknown model and a model the
//! caller may not use get the same 404 `model_not_found`.

use crate::error::{Error, Result};
use serde_json::{json, Value};

/// How much of a body is read, at most, to find its `model`.
pub const PEEK_BYTES: usize = 64 * 1024;

/// What a request under `/v1/` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelRequest {
    /// `GET /v1/models`: the caller's model list.
    List,
    /// `GET /v1/models/{id}`: one model, answered by the gateway.
    Get(String),
    /// Anything else: routed by the body's `model`.
    ByBody,
}

/// Classifies a `/v1/…` request by method and normalised path (`v1/models`, …).
pub fn classify(method: &http::Method, rest: &str) -> ModelRequest {
    let reads = *method == http::Method::GET || *method == http::Method::HEAD;
    match rest.trim_end_matches('/').strip_prefix("v1/models") {
        Some("") if reads => ModelRequest::List,
        Some(id) if reads && id.starts_with('/') && id.len() > 1 => {
            // The path is re-encoded; model ids are visible ASCII, so decoding is exact.
            let decoded = percent_encoding::percent_decode_str(&id[1..]).decode_utf8_lossy().into_owned();
            ModelRequest::Get(decoded)
        }
        _ => ModelRequest::ByBody,
    }
}

fn missing() -> Error {
    Error::bad_request("model", "is required: a JSON body with a `model` string")
}

/// The `model` of a JSON request body, from its first bytes: `peek` is the start of the body
/// (all of it when `complete`). The top-level object is scanned without parsing the rest, so
/// a large prompt costs nothing here. Refused with a 400 naming `model`: a body that is not a
/// JSON object, a `model` that is not a string, a second top-level `model` (routing and the
/// server must not disagree about which one counts), and a `model` not within the peek.
pub fn model_of(peek: &[u8], complete: bool) -> Result<String> {
    let mut s = Scanner { b: peek, i: 0 };
    let cut_off = || {
        if complete {
            Error::bad_request("model", "the body is not valid JSON")
        } else {
            Error::bad_request("model", format!("must be within the first {} KiB of the body", PEEK_BYTES / 1024))
        }
    };
    s.ws();
    match s.next() {
        Some(b'{') => {}
        None if !complete => return Err(cut_off()),
        _ => return Err(missing()),
    }
    let mut found: Option<String> = None;
    loop {
        s.ws();
        match s.peek() {
            Some(b'}') => break,
            Some(b'"') => {}
            None => return found.ok_or_else(cut_off),
            _ => return Err(Error::bad_request("model", "the body is not valid JSON")),
        }
        let Some(key) = s.string() else { return found.ok_or_else(cut_off) };
        s.ws();
        match s.next() {
            Some(b':') => {}
            None => return found.ok_or_else(cut_off),
            _ => return Err(Error::bad_request("model", "the body is not valid JSON")),
        }
        s.ws();
        let is_model = serde_json::from_slice::<String>(key).is_ok_and(|k| k == "model");
        if is_model {
            if found.is_some() {
                return Err(Error::bad_request("model", "is given twice"));
            }
            if s.peek() != Some(b'"') {
                return match s.peek() {
                    None => Err(cut_off()),
                    _ => Err(Error::bad_request("model", "must be a string")),
                };
            }
            let Some(raw) = s.string() else { return Err(cut_off()) };
            let name: String = serde_json::from_slice(raw).map_err(|_| Error::bad_request("model", "must be a string"))?;
            if name.is_empty() {
                return Err(missing());
            }
            found = Some(name);
        } else if !s.skip_value() {
            // Cut off inside another field: the model may still be in what was read.
            return found.ok_or_else(cut_off);
        }
        s.ws();
        match s.next() {
            Some(b',') => continue,
            Some(b'}') => break,
            None => return found.ok_or_else(cut_off),
            _ => return Err(Error::bad_request("model", "the body is not valid JSON")),
        }
    }
    found.ok_or_else(missing)
}

/// A forward-only reader over JSON text that skips values without building them.
struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }
    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }
    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }
    /// A string token, quotes included; `None` when the text ends inside it.
    fn string(&mut self) -> Option<&'a [u8]> {
        let start = self.i;
        self.i += 1; // the opening quote
        loop {
            match self.next()? {
                b'\\' => {
                    self.next()?;
                }
                b'"' => return Some(&self.b[start..self.i]),
                _ => {}
            }
        }
    }
    /// Skips one value; false when the text ends inside it.
    fn skip_value(&mut self) -> bool {
        match self.peek() {
            Some(b'"') => self.string().is_some(),
            Some(b'{' | b'[') => {
                let mut depth = 0usize;
                loop {
                    match self.peek() {
                        None => return false,
                        Some(b'"') => {
                            if self.string().is_none() {
                                return false;
                            }
                            continue;
                        }
                        Some(b'{' | b'[') => depth += 1,
                        Some(b'}' | b']') => {
                            depth -= 1;
                            if depth == 0 {
                                self.i += 1;
                                return true;
                            }
                        }
                        _ => {}
                    }
                    self.i += 1;
                }
            }
            Some(_) => {
                // A number or literal: up to the next delimiter.
                while let Some(c) = self.peek() {
                    if matches!(c, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                        return true;
                    }
                    self.i += 1;
                }
                false
            }
            None => false,
        }
    }
}

/// One entry of OpenAI's model list.
pub fn model_object(id: &str) -> Value {
    json!({"id": id, "object": "model", "created": 0, "owned_by": "ai-gateway"})
}

/// OpenAI's model list over `ids` (sorted, without duplicates).
pub fn list_body(mut ids: Vec<String>) -> Vec<u8> {
    ids.sort();
    ids.dedup();
    let data: Vec<Value> = ids.iter().map(|m| model_object(m)).collect();
    serde_json::to_vec(&json!({"object": "list", "data": data})).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_model_is_found_wherever_it_is_in_the_object() {
        for body in [
            r#"{"model": "llama", "messages": []}"#,
            r#"{"messages": [{"role": "user", "content": "say \"model\": no"}], "model": "llama"}"#,
            r#"  {"stream": true, "n": 1, "x": null, "y": {"model": "nested"}, "model":"llama"} "#,
            r#"{"m\u006fdel": "llama"}"#,
        ] {
            assert_eq!(model_of(body.as_bytes(), true).as_deref(), Ok("llama"), "{body}");
        }
        assert_eq!(model_of(br#"{"model": "meta-llama/Llama-3.1-8B-Instruct"}"#, true).as_deref(), Ok("meta-llama/Llama-3.1-8B-Instruct"));
    }

    #[test]
    fn bodies_without_a_usable_model_are_400s_naming_model() {
        for body in ["", "[]", "{}", r#"{"model": 3}"#, r#"{"model": ""}"#, r#"{"model": "a", "model": "b"}"#, "not json", r#"{"model" "a"}"#, r#"{"x": [1, 2}"#] {
            match model_of(body.as_bytes(), true) {
                Err(Error::BadRequest { field, .. }) => assert_eq!(field, "model", "{body}"),
                other => panic!("{body}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_model_past_the_peek_is_a_clear_400() {
        let big = format!(r#"{{"messages": [{{"content": "{}"}}], "model": "llama"}}"#, "x".repeat(PEEK_BYTES));
        let peek = &big.as_bytes()[..PEEK_BYTES];
        let e = model_of(peek, false).expect_err("cut off");
        assert!(e.to_string().contains("first 64 KiB"), "{e}");
        // Found early, the rest of a long body is not needed.
        let early = format!(r#"{{"model": "llama", "messages": [{{"content": "{}"}}]}}"#, "x".repeat(PEEK_BYTES));
        assert_eq!(model_of(&early.as_bytes()[..PEEK_BYTES], false).as_deref(), Ok("llama"));
    }

    #[test]
    fn requests_under_v1_are_classified() {
        let get = http::Method::GET;
        assert_eq!(classify(&get, "v1/models"), ModelRequest::List);
        assert_eq!(classify(&get, "v1/models/"), ModelRequest::List);
        assert_eq!(classify(&get, "v1/models/meta-llama/Llama-3.1-8B"), ModelRequest::Get("meta-llama/Llama-3.1-8B".into()));
        assert_eq!(classify(&http::Method::POST, "v1/models"), ModelRequest::ByBody);
        assert_eq!(classify(&http::Method::POST, "v1/chat/completions"), ModelRequest::ByBody);
        assert_eq!(classify(&get, "v1/modelsx"), ModelRequest::ByBody);
    }

    #[test]
    fn the_list_is_openais_shape() {
        let v: Value = serde_json::from_slice(&list_body(vec!["b".into(), "a".into(), "b".into()])).unwrap();
        assert_eq!(v["object"], "list");
        assert_eq!(v["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(v["data"][0]["object"], "model");
    }

    proptest! {
        /// Whatever the bytes and wherever they are cut, the scanner answers without panicking,
        /// and a model it finds in a complete body is the one serde_json reads.
        #[test]
        fn never_panics_and_agrees_with_serde(bytes in proptest::collection::vec(any::<u8>(), 0..200), cut in 0usize..200) {
            let cut = cut.min(bytes.len());
            let _ = model_of(&bytes[..cut], false);
            if let Ok(m) = model_of(&bytes, true) {
                let v: Result<Value, _> = serde_json::from_slice(&bytes);
                if let Ok(v) = v {
                    prop_assert_eq!(v["model"].as_str(), Some(m.as_str()));
                }
            }
        }

        #[test]
        fn finds_the_model_in_generated_bodies(model in "[a-zA-Z0-9/._:-]{1,40}", before in proptest::collection::btree_map("[a-ln-z]{1,8}", "[a-z \\\\\"{}]{0,20}", 0..4)) {
            let mut obj = serde_json::Map::new();
            for (k, v) in &before {
                obj.insert(k.clone(), json!({"text": v, "list": [1, v]}));
            }
            obj.insert("model".into(), json!(model));
            let body = serde_json::to_vec(&Value::Object(obj)).unwrap();
            prop_assert_eq!(model_of(&body, true), Ok(model));
        }
    }
}
