//! A stand-in OpenID Connect identity provider for the contract suite.
//!
//! It serves a discovery document and a JWKS on loopback, and holds the private keys to sign
//! access tokens with them: good ones, and the hostile ones an attacker would try (HS256 keyed
//! with the public key, a `jku` pointing elsewhere, `alg: none`). The keys are test fixtures
//! (`tests/fixtures/oidc/`); `rsa-2` stays unpublished until [`OidcStandIn::publish`], so a
//! test can rotate keys under a running gateway.

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{json, Map, Value};
use tokio::net::TcpListener;
use gateway_standin::Server;

/// Path of the JWKS, as the discovery document names it.
const JWKS_PATH: &str = "/jwks";
/// Path of the OpenID Connect discovery document.
const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";

/// Which fixture keys a provider holds. Two providers with different sets share no key,
/// though their kids are the same (`rsa-1`, `rsa-2`, `ec-1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySet {
    /// `tests/fixtures/oidc/a/`: the provider the gateway trusts.
    A,
    /// `tests/fixtures/oidc/b/`: an independent provider (the rogue one).
    B,
}

/// One fixture key: (kid, alg, private PKCS#8 PEM, public SPKI PEM, published at start).
type Fixture = (&'static str, Algorithm, &'static str, &'static str, bool);

impl KeySet {
    fn fixtures(self) -> [Fixture; 3] {
        macro_rules! key {
            ($set:literal, $kid:literal, $alg:expr, $published:expr) => {
                (
                    $kid,
                    $alg,
                    include_str!(concat!("../fixtures/oidc/", $set, "/", $kid, ".pem")),
                    include_str!(concat!("../fixtures/oidc/", $set, "/", $kid, ".pub.pem")),
                    $published,
                )
            };
        }
        match self {
            KeySet::A => [key!("a", "rsa-1", Algorithm::RS256, true), key!("a", "ec-1", Algorithm::ES256, true), key!("a", "rsa-2", Algorithm::RS256, false)],
            KeySet::B => [key!("b", "rsa-1", Algorithm::RS256, true), key!("b", "ec-1", Algorithm::ES256, true), key!("b", "rsa-2", Algorithm::RS256, false)],
        }
    }
}

struct Key {
    kid: &'static str,
    encoding: EncodingKey,
    public_pem: &'static str,
    /// The public JWK as the JWKS serves it.
    jwk: Value,
}

struct Shared {
    issuer: String,
    keys: Vec<Key>,
    /// Kids served in the JWKS, in publication order.
    published: Mutex<Vec<&'static str>>,
    jwks_fetches: AtomicU64,
}

impl Shared {
    fn jwks(&self) -> Value {
        let published = self.published.lock().unwrap_or_else(|p| p.into_inner());
        let keys: Vec<&Value> = published.iter().filter_map(|kid| self.keys.iter().find(|k| k.kid == *kid)).map(|k| &k.jwk).collect();
        json!({ "keys": keys })
    }
}

/// A running stand-in identity provider on `127.0.0.1`.
///
/// Dropping it without calling [`OidcStandIn::stop`] also shuts it down, in the background.
pub struct OidcStandIn {
    shared: Arc<Shared>,
    server: Server,
}

impl std::fmt::Debug for OidcStandIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcStandIn").field("issuer", &self.shared.issuer).finish_non_exhaustive()
    }
}

impl OidcStandIn {
    /// Starts a provider with key set [`KeySet::A`] on a free loopback port.
    pub async fn start() -> std::io::Result<OidcStandIn> {
        Self::start_with(KeySet::A).await
    }

