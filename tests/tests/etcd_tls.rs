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
