//! The DynamoDB store against a local DynamoDB (moto): conditional writes, expiry at
//! read time, and atomic counters under concurrency.

use aws_sdk_dynamodb::Client;
use gateway_core::route::{Endpoint, Route};
use gateway_core::store::{AuditEntry, RouteSource, Store, TokenRecord};
use gateway_core::token::TokenKind;
use gateway_core::Error;
use gateway_lambda::store::DynamoStore;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Moto(Child);
impl Drop for Moto {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg("--").arg(format!("-{}", self.0.id())).status();
        let _ = self.0.wait();
    }
}

async fn store(table: &str) -> (DynamoStore, Client, Moto) {
    let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
    let child = Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("moto_server (pip install 'moto[server]')");
    let moto = Moto(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "moto_server did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(format!("http://127.0.0.1:{port}"))
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new("test", "test", None, None, "test"))
        .load()
        .await;
    let client = Client::new(&sdk);
    gateway_lambda::table::create_table(&client, table).await.expect("create table");
    (DynamoStore::new(client.clone(), table), client, moto)
}

fn route(name: &str) -> Route {
    Route::new(name, vec![Endpoint::new("a", "http://10.0.0.1:8000")])
}

fn record(id: &str, expires_at: u64) -> TokenRecord {
    TokenRecord {
        rate_limit_rpm: None,
        id: id.into(),
        subject: "s".into(),
        kind: TokenKind::User,
        groups: vec![],
        routes: None,
        description: String::new(),
        metadata: Default::default(),
        created_by: "ops".into(),
        created_at: 0,
        expires_at,
        revoked_at: None,
        last_used_at: None,
        request_count: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_writes_refuse_lost_updates_and_duplicates() {
    let (s, _c, _m) = store("cond").await;
    let r = route("llama");
    s.put_route(&r, None).await.expect("create");
    // Creating again as if it did not exist: refused, not overwritten.
    assert!(matches!(s.put_route(&r, None).await, Err(Error::Conflict(_))));
    // Replacing on the basis of a stale read: refused.
    let mut newer = r.clone();
    newer.auth.groups = vec!["ml-team".into()];
    s.put_route(&newer, Some(&r)).await.expect("replace what we read");
    let mut stale = r.clone();
    stale.enabled = false;
    assert!(matches!(s.put_route(&stale, Some(&r)).await, Err(Error::Conflict(_))));
    assert_eq!(s.route("llama").await.unwrap().unwrap().auth.groups, vec!["ml-team".to_string()]);
    // Revoking twice: the second is a conflict.
    let mut rec = record("tok_a", 4_000_000_000);
    s.put_token(&rec).await.unwrap();
    rec.revoked_at = Some(1);
    s.revoke(&rec).await.unwrap();
    assert!(matches!(s.revoke(&rec).await, Err(Error::Conflict(_))));
    assert!(s.is_revoked("tok_a").await.unwrap());
    assert!(!s.is_revoked("tok_b").await.unwrap());
    // A lease on a route that does not exist is refused.
    let mut lease = Endpoint::new("l", "http://10.0.0.2:8000");
    lease.lease_expires_at = Some(4_000_000_000);
    assert!(matches!(s.put_lease("nope", &lease).await, Err(Error::Conflict(_))));
    s.put_lease("llama", &lease).await.unwrap();
    assert_eq!(s.leases("llama").await.unwrap().len(), 1);
    assert!(s.delete_lease("llama", "l").await.unwrap());
    assert!(!s.delete_lease("llama", "l").await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_is_checked_at_read_time() {
    let (s, _c, _m) = store("expiry").await;
    let now = 1_900_000_000;
    // Items past their time are still in the table (TTL deletes late); reads must not use them.
    let mut eph = route("abcdefghijklmnop");
    eph.expires_at = Some(now - 1);
    s.put_ephemeral(&eph).await.unwrap();
    let read = s.ephemeral("abcdefghijklmnop").await.unwrap().expect("still stored");
    assert!(!read.is_active(now), "an expired ephemeral route is not served");
    s.put_route(&route("r"), None).await.unwrap();
    let mut lease = Endpoint::new("old", "http://10.0.0.3:8000");
    lease.lease_expires_at = Some(now - 1);
    s.put_lease("r", &lease).await.unwrap();
    let leases = s.leases("r").await.unwrap();
    assert_eq!(leases.len(), 1, "still stored");
    assert!(!leases[0].is_live(now), "an ended lease is not live");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_counters_lose_nothing() {
    let (s, _c, _m) = store("counters").await;
    s.put_token(&record("tok_c", 4_000_000_000)).await.unwrap();
    let n = 40;
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move { s.record_use("tok_c", 1000 + i).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let rec = s.token("tok_c").await.unwrap().unwrap();
    assert_eq!(rec.request_count, n);
    assert!(rec.last_used_at.is_some());
    // Counting a token without a record (minted offline) is a no-op, not an error.
    s.record_use("tok_unknown", 1).await.unwrap();
    assert!(s.token("tok_unknown").await.unwrap().is_none());

    // Audit sequence numbers come from an atomic counter: concurrent appends get distinct places.
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                s.append_audit(AuditEntry { seq: 0, at: i, actor: "a".into(), actor_token: None, action: "x".into(), object: format!("o{i}"), outcome: "ok".into() }).await
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let log = s.audit(None, 100).await.unwrap();
    assert_eq!(log.len(), 20);
    let seqs: Vec<u64> = log.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=20).rev().collect::<Vec<_>>(), "newest first, no gaps or repeats");
    let page = s.audit(Some(11), 5).await.unwrap();
    assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![10, 9, 8, 7, 6]);
}
