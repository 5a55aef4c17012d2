//! The gateway's own outbound GETs: health probes, endpoints' `/metrics`, and
//! identity providers' keys. Each platform makes a GET its own way
//! ([`Fetcher`]: `fetch` through a VPC binding at the edge, `reqwest` on
//! Lambda); what to ask for, and what to make of the answer, is decided here
//! ([`crate::probe`], [`crate::jwks`]). Never a URL a caller chose; no
//! redirect followed.

/// One GET.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Get<'a> {
    pub url: &'a str,
    /// At the edge, the Workers VPC binding to fetch through.
    pub via: Option<&'a str>,
    /// Deadline of the whole exchange (connecting, the status, the body), ms.
    pub timeout_ms: u64,
    /// The body of a 2xx answer is read up to this many bytes (refused past them,
    /// also when no `Content-Length` was given); 0: only the status is wanted.
    pub max_bytes: usize,
}

/// An answer in time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    /// The body of a 2xx answer when [`Get::max_bytes`] asked for it; otherwise empty.
    pub body: Vec<u8>,
}

/// Why a GET brought no answer; the text is for a log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// Not connected, refused, reset, or the request could not be made.
    Failed(String),
    /// No whole answer within [`Get::timeout_ms`].
    TimedOut,
    /// The body went past [`Get::max_bytes`].
    TooLarge,
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Failed(why) => write!(f, "request failed: {why}"),
            FetchError::TimedOut => f.write_str("timed out"),
            FetchError::TooLarge => f.write_str("answer too large"),
        }
    }
}

/// How a platform makes the gateway's own GETs.
#[allow(async_fn_in_trait)]
pub trait Fetcher {
    /// Makes `get`: no redirect followed, no proxy, the whole exchange within
    /// [`Get::timeout_ms`], a 2xx body read up to [`Get::max_bytes`].
    async fn get(&self, get: &Get<'_>) -> Result<Answer, FetchError>;
}

/// Appends `chunk` to `body` unless that would pass `max` bytes: the cap every
/// platform applies while reading, so a body past it is never held whole.
pub fn append_capped(body: &mut Vec<u8>, chunk: &[u8], max: usize) -> Result<(), FetchError> {
    if body.len() + chunk.len() > max {
        return Err(FetchError::TooLarge);
    }
    body.extend_from_slice(chunk);
    Ok(())
}

/// A body declared (`Content-Length`) longer than `max` is refused before it is read.
pub fn declared_too_large(content_length: Option<u64>, max: usize) -> bool {
    content_length.is_some_and(|n| n > max as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_refuses_the_chunk_that_would_pass_it() {
        let mut body = Vec::new();
        assert_eq!(append_capped(&mut body, b"abc", 5), Ok(()));
        assert_eq!(append_capped(&mut body, b"de", 5), Ok(()));
        assert_eq!(append_capped(&mut body, b"f", 5), Err(FetchError::TooLarge));
        assert_eq!(body, b"abcde");
        assert!(declared_too_large(Some(6), 5) && !declared_too_large(Some(5), 5) && !declared_too_large(None, 5));
    }
}
