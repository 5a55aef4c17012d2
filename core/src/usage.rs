//! LLM token usage read from a response body as it streams past, without
//! holding the stream back or buffering it whole.
//!
//! OpenAI-compatible servers (vLLM, OpenAI) report
//! `"usage": {"prompt_tokens": …, "completion_tokens": …}` at the top level
//! of a non-streamed JSON response, and, when the request set
//! `stream_options.include_usage`, in the last `data:` event of a stream.
//! An adapter creates a [`UsageTap`] for the response ([`UsageTap::for_response`]),
//! [`feed`](UsageTap::feed)s it every chunk it passes on to the client, and
//! calls [`finish`](UsageTap::finish) when the body ends.

use serde::{Deserialize, Serialize};

/// Longest event-stream line (and longest event data) examined, in bytes;
/// longer ones are skipped. Usage chunks are a few hundred bytes.
pub const MAX_SSE_LINE: usize = 64 * 1024;

/// Largest non-streamed JSON body examined, in bytes; over this the tap gives up.
pub const MAX_JSON_BODY: usize = 1024 * 1024;

/// How much of an event stream's end an adapter keeps for [`UsageTap::feed_kept`]: the usage
/// event is the last but one event of an OpenAI-compatible stream (before `data: [DONE]`), a few
/// hundred bytes; a usage event that ends further from the end than this is not read.
pub const SSE_TAIL_BYTES: usize = 16 * 1024;

/// What an adapter keeps of a body when it reads the usage once, at the end
/// ([`UsageTap::feed_kept`]), instead of feeding the tap every chunk as it passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// The body's last bytes, at least this many (or all of a shorter body); keeping whole
    /// chunks, and so a little more, is fine.
    Tail(usize),
    /// The whole body while it is at most this many bytes; nothing once it is longer.
    Whole(usize),
}

/// Tokens an upstream reported for one response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens in the prompt.
    pub prompt_tokens: u64,
    /// Tokens generated (0 when the upstream reports none, as for embeddings).
    pub completion_tokens: u64,
}

/// Reads [`Usage`] out of a response body chunk by chunk.
///
/// Memory is bounded: an event stream keeps only the current partial line
/// and the current event's data (each at most [`MAX_SSE_LINE`]); a JSON body
/// is copied up to [`MAX_JSON_BODY`]. Nothing it reads can make it panic.
#[derive(Debug)]
pub struct UsageTap {
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    Sse(SseTap),
    Json(JsonTap),
}

impl UsageTap {
    /// A tap for a `text/event-stream` body (`true`) or a JSON body (`false`).
    pub fn new(is_event_stream: bool) -> Self {
        let inner = if is_event_stream { Inner::Sse(SseTap::default()) } else { Inner::Json(JsonTap::default()) };
        UsageTap { inner }
    }

    /// A tap suited to a response's headers: `None` when the body cannot hold
    /// readable usage (not JSON or an event stream, or compressed).
    pub fn for_response(headers: &http::HeaderMap) -> Option<Self> {
        let encoded = headers.get(http::header::CONTENT_ENCODING).is_some_and(|v| {
            v.to_str().map_or(true, |v| !v.trim().is_empty() && !v.trim().eq_ignore_ascii_case("identity"))
        });
        if encoded {
            return None;
        }
        if crate::stream::is_event_stream(headers) {
            return Some(UsageTap::new(true));
        }
        let json = headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
            .is_some_and(|t| t == "application/json" || (t.starts_with("application/") && t.ends_with("+json")));
        json.then(|| UsageTap::new(false))
    }

    /// Examines the next chunk of the body.
    pub fn feed(&mut self, chunk: &[u8]) {
        match &mut self.inner {
            Inner::Sse(t) => t.feed(chunk),
            Inner::Json(t) => t.feed(chunk),
        }
    }

    /// False once the tap can no longer find usage whatever follows (a JSON
    /// body over the limit), so an adapter may stop copying chunks for it.
    pub fn wants_more(&self) -> bool {
        match &self.inner {
            Inner::Sse(_) => true,
            Inner::Json(t) => !t.overflow,
        }
    }

    /// What an adapter must keep of the body to read its usage once, at the end, with
    /// [`UsageTap::feed_kept`]: an event stream's last [`SSE_TAIL_BYTES`], a JSON body whole
    /// (up to [`MAX_JSON_BODY`]).
    pub fn keep(&self) -> Keep {
        match &self.inner {
            Inner::Sse(_) => Keep::Tail(SSE_TAIL_BYTES),
            Inner::Json(_) => Keep::Whole(MAX_JSON_BODY),
        }
    }

    /// Reads, once, what an adapter kept as [`UsageTap::keep`] asked, instead of every chunk,
    /// on a tap fed nothing else. `cut` says bytes went by before `kept` (an event stream longer
    /// than its tail, a JSON body over the limit). A cut event stream is read from the first
    /// event that starts inside `kept`: the partial line and event `kept` starts in are skipped.
    pub fn feed_kept(&mut self, kept: &[u8], cut: bool) {
        match &mut self.inner {
            Inner::Sse(t) => {
                if cut {
                    t.skipping_line = true;
                    t.skipping_event = true;
                }
                t.feed(kept);
            }
            Inner::Json(t) => {
                if cut {
                    t.overflow = true;
                    t.buf = Vec::new();
                } else {
                    t.feed(kept);
                }
            }
        }
    }

