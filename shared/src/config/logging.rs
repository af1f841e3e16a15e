//! Structured logs: JSON in Lambda, text for people in server mode.

/// Structured logs: JSON in Lambda (with the runtime's request-id spans),
/// plain text for people in server mode.
pub fn init_logging(json: bool, level: Option<&str>) {
    use tracing_subscriber::{layer::SubscriberExt, util::SubscriberInitExt};
    let wanted = level
        .map(str::to_owned)
        .or_else(|| std::env::var("RUST_LOG").ok());
    let (filter, refused) = log_filter(wanted.as_deref());
    // Colour only on a terminal: redirected logs stay plain text.
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = if json {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .finish()
            .with(filter)
            .try_init()
    } else {
        builder.finish().with(filter).try_init()
    };
    if let Some((spec, e)) = refused {
        tracing::warn!(log_level = %spec, error = %e, "not a log filter; logging at info");
    }
}

/// The log filter for CSS_LOG_LEVEL / RUST_LOG: a level, or `target=level`
/// pairs. `Targets` parses these without EnvFilter's regex engine, which was
/// ~0.5 MB of every Lambda binary. What does not parse falls back to info and
/// is handed back, to be logged once logging is up.
fn log_filter(
    spec: Option<&str>,
) -> (
    tracing_subscriber::filter::Targets,
    Option<(String, tracing_subscriber::filter::ParseError)>,
) {
    use tracing_subscriber::filter::Targets;
    let info = || Targets::new().with_default(tracing::Level::INFO);
    // An empty filter would enable nothing: treat it as unset.
    let spec = spec.map(str::trim).filter(|s| !s.is_empty());
    match spec.map(|s| (s, s.parse::<Targets>())) {
        None => (info(), None),
        Some((_, Ok(targets))) => (targets, None),
        Some((s, Err(e))) => (info(), Some((s.to_owned(), e))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_filters_take_levels_and_targets() {
        use tracing::Level;
        let (f, refused) = log_filter(Some("warn,css::ingest=debug"));
        assert!(refused.is_none());
        assert!(f.would_enable("css::ingest", &Level::DEBUG));
        assert!(!f.would_enable("css::api", &Level::INFO));
        assert!(f.would_enable("hyper", &Level::WARN));

        for unset in [None, Some(""), Some("  ")] {
            let (f, refused) = log_filter(unset);
            assert!(refused.is_none());
            assert!(f.would_enable("css", &Level::INFO));
            assert!(!f.would_enable("css", &Level::DEBUG));
        }

        let (f, refused) = log_filter(Some("css=loud"));
        assert_eq!(refused.map(|(s, _)| s).as_deref(), Some("css=loud"));
        assert!(f.would_enable("css", &Level::INFO));
        assert!(!f.would_enable("css", &Level::DEBUG));
    }
}
