//! css-record: prints a stored record as JSON. Reads one value on stdin as
//! etcd holds it (compressed, first byte `Z`, or plain JSON, first byte
//! `{`), e.g. `etcdctl get KEY --print-value-only | css-record`.
#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut value = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut value) {
        eprintln!("css-record: reading stdin: {e}");
        return ExitCode::from(1);
    }
    match css::store::decode_printed(&value) {
        Ok(json) => {
            let mut out = std::io::stdout();
            let _ = out.write_all(&json).and_then(|_| out.write_all(b"\n"));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("css-record: not a record value: {e}");
            ExitCode::from(1)
        }
    }
}