    /// The usage found, at the end of the body: for an event stream the last
    /// event that carried a `usage` object, for JSON the body's own.
    pub fn finish(self) -> Option<Usage> {
        match self.inner {
            Inner::Sse(t) => t.finish(),
            Inner::Json(t) => t.finish(),
        }
    }
}

/// A non-streamed body, copied up to [`MAX_JSON_BODY`].
#[derive(Debug, Default)]
struct JsonTap {
    buf: Vec<u8>,
    overflow: bool,
}

impl JsonTap {
    fn feed(&mut self, chunk: &[u8]) {
        if self.overflow {
            return;
        }
        if self.buf.len().saturating_add(chunk.len()) > MAX_JSON_BODY {
            self.overflow = true;
            self.buf = Vec::new();
            return;
        }
        self.buf.extend_from_slice(chunk);
    }

    fn finish(self) -> Option<Usage> {
        if self.overflow {
            None
        } else {
            usage_of(&self.buf)
        }
    }
}

/// An event stream, parsed line by line as the SSE specification says: lines
/// end with CRLF, LF or CR; `data:` lines (one optional space after the colon)
/// add to the event's data, joined with newlines; a blank line ends the event.
#[derive(Debug, Default)]
struct SseTap {
    /// The current line so far (never more than [`MAX_SSE_LINE`]).
    line: Vec<u8>,
    /// The current line outgrew the limit: the rest of it is skipped.
    skipping_line: bool,
    /// The last chunk ended with CR: a LF starting the next one ends no further line.
    after_cr: bool,
    /// The current event's data.
    data: Vec<u8>,
    /// The current event has a `data` field.
    has_data: bool,
    /// The current event's data outgrew the limit: the event is skipped.
    skipping_event: bool,
    /// The latest usage seen.
    last: Option<Usage>,
}

impl SseTap {
    fn feed(&mut self, chunk: &[u8]) {
        let mut rest = chunk;
        if self.after_cr {
            self.after_cr = false;
            if let Some(tail) = rest.strip_prefix(b"\n") {
                rest = tail;
            }
        }
        while let Some(pos) = rest.iter().position(|&b| b == b'\n' || b == b'\r') {
            let (line, tail) = rest.split_at(pos);
            self.end_line(line);
            rest = match tail {
                [b'\r', b'\n', after @ ..] => after,
                [b'\r'] => {
                    self.after_cr = true;
                    &[]
                }
                [_, after @ ..] => after,
                [] => &[],
            };
        }
        self.push_partial(rest);
    }

    /// Adds bytes of a line whose end has not arrived yet.
    fn push_partial(&mut self, bytes: &[u8]) {
        if self.skipping_line || bytes.is_empty() {
            return;
        }
        if self.line.len() + bytes.len() > MAX_SSE_LINE {
            self.drop_line(bytes);
            self.skipping_line = true;
        } else {
            self.line.extend_from_slice(bytes);
        }
    }

    /// The end of a line whose last bytes are `tail`.
    fn end_line(&mut self, tail: &[u8]) {
        if self.skipping_line {
            self.skipping_line = false;
        } else if self.line.len() + tail.len() > MAX_SSE_LINE {
            self.drop_line(tail);
        } else if self.line.is_empty() {
            self.process_line(tail);
        } else {
            let mut line = std::mem::take(&mut self.line);
            line.extend_from_slice(tail);
            self.process_line(&line);
            line.clear();
            self.line = line;
        }
    }

    /// Forgets a line too long to examine (held so far, then `tail`); when it
    /// was a `data` line, its event is incomplete and is skipped too.
    fn drop_line(&mut self, tail: &[u8]) {
        if self.line.iter().chain(tail).take(5).eq(b"data:".iter()) {
            self.skipping_event = true;
            self.data.clear();
        }
        self.line.clear();
    }

