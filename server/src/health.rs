//! `css-server healthcheck`: the container image's health check. The image
//! has no shell and no curl, so the binary asks its own server's `/v1/ping`
//! at CSS_BIND (loopback when it binds every address) and exits 0 on 200.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// Where a health check reaches a server bound to `bind`.
pub fn ping_url(bind: SocketAddr) -> String {
    let ip = match bind.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}/v1/ping", SocketAddr::new(ip, bind.port()))
}

/// Asks the server at `bind` for /v1/ping within 4 s.
pub async fn check(bind: SocketAddr) -> Result<(), String> {
    let url = ping_url(bind);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(4))
        .build()
        .map_err(|e| e.to_string())?;
    let res = client
        .get(&url)
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    match res.status().as_u16() {
        200 => Ok(()),
        s => Err(format!("{url} answered {s}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_address_is_asked_on_loopback() {
        let url = |b: &str| ping_url(b.parse().expect("address"));
        assert_eq!(url("0.0.0.0:3000"), "http://127.0.0.1:3000/v1/ping");
        assert_eq!(url("[::]:8080"), "http://[::1]:8080/v1/ping");
        assert_eq!(url("10.0.0.5:3000"), "http://10.0.0.5:3000/v1/ping");
    }
}