    /// Starts a provider holding `set`'s keys on a free loopback port.
    pub async fn start_with(set: KeySet) -> std::io::Result<OidcStandIn> {
        let invalid = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
        let mut keys = Vec::new();
        let mut published = Vec::new();
        for (kid, alg, private_pem, public_pem, is_published) in set.fixtures() {
            let encoding = match alg {
                Algorithm::ES256 => EncodingKey::from_ec_pem(private_pem.as_bytes()),
                _ => EncodingKey::from_rsa_pem(private_pem.as_bytes()),
            }
            .map_err(|e| invalid(format!("fixture key {kid}: {e}")))?;
            let mut jwk = Jwk::from_encoding_key(&encoding, alg).map_err(|e| invalid(format!("JWK of {kid}: {e}")))?;
            jwk.common.key_id = Some(kid.to_string());
            jwk.common.public_key_use = Some(PublicKeyUse::Signature);
            let jwk = serde_json::to_value(&jwk).map_err(|e| invalid(format!("JWK of {kid}: {e}")))?;
            keys.push(Key { kid, encoding, public_pem, jwk });
            if is_published {
                published.push(kid);
            }
        }
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            issuer: format!("http://{addr}"),
            keys,
            published: Mutex::new(published),
            jwks_fetches: AtomicU64::new(0),
        });
        let serving = Arc::clone(&shared);
        let server = Server::spawn(listener, move |stream| serve_connection(stream, Arc::clone(&serving)))?;
        Ok(OidcStandIn { shared, server })
    }

    /// The issuer, `http://127.0.0.1:{port}`: the `iss` of its tokens.
    pub fn issuer(&self) -> String {
        self.shared.issuer.clone()
    }

    /// The bound socket address.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// Where its JWKS is served.
    pub fn jwks_url(&self) -> String {
        format!("{}{JWKS_PATH}", self.shared.issuer)
    }

    /// How many times its JWKS was fetched.
    pub fn jwks_fetches(&self) -> u64 {
        self.shared.jwks_fetches.load(Ordering::SeqCst)
    }

    /// The JWKS as it is served now.
    pub fn jwks(&self) -> Value {
        self.shared.jwks()
    }

    /// Adds key `kid` to the JWKS (a no-op when it is already there).
    ///
    /// # Panics
    /// When the provider holds no key `kid`: a mistake in the test.
    pub fn publish(&self, kid: &str) {
        let key = self.key(kid);
        let mut published = self.shared.published.lock().unwrap_or_else(|p| p.into_inner());
        if !published.contains(&key.kid) {
            published.push(key.kid);
        }
    }

    /// Standard access-token claims from this provider: `iss`, `sub` (an opaque id derived
    /// from `subject`), `email` = `subject`, `aud`, `groups`, `iat` = `nbf` = now and
    /// `exp` = now + `ttl_secs`. Edit the returned value for edge cases.
    pub fn claims_for(&self, subject: &str, groups: &[&str], audience: &str, ttl_secs: u64) -> Value {
        let now = unix_now();
        json!({
            "iss": self.shared.issuer,
            "sub": opaque_id(subject),
            "email": subject,
            "aud": audience,
            "groups": groups,
            "iat": now,
            "nbf": now,
            "exp": now + ttl_secs,
        })
    }

    /// Signs `claims` with key `kid` under algorithm `alg` (header `{"alg","typ":"JWT","kid"}`).
    ///
    /// # Panics
    /// When the provider holds no key `kid`, or `alg` does not fit the key.
    pub fn sign(&self, alg: &str, kid: &str, claims: &Value) -> String {
        self.sign_with_header(alg, kid, &json!({}), claims)
    }

    /// Signs `claims` with key `key` under `alg`; the JOSE header is `{"alg","typ":"JWT","kid": key}`
    /// with `header`'s fields laid over it (a `null` removes a field), so a test can lie about
    /// the `kid`, add `jku`, `x5u` or `jwk`, or claim another `alg`. `alg` `"none"` gives an
    /// unsigned token (empty signature) and `key` is then only the header's `kid`.
    ///
    /// # Panics
    /// When the provider holds no key `key`, or `alg` does not fit the key.
    pub fn sign_with_header(&self, alg: &str, key: &str, header: &Value, claims: &Value) -> String {
        let mut fields = Map::new();
        fields.insert("alg".into(), json!(alg));
        fields.insert("typ".into(), json!("JWT"));
        fields.insert("kid".into(), json!(key));
        for (k, v) in header.as_object().into_iter().flatten() {
            if v.is_null() {
                fields.remove(k);
            } else {
                fields.insert(k.clone(), v.clone());
            }
        }
        let message = signing_input(&Value::Object(fields), claims);
        if alg == "none" {
            return format!("{message}.");
        }
        let algorithm = Algorithm::from_str(alg).unwrap_or_else(|_| panic!("unknown JWS algorithm {alg}"));
        let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &self.key(key).encoding, algorithm)
            .unwrap_or_else(|e| panic!("signing with {key} under {alg}: {e}"));
        format!("{message}.{signature}")
    }

    /// The key-confusion attack: an HS256 token under `kid` whose HMAC secret is the bytes of
    /// that key's public PEM (which anyone can fetch), as a verifier that let the token pick
    /// the algorithm would check it.
    ///
    /// # Panics
    /// When the provider holds no key `kid`.
    pub fn sign_hs256_with_public_key(&self, kid: &str, claims: &Value) -> String {
        let header = json!({"alg": "HS256", "typ": "JWT", "kid": kid});
        let message = signing_input(&header, claims);
        let secret = EncodingKey::from_secret(self.key(kid).public_pem.as_bytes());
        let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &secret, Algorithm::HS256).expect("HMAC signing cannot fail");
        format!("{message}.{signature}")
    }

    /// The public JWK of key `kid`, published or not (to embed in a hostile `jwk` header).
    ///
    /// # Panics
    /// When the provider holds no key `kid`.
    pub fn public_jwk(&self, kid: &str) -> Value {
        self.key(kid).jwk.clone()
    }

    fn key(&self, kid: &str) -> &Key {
        self.shared.keys.iter().find(|k| k.kid == kid).unwrap_or_else(|| panic!("the stand-in provider holds no key {kid}"))
    }

    /// Stops accepting and closes every open connection; returns once the port is released.
    pub async fn stop(self) {
        self.server.stop().await;
    }
}