    fn process_line(&mut self, line: &[u8]) {
        if line.is_empty() {
            self.dispatch();
            return;
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(0) => return, // a comment
            Some(i) => {
                let value = &line[i + 1..];
                (&line[..i], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        if field != b"data" || self.skipping_event {
            return;
        }
        let extra = usize::from(self.has_data) + value.len();
        if self.data.len() + extra > MAX_SSE_LINE {
            self.skipping_event = true;
            self.data = Vec::new();
            return;
        }
        if self.has_data {
            self.data.push(b'\n');
        }
        self.data.extend_from_slice(value);
        self.has_data = true;
    }

    /// The end of an event: its data is examined for usage.
    fn dispatch(&mut self) {
        if self.has_data && !self.skipping_event {
            if let Some(u) = usage_of(&self.data) {
                self.last = Some(u);
            }
        }
        self.data.clear();
        self.has_data = false;
        self.skipping_event = false;
    }

    fn finish(mut self) -> Option<Usage> {
        // A stream that ends without a final line break or blank line still counts.
        if !self.skipping_line && !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.process_line(&line);
        }
        self.dispatch();
        self.last
    }
}

/// A route's choice about streamed usage (the route object's `usage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UsageMode {
    /// Streams report usage only when the client asks (`stream_options.include_usage`).
    #[default]
    Client,
    /// The gateway asks vLLM for usage on every stream, reads it, and removes the extra
    /// usage-only event when the client did not ask, so per-token usage is complete.
    Always,
}

impl UsageMode {
    /// True for the default (left out of the route JSON).
    pub fn is_client(&self) -> bool {
        *self == UsageMode::Client
    }
}

/// The body to send instead of `body` on an `"always"` route: a streamed request
/// (`"stream": true`) whose client did not ask for usage gets
/// `stream_options.include_usage = true`; `None` when nothing needs changing or `body` is
/// not a JSON object. Without `stream_options` the field is inserted after the opening brace,
/// every other byte unchanged.
pub fn ask_for_usage(body: &[u8]) -> Option<Vec<u8>> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let obj = v.as_object()?;
    if obj.get("stream") != Some(&serde_json::Value::Bool(true)) {
        return None;
    }
    match obj.get("stream_options") {
        None => {
            let open = body.iter().position(|&b| b == b'{')?;
            let mut out = Vec::with_capacity(body.len() + 40);
            out.extend_from_slice(&body[..=open]);
            out.extend_from_slice(b"\"stream_options\":{\"include_usage\":true}");
            // `{}` is not a streamed request, so a field always follows: add the comma.
            out.push(b',');
            out.extend_from_slice(&body[open + 1..]);
            Some(out)
        }
        Some(opts) if opts.get("include_usage") == Some(&serde_json::Value::Bool(true)) => None,
        Some(opts) => {
            let mut v = v.clone();
            let mut opts = opts.as_object().cloned().unwrap_or_default();
            opts.insert("include_usage".into(), serde_json::Value::Bool(true));
            v["stream_options"] = serde_json::Value::Object(opts);
            serde_json::to_vec(&v).ok()
        }
    }
}

/// Removes the usage-only event (`"choices": []` with a `usage` object) from an event stream,
/// passing every other byte through unchanged and in order: what the client would have
/// received had it not been asked for ([`ask_for_usage`]). Complete events pass at once; a
/// partial event waits for its end (at most [`MAX_SSE_LINE`] bytes, then it passes as is).
///
/// One more thing differs when usage is asked for: vLLM stamps `system_fingerprint` on the
/// terminal chunk (the one with a `finish_reason`) only without usage, and on the usage chunk
/// with it. So a terminal chunk waits for the next event, and when that is the usage chunk, its
/// fingerprint goes back where vLLM would have put it: last, after `choices`.
#[derive(Debug, Default)]
pub struct UsageStrip {
    held: Vec<u8>,
    /// A terminal chunk waiting to see whether the usage chunk follows.
    terminal: Option<Vec<u8>>,
}

impl UsageStrip {
    /// The bytes of `chunk` (and of what was held) the client gets now.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        self.held.extend_from_slice(chunk);
        let mut out = Vec::with_capacity(self.held.len());
        let mut start = 0;
        while let Some(end) = event_end(&self.held[start..]) {
            let event = &self.held[start..start + end];
            if is_usage_only(event) {
                if let Some(terminal) = self.terminal.take() {
                    out.extend(with_fingerprint_of(terminal, event));
                }
            } else {
                if let Some(terminal) = self.terminal.take() {
                    out.extend(terminal);
                }
                if contains(event, b"\"finish_reason\":\"") {
                    self.terminal = Some(event.to_vec());
                } else {
                    out.extend_from_slice(event);
                }
            }
            start += end;
        }
        self.held.drain(..start);
        if self.held.len() > MAX_SSE_LINE {
            out.extend(self.terminal.take().unwrap_or_default());
            out.append(&mut self.held);
        }
        out
    }

    /// What is still held when the stream ends (an event without its blank line).
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = self.terminal.take().unwrap_or_default();
        let rest = std::mem::take(&mut self.held);
        if !is_usage_only(&rest) {
            out.extend(rest);
        }
        out
    }
}

/// `terminal` with the usage event's `system_fingerprint` added last, as vLLM writes it when
/// usage is not asked for; unchanged when it has one or the usage event has none.
fn with_fingerprint_of(terminal: Vec<u8>, usage_event: &[u8]) -> Vec<u8> {
    if contains(&terminal, b"\"system_fingerprint\"") {
        return terminal;
    }
    let Some(fp) = data_json(usage_event).and_then(|v| v.get("system_fingerprint").and_then(|f| f.as_str()).map(str::to_string)) else {
        return terminal;
    };
    let Some(close) = terminal.iter().rposition(|&b| b == b'}') else { return terminal };
    let mut out = Vec::with_capacity(terminal.len() + fp.len() + 24);
    out.extend_from_slice(&terminal[..close]);
    out.extend_from_slice(b",\"system_fingerprint\":");
    out.extend(serde_json::to_vec(&fp).unwrap_or_default());
    out.extend_from_slice(&terminal[close..]);
    out
}


/// The length of the first complete event in `buf` (through the blank line that ends it), if
/// any. Lines end with CRLF, LF or CR, as the event-stream format allows; a CR at the very end
/// may be the first half of a CRLF, so the event waits for the next byte.
fn event_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    let mut line_start = 0;
    while i < buf.len() {
        let end = match buf[i] {
            b'\n' => i + 1,
            b'\r' if i + 1 == buf.len() => return None,
            b'\r' if buf[i + 1] == b'\n' => i + 2,
            b'\r' => i + 1,
            _ => {
                i += 1;
                continue;
            }
        };
        if i == line_start && i > 0 {
            return Some(end);
        }
        i = end;
        line_start = end;
    }
    None
}

