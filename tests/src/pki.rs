//! A throw-away certificate authority for TLS tests, issued by the same code
//! as the stack's certificate custom resource (`css_certs::issue`): a CA, a
//! member certificate for 127.0.0.1 (etcd's server and peer certificate),
//! and the functions' client certificate, as PEM files in a directory.

use std::path::{Path, PathBuf};

#[derive(Clone)]
pub struct TestPki {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    path
}

impl TestPki {
    /// Issues the certificates into `dir`.
    pub fn issue(dir: &Path) -> TestPki {
        let loopback = std::net::Ipv4Addr::LOCALHOST.into();
        let issued = css_certs::issue("css-test", &[loopback], &["localhost".to_string()])
            .expect("test certificates");
        TestPki::write(dir, &issued.ca, &issued.members[0], &issued.client)
    }

    /// PEM text (as the custom resource's secrets hold it) as files in `dir`.
    pub fn write(
        dir: &Path,
        ca: &str,
        member: &css_certs::Pem,
        client: &css_certs::Pem,
    ) -> TestPki {
        TestPki {
            ca: write(dir, "ca.pem", ca),
            server_cert: write(dir, "server.pem", &member.cert),
            server_key: write(dir, "server-key.pem", &member.key),
            client_cert: write(dir, "client.pem", &client.cert),
            client_key: write(dir, "client-key.pem", &client.key),
        }
    }
}
