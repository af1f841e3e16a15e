//! Settings: validation, TLS by scheme, secrets kept out of logs.

use super::*;
use crate::testing::store_args as args;

#[test]
fn first_line_of_clap_errors() {
    assert_eq!(
        first_line("error: invalid value\n\nUsage: x"),
        "invalid value"
    );
}

#[test]
fn validation_names_the_setting() {
    let mut args = args(&["http://127.0.0.1:2379"]);
    args.etcd_username = Some("u".into());
    assert!(args
        .etcd_settings()
        .unwrap_err()
        .to_string()
        .contains("CSS_ETCD_USERNAME"));
    args.etcd_username = None;
    args.etcd_ca_file = Some("/nonexistent/ca.pem".into());
    assert!(args
        .etcd_settings()
        .unwrap_err()
        .to_string()
        .contains("CSS_ETCD_CA_FILE"));
    args.etcd_ca_file = None;
    args.key_prefix = "x".into();
    assert!(args
        .etcd_settings()
        .unwrap_err()
        .to_string()
        .contains("CSS_KEY_PREFIX"));
}

#[test]
fn the_record_cache_takes_mebibytes_and_zero_turns_it_off() {
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        store: StoreArgs,
    }
    use clap::Parser;
    let parse = |extra: &[&str]| {
        let mut argv = vec!["css", "--etcd-endpoints", "http://127.0.0.1:2379"];
        argv.extend_from_slice(extra);
        Cli::try_parse_from(argv).map(|c| c.store.etcd_settings().unwrap().record_cache_mib)
    };
    assert_eq!(
        parse(&[]).unwrap(),
        Some(crate::store::etcd::DEFAULT_RECORD_CACHE_MIB)
    );
    for (arg, want) in [("0", 0), ("1", 1), ("512", 512), ("16384", 16384)] {
        let arg = format!("--record-cache-mb={arg}");
        assert_eq!(parse(&[&arg]).unwrap(), Some(want), "{arg}");
    }
    for bad in ["-1", "16385", "64MB", ""] {
        let arg = format!("--record-cache-mb={bad}");
        let e = first_line(&parse(&[&arg]).unwrap_err().to_string());
        assert!(e.contains("CSS_RECORD_CACHE_MB"), "{bad}: {e}");
    }
}

#[test]
fn tls_follows_the_https_scheme() {
    let https = args(&["https://10.0.0.5:2379", "https://10.0.0.6:2379"])
        .etcd_settings()
        .unwrap();
    assert!(
        https.tls,
        "https:// without a CA file: TLS on the system's roots"
    );
    assert!(https.ca_pem.is_none());
    assert!(
        !args(&["http://127.0.0.1:2379"])
            .etcd_settings()
            .unwrap()
            .tls
    );
    assert!(!args(&["127.0.0.1:2379"]).etcd_settings().unwrap().tls);

    let ca = tempfile_with("ca");
    let mut a = args(&["10.0.0.5:2379"]);
    a.etcd_ca_file = Some(ca.clone());
    assert!(a.etcd_settings().unwrap().tls, "no scheme + CA: TLS");
    a.etcd_endpoints = vec!["http://10.0.0.5:2379".into()];
    let e = a.etcd_settings().unwrap_err().to_string();
    assert!(
        e.contains("CSS_ETCD_CA_FILE") && e.contains("https://"),
        "{e}"
    );
    let e = args(&["http://a:2379", "https://b:2379"])
        .etcd_settings()
        .unwrap_err()
        .to_string();
    assert!(e.contains("CSS_ETCD_ENDPOINTS"), "{e}");
    let _ = std::fs::remove_file(ca);
}

fn tempfile_with(text: &str) -> String {
    let path = std::env::temp_dir().join(format!("css-config-test-{}", rand::random::<u64>()));
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

#[test]
fn passwords_over_plain_http_warn_once() {
    let mut a = args(&["http://127.0.0.1:2379"]);
    a.etcd_username = Some("root".into());
    a.etcd_password = Some(Secret("hunter2".into()));
    assert_eq!(a.etcd_settings().unwrap().warnings().len(), 1);
    a.etcd_endpoints = vec!["https://127.0.0.1:2379".into()];
    assert!(a.etcd_settings().unwrap().warnings().is_empty());
    a.etcd_password = None;
    a.etcd_username = None;
    a.etcd_endpoints = vec!["http://127.0.0.1:2379".into()];
    assert!(a.etcd_settings().unwrap().warnings().is_empty());
}

#[test]
fn debug_never_prints_the_password() {
    let mut a = args(&["https://127.0.0.1:2379"]);
    a.etcd_username = Some("root".into());
    a.etcd_password = Some(Secret("hunter2-secret".into()));
    let settings = a.etcd_settings().unwrap();
    for text in [format!("{a:?}"), format!("{a:#?}"), format!("{settings:?}")] {
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("***"), "{text}");
    }
    assert_eq!(settings.password.as_deref(), Some("hunter2-secret"));
}

#[test]
fn a_lambda_keeps_the_record_cache_within_half_its_memory() {
    for (asked, memory, kept, lowered) in [
        (64, 256, 64, None),
        (128, 256, 128, None),
        (129, 256, 128, Some(129)),
        (1024, 512, 256, Some(1024)),
        (0, 128, 0, None),
    ] {
        let mut a = args(&[]);
        a.record_cache_mb = asked;
        assert_eq!(a.fit_record_cache(memory), lowered, "{asked} of {memory}");
        assert_eq!(a.record_cache_mb, kept, "{asked} of {memory}");
    }
}