/// The JSON of an event's `data` lines.
fn data_json(event: &[u8]) -> Option<serde_json::Value> {
    let mut data = Vec::new();
    for line in lines(event) {
        if let Some(v) = line.strip_prefix(b"data:") {
            if !data.is_empty() {
                data.push(b'\n');
            }
            data.extend_from_slice(v.strip_prefix(b" ").unwrap_or(v));
        }
    }
    serde_json::from_slice(&data).ok()
}

/// The lines of `text`, split at CRLF, LF or CR.
fn lines(text: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let (mut start, mut i) = (0, 0);
    while i < text.len() {
        match text[i] {
            b'\r' | b'\n' => {
                out.push(&text[start..i]);
                i += if text[i] == b'\r' && text.get(i + 1) == Some(&b'\n') { 2 } else { 1 };
                start = i;
            }
            _ => i += 1,
        }
    }
    if start < text.len() {
        out.push(&text[start..]);
    }
    out
}

/// True for an event whose data is an object with empty `choices` and a `usage` object.
fn is_usage_only(event: &[u8]) -> bool {
    if !contains(event, b"\"usage\"") {
        return false;
    }
    let Some(v) = data_json(event) else { return false };
    v.get("choices").and_then(|c| c.as_array()).is_some_and(|c| c.is_empty()) && v.get("usage").is_some_and(|u| u.is_object())
}