/// `base64url(header).base64url(claims)`: the part a JWS signature covers.
fn signing_input(header: &Value, claims: &Value) -> String {
    format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()))
}

/// A stable opaque user id, as IdPs put in `sub` (distinct from the email a test signs in with).
fn opaque_id(subject: &str) -> String {
    // FNV-1a: stable across runs and platforms, unlike std's hasher.
    let hash = subject.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    format!("00u{hash:016x}")
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

async fn serve_connection(stream: tokio::net::TcpStream, shared: Arc<Shared>) {
    let service = service_fn(move |req| {
        let shared = Arc::clone(&shared);
        async move { Ok::<_, Infallible>(route(&shared, &req)) }
    });
    let _ = hyper::server::conn::http1::Builder::new().timer(TokioTimer::new()).serve_connection(TokioIo::new(stream), service).await;
}

fn route(shared: &Shared, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, DISCOVERY_PATH) => json_response(
            StatusCode::OK,
            &json!({
                "issuer": shared.issuer,
                "jwks_uri": format!("{}{JWKS_PATH}", shared.issuer),
                "id_token_signing_alg_values_supported": ["RS256", "ES256"],
            }),
        ),
        (&Method::GET, JWKS_PATH) => {
            shared.jwks_fetches.fetch_add(1, Ordering::SeqCst);
            json_response(StatusCode::OK, &shared.jwks())
        }
        _ => json_response(StatusCode::NOT_FOUND, &json!({"error": "not_found"})),
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::from(body.to_string())));
    *res.status_mut() = status;
    res.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::jwk::JwkSet;
    use jsonwebtoken::{DecodingKey, Validation};

    async fn get(url: &str) -> (u16, Value) {
        let res = reqwest::get(url).await.expect("GET");
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    fn kids(jwks: &Value) -> Vec<String> {
        jwks["keys"].as_array().into_iter().flatten().filter_map(|k| k["kid"].as_str().map(String::from)).collect()
    }

    #[tokio::test]
    async fn serves_discovery_and_the_published_keys() {
        let idp = OidcStandIn::start().await.unwrap();
        let (status, doc) = get(&format!("{}{DISCOVERY_PATH}", idp.issuer())).await;
        assert_eq!(status, 200);
        assert_eq!(doc["issuer"], idp.issuer());
        assert_eq!(doc["jwks_uri"], idp.jwks_url());
        assert_eq!(doc["id_token_signing_alg_values_supported"], json!(["RS256", "ES256"]));
        assert_eq!(idp.jwks_fetches(), 0, "discovery is not a JWKS fetch");

        let (status, jwks) = get(&idp.jwks_url()).await;
        assert_eq!(status, 200);
        assert_eq!(kids(&jwks), ["rsa-1", "ec-1"]);
        let rsa = &jwks["keys"][0];
        assert_eq!((rsa["kty"].as_str(), rsa["alg"].as_str(), rsa["use"].as_str()), (Some("RSA"), Some("RS256"), Some("sig")));
        assert!(rsa["n"].as_str().is_some_and(|n| n.len() > 300) && rsa["e"] == "AQAB", "RSA-2048 parameters: {rsa}");
        let ec = &jwks["keys"][1];
        assert_eq!((ec["kty"].as_str(), ec["crv"].as_str()), (Some("EC"), Some("P-256")));
        assert!(ec.get("d").is_none() && rsa.get("d").is_none(), "no private parameters are served");
        assert_eq!(idp.jwks_fetches(), 1);
        assert_eq!(get(&format!("{}/nope", idp.issuer())).await.0, 404);
        idp.stop().await;
    }

    #[tokio::test]
    async fn rsa_2_is_served_only_after_publish() {
        let idp = OidcStandIn::start().await.unwrap();
        assert!(!kids(&get(&idp.jwks_url()).await.1).contains(&"rsa-2".to_string()));
        idp.publish("rsa-2");
        idp.publish("rsa-2");
        assert_eq!(kids(&get(&idp.jwks_url()).await.1), ["rsa-1", "ec-1", "rsa-2"]);
        assert_eq!(idp.jwks_fetches(), 2);
        idp.stop().await;
    }

    #[tokio::test]
    async fn signed_tokens_verify_against_the_served_jwks_and_only_their_own() {
        let (idp, other) = (OidcStandIn::start().await.unwrap(), OidcStandIn::start_with(KeySet::B).await.unwrap());
        idp.publish("rsa-2");
        let jwks: JwkSet = serde_json::from_value(get(&idp.jwks_url()).await.1).unwrap();
        let foreign: JwkSet = serde_json::from_value(get(&other.jwks_url()).await.1).unwrap();
        let claims = idp.claims_for("alice@corp.example", &["ml-engineers"], "ai-gateway", 600);
        for (alg, kid) in [("RS256", "rsa-1"), ("ES256", "ec-1"), ("RS256", "rsa-2"), ("RS384", "rsa-1")] {
            let token = idp.sign(alg, kid, &claims);
            let header = jsonwebtoken::decode_header(&token).unwrap();
            assert_eq!(header.kid.as_deref(), Some(kid));
            let algorithm = Algorithm::from_str(alg).unwrap();
            let mut validation = Validation::new(algorithm);
            validation.set_audience(&["ai-gateway"]);
            validation.set_issuer(&[idp.issuer()]);
            let key = DecodingKey::from_jwk(jwks.find(kid).unwrap()).unwrap();
            let data = jsonwebtoken::decode::<Value>(&token, &key, &validation).unwrap_or_else(|e| panic!("{alg}/{kid}: {e}"));
            assert_eq!(data.claims["email"], "alice@corp.example");
            assert!(data.claims["sub"].as_str().is_some_and(|s| s.starts_with("00u")));
            // The same kid at another provider is another key.
            if let Some(jwk) = foreign.find(kid) {
                let other_key = DecodingKey::from_jwk(jwk).unwrap();
                assert!(jsonwebtoken::decode::<Value>(&token, &other_key, &validation).is_err(), "{kid} of set B must not verify set A's token");
            }
        }
        // The committed public PEM is the private key's.
        let token = idp.sign("RS256", "rsa-1", &claims);
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_audience(&["ai-gateway"]);
        let key = DecodingKey::from_rsa_pem(idp.key("rsa-1").public_pem.as_bytes()).unwrap();
        assert!(jsonwebtoken::decode::<Value>(&token, &key, &validation).is_ok());
        idp.stop().await;
        other.stop().await;
    }

    #[tokio::test]
    async fn hostile_tokens_have_the_shapes_they_claim() {
        let idp = OidcStandIn::start().await.unwrap();
        let claims = idp.claims_for("mallory@corp.example", &[], "ai-gateway", 600);
        let confused = idp.sign_hs256_with_public_key("rsa-1", &claims);
        let header = jsonwebtoken::decode_header(&confused).unwrap();
        assert_eq!((header.alg, header.kid.as_deref()), (Algorithm::HS256, Some("rsa-1")));
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&["ai-gateway"]);
        let naive = DecodingKey::from_secret(idp.key("rsa-1").public_pem.as_bytes());
        assert!(jsonwebtoken::decode::<Value>(&confused, &naive, &validation).is_ok(), "HMAC keyed with the public PEM");

        let jku = idp.sign_with_header("RS256", "rsa-1", &json!({"jku": "http://127.0.0.1:1/jwks", "kid": "other", "typ": null}), &claims);
        let header = jsonwebtoken::decode_header(&jku).unwrap();
        assert_eq!((header.jku.as_deref(), header.kid.as_deref(), header.typ), (Some("http://127.0.0.1:1/jwks"), Some("other"), None));

        let none = idp.sign_with_header("none", "rsa-1", &json!({}), &claims);
        assert!(none.ends_with('.') && none.split('.').count() == 3, "unsigned: {none}");
        assert!(idp.public_jwk("rsa-2")["n"].is_string());
        idp.stop().await;
    }

    #[tokio::test]
    async fn stop_releases_the_port() {
        let idp = OidcStandIn::start().await.unwrap();
        let addr = idp.addr();
        idp.stop().await;
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    }
}
