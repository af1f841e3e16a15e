//! cssctl: see `cssctl --help`.
#![forbid(unsafe_code)]

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = css_client::cli::Cli::parse();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let code = css_client::cli::run(cli, &mut out).await;
    let _ = std::io::Write::flush(&mut out);
    code
}