/// The `usage` of a JSON object, if it has a valid one.
fn usage_of(json: &[u8]) -> Option<Usage> {
    #[derive(Deserialize)]
    struct Envelope {
        #[serde(default)]
        usage: Option<serde_json::Value>,
    }
    let body = json.trim_ascii();
    // Cheap checks first: most stream events carry no usage; only an object may.
    if !body.starts_with(b"{") || !contains(body, b"\"usage\"") {
        return None;
    }
    let usage = serde_json::from_slice::<Envelope>(body).ok()?.usage?;
    let usage = usage.as_object()?;
    let prompt_tokens = usage.get("prompt_tokens")?.as_u64()?;
    let completion_tokens = match usage.get("completion_tokens") {
        None | Some(serde_json::Value::Null) => 0,
        Some(v) => v.as_u64()?,
    };
    Some(Usage { prompt_tokens, completion_tokens })
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn usage_is_asked_for_only_on_streams_whose_client_did_not() {
        let plain = br#"{"model":"m","stream":true,"messages":[]}"#;
        let asked = ask_for_usage(plain).expect("rewritten");
        assert_eq!(asked, br#"{"stream_options":{"include_usage":true},"model":"m","stream":true,"messages":[]}"#.to_vec(), "the rest unchanged");
        let v: serde_json::Value = serde_json::from_slice(&asked).unwrap();
        assert_eq!(v["stream_options"]["include_usage"], true);
        assert_eq!(ask_for_usage(br#"{"model":"m","stream":false}"#), None);
        assert_eq!(ask_for_usage(br#"{"model":"m"}"#), None);
        assert_eq!(ask_for_usage(br#"{"stream":true,"stream_options":{"include_usage":true}}"#), None, "the client asked");
        let off = ask_for_usage(br#"{"stream":true,"stream_options":{"include_usage":false,"continuous_usage_stats":false}}"#).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&off).unwrap();
        assert_eq!((v["stream_options"]["include_usage"].as_bool(), v["stream_options"]["continuous_usage_stats"].as_bool()), (Some(true), Some(false)));
        assert_eq!(ask_for_usage(b"not json"), None);
        assert_eq!(ask_for_usage(b"[1]"), None);
    }

    #[test]
    fn the_usage_only_event_is_removed_and_nothing_else() {
        let with = vllm_stream(3, Some((7, 3)), "\n");
        let without = vllm_stream(3, None, "\n");
        let mut strip = UsageStrip::default();
        let mut out = strip.feed(with.as_bytes());
        out.extend(strip.finish());
        assert_eq!(String::from_utf8(out).unwrap(), without);
        // Byte by byte, and with CRLF line ends.
        for eol in ["\n", "\r\n"] {
            let (with, without) = (vllm_stream(4, Some((9, 4)), eol), vllm_stream(4, None, eol));
            let mut strip = UsageStrip::default();
            let mut out = Vec::new();
            for b in with.as_bytes() {
                out.extend(strip.feed(&[*b]));
            }
            out.extend(strip.finish());
            assert_eq!(String::from_utf8(out).unwrap(), without, "{eol:?}");
        }
        // CR-only line ends, and a stream mixing LF and CRLF, end events too.
        for eol in ["\r", "\n"] {
            let (with, without) = (vllm_stream(2, Some((3, 2)), eol), vllm_stream(2, None, eol));
            let mut strip = UsageStrip::default();
            let first = strip.feed(with.as_bytes());
            assert!(!first.is_empty(), "events pass as they end ({eol:?})");
            let mut out = first;
            out.extend(strip.finish());
            assert_eq!(String::from_utf8(out).unwrap(), without, "{eol:?}");
        }
        let mixed = "data: {\"choices\":[{\"delta\":{}}]}\n\r\ndata: [DONE]\n\n";
        assert_eq!(UsageStrip::default().feed(mixed.as_bytes()), mixed.as_bytes());
        // A content chunk that mentions usage stays.
        let talk = "data: {\"choices\":[{\"delta\":{\"content\":\"\\\"usage\\\": {}\"}}]}\n\n";
        assert_eq!(UsageStrip::default().feed(talk.as_bytes()), talk.as_bytes());
    }

    #[test]
    fn vllms_fingerprint_goes_back_on_the_terminal_chunk() {
        // vLLM 0.x: the fingerprint is on the terminal chunk without usage, on the usage chunk with it.
        let head = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"tiny\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n";
        let terminal = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"tiny\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"!\"},\"logprobs\":null,\"finish_reason\":\"length\",\"stop_reason\":null}]}";
        let usage = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"tiny\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"total_tokens\":7,\"completion_tokens\":2},\"system_fingerprint\":\"fp_0123\"}\n\n";
        let done = "data: [DONE]\n\n";
        let with = format!("{head}{terminal}\n\n{usage}{done}");
        let terminal_fp = terminal.strip_suffix('}').unwrap().to_string() + ",\"system_fingerprint\":\"fp_0123\"}";
        let without = format!("{head}{terminal_fp}\n\n{done}");
        for cut in 1..with.len() {
            let mut strip = UsageStrip::default();
            let mut out = strip.feed(&with.as_bytes()[..cut]);
            out.extend(strip.feed(&with.as_bytes()[cut..]));
            out.extend(strip.finish());
            assert_eq!(String::from_utf8(out).unwrap(), without, "cut at {cut}");
        }
        // A terminal chunk not followed by a usage chunk passes unchanged.
        let plain = format!("{head}{terminal}\n\n{done}");
        let mut strip = UsageStrip::default();
        let mut out = strip.feed(plain.as_bytes());
        out.extend(strip.finish());
        assert_eq!(String::from_utf8(out).unwrap(), plain);
    }

    proptest! {
        /// However the stream is cut into chunks, the client gets the stream without the usage event.
        #[test]
        fn any_chunking_gives_the_stream_without_usage(chunks in 0usize..6, cuts in proptest::collection::vec(1usize..40, 1..30)) {
            let (with, without) = (vllm_stream(chunks, Some((5, 2)), "\n"), vllm_stream(chunks, None, "\n"));
            let bytes = with.as_bytes();
            let mut strip = UsageStrip::default();
            let (mut out, mut at, mut i) = (Vec::new(), 0, 0);
            while at < bytes.len() {
                let n = cuts[i % cuts.len()].min(bytes.len() - at);
                out.extend(strip.feed(&bytes[at..at + n]));
                at += n;
                i += 1;
            }
            out.extend(strip.finish());
            prop_assert_eq!(String::from_utf8(out).unwrap(), without);
        }
    }

    /// A stream as vLLM sends it: role chunk, content chunks, then (if asked) a usage chunk and `[DONE]`.
    fn vllm_stream(chunks: usize, usage: Option<(u64, u64)>, eol: &str) -> String {
        let mut s = String::new();
        for i in 0..chunks {
            let chunk = serde_json::json!({
                "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m",
                "choices": [{"index": 0, "delta": {"content": format!("tok{i} \"usage\": {{}}")}, "finish_reason": null}],
                "usage": null,
            });
            s.push_str(&format!("data: {chunk}{eol}{eol}"));
        }
        if let Some((p, c)) = usage {
            let chunk = serde_json::json!({
                "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [],
                "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c},
            });
            s.push_str(&format!("data: {chunk}{eol}{eol}"));
        }
        s.push_str(&format!("data: [DONE]{eol}{eol}"));
        s
    }

    fn tap(sse: bool, pieces: &[&[u8]]) -> Option<Usage> {
        let mut t = UsageTap::new(sse);
        for p in pieces {
            t.feed(p);
        }
        t.finish()
    }

    fn sse(body: &str) -> Option<Usage> {
        tap(true, &[body.as_bytes()])
    }

    fn usage(p: u64, c: u64) -> Option<Usage> {
        Some(Usage { prompt_tokens: p, completion_tokens: c })
    }

    #[test]
    fn stream_usage_comes_from_the_final_chunk() {
        assert_eq!(sse(&vllm_stream(5, Some((12, 5)), "\n")), usage(12, 5));
        assert_eq!(sse(&vllm_stream(5, None, "\n")), None, "no include_usage: no usage");
        assert_eq!(sse(""), None);
    }

    #[test]
    fn the_last_usage_wins_and_null_usage_is_skipped() {
        let body = "data: {\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1}}\n\ndata: {\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4}}\n\ndata: {\"usage\":null}\n\ndata: {\"choices\":[]}\n\n";
        assert_eq!(sse(body), usage(3, 4));
    }

    #[test]
    fn every_line_ending_and_field_form() {
        for eol in ["\n", "\r\n", "\r"] {
            assert_eq!(sse(&vllm_stream(3, Some((7, 3)), eol)), usage(7, 3), "{eol:?}");
        }
        // No space after the colon; comments, other fields, and a CR split from its LF across chunks.
        let body = ": keep-alive\r\nevent: message\r\nid: 7\r\nretry: 100\r\ndata:{\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":9}}\r\n\r\n";
        assert_eq!(sse(body), usage(2, 9));
        let at = body.find("}}\r\n").unwrap() + 3;
        assert_eq!(tap(true, &[&body.as_bytes()[..at], &body.as_bytes()[at..]]), usage(2, 9));
        // Two spaces: the second belongs to the value, which is still valid JSON.
        assert_eq!(sse("data:  {\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1}}\n\n"), usage(1, 1));
        // A field named `data` with no colon is empty data; `datax:` is another field.
        assert_eq!(sse("datax: {\"usage\":{\"prompt_tokens\":1}}\n\ndata\n\n"), None);
    }

    #[test]
    fn multi_line_data_is_joined() {
        let body = "data: {\"usage\":\ndata: {\"prompt_tokens\":4,\ndata: \"completion_tokens\":6}}\n\n";
        assert_eq!(sse(body), usage(4, 6));
        // Without a blank line between them, two data lines are one event (not two objects).
        assert_eq!(sse("data: {\"usage\":{\"prompt_tokens\":4}}\ndata: {\"usage\":{\"prompt_tokens\":5}}\n\n"), None);
    }

    #[test]
    fn a_stream_cut_before_its_blank_line_still_counts() {
        assert_eq!(sse("data: {\"usage\":{\"prompt_tokens\":8,\"completion_tokens\":1}}"), usage(8, 1));
        assert_eq!(sse("data: {\"usage\":{\"prompt_tokens\":8,\"completion_tokens\":1}}\n"), usage(8, 1));
        assert_eq!(sse("data: {\"usage\":{\"prompt_tokens\":8,\"completion"), None, "a truncated object is not usage");
    }

    #[test]
    fn oversized_lines_and_events_are_skipped() {
        let padding = "x".repeat(MAX_SSE_LINE);
        let big = format!("data: {{\"pad\":\"{padding}\",\"usage\":{{\"prompt_tokens\":99,\"completion_tokens\":99}}}}\n\n");
        let good = "data: {\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}\n\n";
        assert_eq!(sse(&big), None);
        assert_eq!(sse(&format!("{big}{good}")), usage(1, 2));
        assert_eq!(sse(&format!("{good}{big}")), usage(1, 2));
        // The event of a dropped data line is dropped whole, even if what is left parses.
        let rest = "data: {\"usage\":{\"prompt_tokens\":50,\"completion_tokens\":50}}\n\n";
        assert_eq!(sse(&format!("{good}{}\n{rest}", big.trim_end())), usage(1, 2));
        assert_eq!(sse(&format!(": {padding}\n{rest}")), usage(50, 50), "a long comment costs its event nothing");
        // The same, fed in small pieces: the long line is never held whole.
        let body = format!("{good}{big}: tail\n\n");
        let mut t = UsageTap::new(true);
        for piece in body.as_bytes().chunks(1000) {
            t.feed(piece);
            if let Inner::Sse(s) = &t.inner {
                assert!(s.line.len() <= MAX_SSE_LINE && s.data.len() <= MAX_SSE_LINE);
            }
        }
        assert_eq!(t.finish(), usage(1, 2));
        // Many lines, each short, whose joined data is too long.
        let line = format!("data: {}\n", "y".repeat(1000));
        let long_event = format!("data: {{\"usage\":{{\"prompt_tokens\":5,\"completion_tokens\":5}},\"pad\":\n{}data: 1}}\n\n", line.repeat(70));
        assert_eq!(sse(&long_event), None);
        assert_eq!(sse(&format!("{long_event}{good}")), usage(1, 2));
        // A line exactly at the limit is read.
        let pad = MAX_SSE_LINE - "data: {\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":3},\"p\":\"\"}".len();
        let exact = format!("data: {{\"usage\":{{\"prompt_tokens\":3,\"completion_tokens\":3}},\"p\":\"{}\"}}\n\n", "z".repeat(pad));
        assert_eq!(exact.trim_end().len(), MAX_SSE_LINE);
        assert_eq!(sse(&exact), usage(3, 3));
    }

    #[test]
    fn malformed_usage_is_none() {
        for body in [
            "data: [DONE]\n\n",
            "data: {usage}\n\n",
            "data: {\"usage\": {\"prompt_tokens\": 1,\n\n",
            "data: {\"usage\": \"lots\"}\n\n",
            "data: {\"usage\": {\"prompt_tokens\": -1, \"completion_tokens\": 1}}\n\n",
            "data: {\"usage\": {\"prompt_tokens\": 1.5, \"completion_tokens\": 1}}\n\n",
            "data: {\"usage\": {\"prompt_tokens\": 1, \"completion_tokens\": \"2\"}}\n\n",
            "data: {\"usage\": {\"completion_tokens\": 1}}\n\n",
            "data: {\"usage\": [1, 2]}\n\n",
            "data: [{\"usage\": {\"prompt_tokens\": 1, \"completion_tokens\": 1}}]\n\n",
            "data: {\"usage\": {\"prompt_tokens\": 1}, \"usage\": {\"prompt_tokens\": 2}}\n\n",
            "data: {\"usage\": {\"prompt_tokens\": 18446744073709551616}}\n\n",
            "data: \"usage\"\n\n",
        ] {
            assert_eq!(sse(body), None, "{body}");
        }
        assert_eq!(tap(true, &[b"data: {\"usage\xff\xfe\": 1}\n\n", &[0, 0xc3, b'\r']]), None);
        // A missing or null completion count is 0 (embeddings report only prompt tokens).
        assert_eq!(sse("data: {\"usage\": {\"prompt_tokens\": 4}}\n\n"), usage(4, 0));
        assert_eq!(sse("data: {\"usage\": {\"prompt_tokens\": 4, \"completion_tokens\": null}}\n\n"), usage(4, 0));
    }

    #[test]
    fn json_bodies() {
        let body = serde_json::json!({
            "id": "chatcmpl-1", "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "the \"usage\" is below"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12},
        })
        .to_string();
        assert_eq!(tap(false, &[body.as_bytes()]), usage(5, 7));
        let (a, b) = body.as_bytes().split_at(body.len() / 2);
        assert_eq!(tap(false, &[a, b]), usage(5, 7));
        let embeddings = r#"{"object":"list","data":[],"usage":{"prompt_tokens":8,"total_tokens":8}}"#;
        assert_eq!(tap(false, &[embeddings.as_bytes()]), usage(8, 0));
        assert_eq!(tap(false, &[b"  \r\n{\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1}}\n"]), usage(1, 1));
        for bad in [&b""[..], b"{", b"{\"error\":{\"message\":\"x\"}}", b"[]", b"null", b"{\"usage\":{\"prompt_tokens\":1}} trailing", b"\xff\xfe"] {
            assert_eq!(tap(false, &[bad]), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn json_bodies_over_the_limit_are_given_up() {
        let usage_json = br#"{"usage":{"prompt_tokens":1,"completion_tokens":1},"pad":""#;
        let mut t = UsageTap::new(false);
        t.feed(usage_json);
        let pad = vec![b'p'; 64 * 1024];
        for _ in 0..16 {
            t.feed(&pad);
        }
        assert!(!t.wants_more());
        t.feed(b"\"}");
        assert_eq!(t.finish(), None);
        // Just under the limit is fine.
        let mut t = UsageTap::new(false);
        t.feed(usage_json);
        t.feed(&vec![b'p'; MAX_JSON_BODY - usage_json.len() - 2]);
        t.feed(b"\"}");
        assert!(t.wants_more());
        assert_eq!(t.finish(), usage(1, 1));
        assert!(UsageTap::new(true).wants_more());
    }

    fn kept(sse: bool, kept: &[u8], cut: bool) -> Option<Usage> {
        let mut t = UsageTap::new(sse);
        t.feed_kept(kept, cut);
        t.finish()
    }

    #[test]
    fn what_an_adapter_keeps() {
        assert_eq!(UsageTap::new(true).keep(), Keep::Tail(SSE_TAIL_BYTES));
        assert_eq!(UsageTap::new(false).keep(), Keep::Whole(MAX_JSON_BODY));
    }

    #[test]
    fn a_kept_tail_reads_the_usage_of_a_long_stream() {
        // Long enough that its tail is a small part of it.
        let body = vllm_stream(400, Some((31, 400)), "\n");
        assert!(body.len() > 4 * SSE_TAIL_BYTES);
        let tail = &body.as_bytes()[body.len() - SSE_TAIL_BYTES..];
        assert_eq!(kept(true, tail, true), usage(31, 400));
        assert_eq!(kept(true, body.as_bytes(), false), usage(31, 400), "a body kept whole");
        assert_eq!(kept(true, b"", false), None);
        assert_eq!(kept(true, b"", true), None);
        // The line and event the tail starts in are skipped: a tail that starts inside the usage
        // event's line, or right at it (which cannot be told apart), does not read it.
        let at = body.rfind("data: {").unwrap();
        assert_eq!(kept(true, &body.as_bytes()[at..], true), None);
        assert_eq!(kept(true, &body.as_bytes()[at + 20..], true), None);
        assert_eq!(kept(true, &body.as_bytes()[at..], false), usage(31, 400), "uncut, it is the whole body");
    }

    #[test]
    fn a_cut_inside_a_multi_line_event_skips_that_event() {
        // Its second data line alone would be a usage object: skipped with its event.
        let body = "data: {\"x\":\ndata: {\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":9}}\n\ndata: [DONE]\n\n";
        let at = 3;
        assert_eq!(kept(true, &body.as_bytes()[at..], true), None);
        let real = format!("{body}data: {{\"usage\":{{\"prompt_tokens\":1,\"completion_tokens\":2}}}}\n\n");
        assert_eq!(kept(true, &real.as_bytes()[at..], true), usage(1, 2));
    }

    #[test]
    fn a_kept_json_body_is_read_whole_or_not_at_all() {
        let body = br#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4}}"#;
        assert_eq!(kept(false, body, false), usage(3, 4));
        assert_eq!(kept(false, body, true), None, "over the limit: given up");
        assert_eq!(kept(false, &[], true), None);
        let mut big = body.to_vec();
        big.resize(MAX_JSON_BODY + 1, b' ');
        assert_eq!(kept(false, &big, false), None, "the limit holds for kept bytes too");
    }

    proptest! {
        // Wherever the tail starts, it reads the stream's usage or nothing, never another
        // value; and always the usage when a whole event precedes the usage event in it.
        #[test]
        fn a_tail_from_anywhere_reads_the_usage_or_nothing(
            chunks in 1usize..6,
            p in 0u64..1000,
            c in 0u64..1000,
            eol in prop::sample::select(vec!["\n", "\r\n", "\r"]),
            from in any::<prop::sample::Index>(),
        ) {
            let body = vllm_stream(chunks, Some((p, c)), eol);
            let at = from.index(body.len() + 1);
            let got = kept(true, &body.as_bytes()[at..], at > 0);
            prop_assert!(got.is_none() || got == usage(p, c), "{got:?}");
            // The start of the event before the usage event.
            let usage_at = body.find("\"choices\":[]").unwrap();
            let before = body[..usage_at].rfind("data: ").unwrap();
            let previous = body[..before].rfind("data: ").unwrap();
            if at <= previous {
                prop_assert_eq!(got, usage(p, c));
            }
        }
    }

    #[test]
    fn the_tap_follows_the_response_headers() {
        let headers = |pairs: &[(&str, &str)]| {
            let mut h = http::HeaderMap::new();
            for (k, v) in pairs {
                h.insert(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
            }
            h
        };
        let kind = |h: &http::HeaderMap| UsageTap::for_response(h).map(|t| matches!(t.inner, Inner::Sse(_)));
        assert_eq!(kind(&headers(&[("content-type", "text/event-stream; charset=utf-8")])), Some(true));
        assert_eq!(kind(&headers(&[("content-type", "application/json")])), Some(false));
        assert_eq!(kind(&headers(&[("content-type", "Application/JSON; charset=utf-8")])), Some(false));
        assert_eq!(kind(&headers(&[("content-type", "application/problem+json")])), Some(false));
        assert_eq!(kind(&headers(&[("content-type", "application/json"), ("content-encoding", "identity")])), Some(false));
        assert_eq!(kind(&headers(&[("content-type", "application/json"), ("content-encoding", "gzip")])), None);
        assert_eq!(kind(&headers(&[("content-type", "text/event-stream"), ("content-encoding", "br")])), None);
        assert_eq!(kind(&headers(&[("content-type", "text/html")])), None);
        assert_eq!(kind(&headers(&[("content-type", "application/jsonx")])), None);
        assert_eq!(kind(&headers(&[])), None);
    }

    /// Splits `body` at the given points (any order, any number, repeats allowed).
    fn split_at<'a>(body: &'a [u8], points: &[usize]) -> Vec<&'a [u8]> {
        let mut cuts: Vec<usize> = points.iter().map(|p| p % (body.len() + 1)).collect();
        cuts.sort_unstable();
        let mut pieces = vec![];
        let mut last = 0;
        for c in cuts.into_iter().chain([body.len()]) {
            pieces.push(&body[last..c]);
            last = c;
        }
        pieces
    }

    proptest! {
        // A real stream split anywhere, any number of times, gives the same answer as one chunk.
        #[test]
        fn any_split_gives_the_same_usage(
            chunks in 0usize..8,
            p in 0u64..100_000,
            c in 0u64..100_000,
            eol in prop::sample::select(vec!["\n", "\r\n", "\r"]),
            with_usage in any::<bool>(),
            points in prop::collection::vec(any::<usize>(), 0..40),
        ) {
            let body = vllm_stream(chunks, with_usage.then_some((p, c)), eol);
            let want = with_usage.then_some(Usage { prompt_tokens: p, completion_tokens: c });
            prop_assert_eq!(sse(&body), want);
            prop_assert_eq!(tap(true, &split_at(body.as_bytes(), &points)), want);
        }

        // Byte by byte, the hardest split of all.
        #[test]
        fn byte_at_a_time(p in 0u64..1000, eol in prop::sample::select(vec!["\n", "\r\n", "\r"])) {
            let body = vllm_stream(2, Some((p, 1)), eol);
            let pieces: Vec<&[u8]> = body.as_bytes().chunks(1).collect();
            prop_assert_eq!(tap(true, &pieces), usage(p, 1));
        }

        // A JSON body split anywhere.
        #[test]
        fn json_split_anywhere(p in any::<u64>(), c in any::<u64>(), points in prop::collection::vec(any::<usize>(), 0..20)) {
            let body = serde_json::json!({"choices": [], "usage": {"prompt_tokens": p, "completion_tokens": c}}).to_string();
            prop_assert_eq!(tap(false, &split_at(body.as_bytes(), &points)), usage(p, c));
        }

        // Whatever arrives, the tap neither panics nor grows past its bounds.
        #[test]
        fn arbitrary_bytes_never_panic(body in prop::collection::vec(prop::sample::select(b"data: {}\"usage\r\n:1,prompt_tokens\xff".to_vec()), 0..400), points in prop::collection::vec(any::<usize>(), 0..20)) {
            for sse_mode in [true, false] {
                let mut t = UsageTap::new(sse_mode);
                for piece in split_at(&body, &points) {
                    t.feed(piece);
                }
                let _ = t.finish();
            }
        }
    }
}
