//! etcd over TLS: a real etcd with mutual TLS (certificates from a test CA),
//! reached through the service's own settings (CSS_ETCD_* as the Lambdas
//! and server mode read them). TLS follows the endpoints' https:// scheme.

use css::config::StoreArgs;
use css::model::Kind;
use css::store::{ListRequest, StateStore};
use css_tests::fixtures::{entity, store_args, task_detail, ACCOUNT};
use css_tests::EtcdServer;

fn args(etcd: &EtcdServer) -> StoreArgs {
    let pki = etcd.tls.as_ref().expect("a TLS etcd");
    let path = |p: &std::path::PathBuf| Some(p.to_string_lossy().into_owned());
    StoreArgs {
        etcd_ca_file: path(&pki.ca),
        etcd_cert_file: path(&pki.client_cert),
        etcd_key_file: path(&pki.client_key),
        ..store_args(vec![etcd.endpoint()])
    }
}

/// A write and a read through the store: the connection really works.
async fn round_trip(store: &dyn StateStore) {
    let e = entity(
        Kind::Task,
        &task_detail("tls", ACCOUNT, "t1", "RUNNING", 1, true),
    );
    store
        .upsert_if_newer(css::store::Upsert::event(&e))
        .await
        .unwrap();
    let page = store
        .list(&ListRequest {
            kind: Kind::Task,
            cluster: css::store::ClusterScope::All,
            status: None,
            start_after: None,
            limit: 10,
            revision: None,
        })
        .await
        .unwrap();
    assert_eq!(page.records.len(), 1);
}

/// Connects, then reads; a TLS failure shows on the first request.
async fn reachable(a: &StoreArgs) -> Result<(), String> {
    let store = a.connect_etcd().await.map_err(|e| e.to_string())?;
    store
        .current_revision()
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn mutual_tls_with_the_settings_ca_and_client_certificate() {
    let etcd = EtcdServer::start_tls();
    let a = args(&etcd);
    let store = a.connect_etcd().await.expect("connect over mutual TLS");
    round_trip(store.as_ref()).await;

    // etcd requires a client certificate: without one, nothing is served.
    let mut no_client_cert = a.clone();
    no_client_cert.etcd_cert_file = None;
    no_client_cert.etcd_key_file = None;
    let e = reachable(&no_client_cert)
        .await
        .expect_err("no client certificate");
    eprintln!("without a client certificate: {e}");
    assert!(e.contains("requires a client certificate"), "{e}");

    // TLS follows the scheme: the same files with http:// are refused up
    // front, naming the setting.
    let mut plain = a.clone();
    plain.etcd_endpoints = vec![etcd.endpoint().replace("https://", "http://")];
    let e = plain
        .connect_etcd()
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(e.contains("CSS_ETCD_CA_FILE"), "{e}");
}

/// An https:// endpoint without CSS_ETCD_CA_FILE verifies the server against
/// the system's trusted roots (here: SSL_CERT_FILE naming the test CA, as an
/// operator's corporate CA would be installed), instead of trusting nothing.
#[tokio::test]
async fn https_without_a_ca_file_uses_the_system_roots() {
    let etcd = EtcdServer::start_tls();
    let mut a = args(&etcd);
    a.etcd_ca_file = None;
    // Only this test in this binary reads the system roots (the other one
    // names its CA), so setting the variable here races with nothing.
    std::env::set_var("SSL_CERT_FILE", &etcd.tls.as_ref().unwrap().ca);
    let store = a
        .connect_etcd()
        .await
        .expect("the system roots hold the CA");
    round_trip(store.as_ref()).await;

    // The roots really verify: a server certificate they do not hold fails.
    let other = tempfile::tempdir().unwrap();
    let stranger = css_tests::pki::TestPki::issue(other.path());
    std::env::set_var("SSL_CERT_FILE", &stranger.ca);
    let e = reachable(&a).await.expect_err("an unknown CA is refused");
    eprintln!("with a CA that did not sign etcd's certificate: {e}");
    assert!(e.contains("not signed by the CA"), "{e}");
}

/// A client certificate renewed in place (CSS_ETCD_CERT_FILE and
/// CSS_ETCD_KEY_FILE rewritten, as cert-manager or a mounted secret does):
/// once the one read at start-up has expired, etcd refuses the next
/// connection; the store reads the files again, reconnects and answers,
/// with no failed request.
#[tokio::test]
async fn a_client_certificate_renewed_in_its_files_is_read_again() {
    let dir = tempfile::tempdir().expect("temp dir");
    let issued = css_certs::issue("css-test", &["127.0.0.1".parse().expect("ip")], &[])
        .expect("certificates");
    let ca = |lifetime: std::time::Duration| {
        let pem = css_certs::Pem {
            cert: issued.ca.clone(),
            key: issued.ca_key.clone(),
        };
        css_certs::Ca::existing("css-test", pem, lifetime).expect("the CA")
    };
    let short = ca(std::time::Duration::from_secs(2))
        .client("css-test")
        .expect("client certificate");
    let pki = css_tests::pki::TestPki::write(dir.path(), &issued.ca, &issued.members[0], &short);
    let mut etcd = EtcdServer::start_with_pki(pki);
    let a = args(&etcd);
    let store = a.connect_etcd().await.expect("connect over mutual TLS");
    round_trip(store.as_ref()).await;
    assert_eq!(store.tls_reloads(), 0);

    // The certificate ends; a renewal rewrites the files; the connection
    // breaks (etcd restarts), so the next request needs a new handshake.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let expires = store.tls_expires().expect("a client certificate");
    assert!(expires <= std::time::SystemTime::now(), "expired");
    let renewed = ca(std::time::Duration::from_secs(86_400))
        .client("css-test")
        .expect("renewed certificate");
    let pki = etcd.tls.clone().expect("TLS");
    std::fs::write(&pki.client_cert, &renewed.cert).expect("write certificate");
    std::fs::write(&pki.client_key, &renewed.key).expect("write key");
    etcd.restart();
    let revision = store.current_revision().await;
    assert!(revision.is_ok(), "{revision:?}");
    assert_eq!(store.tls_reloads(), 1);
    assert!(store
        .tls_expires()
        .is_some_and(|t| t > std::time::SystemTime::now()));

    // Without a renewal (the expired files), etcd's refusal is the error,
    // named, and files read again unchanged are not taken for new ones.
    std::fs::write(&pki.client_cert, &short.cert).expect("write certificate");
    std::fs::write(&pki.client_key, &short.key).expect("write key");
    match a.connect_etcd().await {
        Err(e) => assert!(e.to_string().contains("refused"), "{e}"),
        Ok(s) => {
            let r = s.current_revision().await;
            assert!(r.is_err(), "an expired certificate was accepted");
            assert_eq!(s.tls_reloads(), 0);
        }
    }
}
