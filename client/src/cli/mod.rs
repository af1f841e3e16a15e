//! `cssctl`: list, describe and watch tasks, container instances and
//! services, and manage subscriptions, from a terminal.

use std::collections::HashMap;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use chrono::Utc;
use futures::TryStreamExt;

use crate::types::{ContainerInstance, Entity, Filters, Item, Resource, Service, Task};
use crate::{Client, Error, RetryNotice, Signing, WatchEvent};

mod args;
mod table;
mod yaml;

pub use args::*;

use table::table;
pub use table::Row;

/// Distinct exit codes per kind of failure.
pub fn exit_code(e: &Error) -> u8 {
    match e {
        Error::Unreachable { .. } | Error::Unavailable(_) => 3,
        Error::Forbidden { .. } => 4,
        Error::BadRequest { .. } => 5,
        Error::NotFound(_) | Error::Expired(_) => 6,
        Error::Server { .. } => 7,
        Error::Credentials(_) => 8,
        Error::Decode(_) => 9,
    }
}

/// What to tell a person, with what to do about it.
pub fn explain(e: &Error) -> String {
    match e {
        Error::Unreachable { endpoint, message } => format!(
            "cannot reach {endpoint} ({message}). Is the service running? \
             Start server mode with scripts/run.sh, or pass --endpoint / set CSS_ENDPOINT."
        ),
        Error::Unavailable(m) => {
            format!("the service is unavailable ({m}); its store may be down. Retry later.")
        }
        Error::Forbidden {
            status,
            endpoint,
            message,
            signed_as,
        } => match signed_as {
            Some(key) => format!(
                "{status} from {endpoint}: {message}. Requests were signed with access key {key}; \
                 that identity needs execute-api:Invoke on this API (check AWS_PROFILE / credentials)."
            ),
            None => format!(
                "{status} from {endpoint}: {message}. Requests were not signed; \
                 use --sign always for an API Gateway custom domain."
            ),
        },
        Error::BadRequest { parameter, message } => match parameter {
            Some(p) => format!("the service refused parameter '{p}': {message}"),
            None => format!("the service refused the request: {message}"),
        },
        other => other.to_string(),
    }
}

pub async fn run(cli: Cli, out: &mut dyn Write) -> ExitCode {
    if let Some((flag, kind, takes)) = foreign_flag(&cli) {
        eprintln!("cssctl: {kind} do not take {flag}; they take {takes}");
        return ExitCode::from(2);
    }
    match execute(cli, out).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = out.flush();
            eprintln!("cssctl: {}", explain(&e));
            ExitCode::from(exit_code(&e))
        }
    }
}

async fn execute(cli: Cli, out: &mut dyn Write) -> Result<(), Error> {
    let signing = match cli.sign {
        SignArg::Auto => Signing::Auto,
        SignArg::Always => Signing::Always,
        SignArg::Never => Signing::Never,
    };
    let client = Client::new(&cli.endpoint, signing).await?;
    match cli.command {
        Command::Tasks(a) => list::<Task>(&client, &a, out).await,
        Command::Instances(a) => list::<ContainerInstance>(&client, &a, out).await,
        Command::Services(a) => list::<Service>(&client, &a, out).await,
        Command::Describe { kind, cluster, id } => {
            let v = match kind {
                DescribeKind::Task => to_json(&client.describe::<Task>(&cluster, &id).await?),
                DescribeKind::Instance => {
                    to_json(&client.describe::<ContainerInstance>(&cluster, &id).await?)
                }
                DescribeKind::Service => to_json(&client.describe::<Service>(&cluster, &id).await?),
            };
            print(out, &format!("{v:#}\n"))
        }
        Command::Subscriptions(s) => subscriptions(&client, s, out).await,
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or_default()
}

fn to_yaml<T: serde::Serialize>(v: &T) -> Result<String, Error> {
    let v = serde_json::to_value(v).map_err(|e| Error::Decode(format!("writing YAML: {e}")))?;
    Ok(yaml::to_string(&v))
}

fn print(out: &mut dyn Write, s: &str) -> Result<(), Error> {
    // A closed pipe (`| head`) ends the output quietly.
    match out.write_all(s.as_bytes()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => Err(Error::Decode(format!("writing output: {e}"))),
    }
}

async fn subscriptions(client: &Client, cmd: SubCommand, out: &mut dyn Write) -> Result<(), Error> {
    let v = match cmd {
        SubCommand::Create {
            resource,
            filters,
            since,
        } => {
            let r = match resource {
                ResourceArg::Tasks => Resource::Tasks,
                ResourceArg::Instances => Resource::Instances,
                ResourceArg::Services => Resource::Services,
            };
            to_json(&client.create_subscription(r, &filters, since).await?)
        }
        SubCommand::Get { id } => to_json(&client.subscription(&id).await?),
        SubCommand::Events { id, ack, wait } => {
            let sub = client.subscription(&id).await?;
            let wait = Duration::from_secs(wait);
            match sub.resource.as_str() {
                "instances" => events_json::<ContainerInstance>(client, &id, ack, wait).await?,
                "services" => events_json::<Service>(client, &id, ack, wait).await?,
                _ => events_json::<Task>(client, &id, ack, wait).await?,
            }
        }
        SubCommand::Delete { id } => {
            client.delete_subscription(&id).await?;
            return print(out, &format!("subscription {id} deleted\n"));
        }
    };
    print(out, &format!("{v:#}\n"))
}

/// One subscription poll, as the API answered it.
async fn events_json<T: Entity>(
    client: &Client,
    id: &str,
    ack: Option<i64>,
    wait: Duration,
) -> Result<serde_json::Value, Error> {
    let b = client.subscription_events::<T>(id, ack, wait).await?;
    let events: Vec<serde_json::Value> = b
        .events
        .iter()
        .map(|c| {
            let t = match c.kind {
                crate::types::ChangeKind::Put => "PUT",
                crate::types::ChangeKind::Delete => "DELETE",
            };
            serde_json::json!({"type": t, "revision": c.revision, "item": to_json(&c.item)})
        })
        .collect();
    Ok(serde_json::json!({"events": events, "revision": b.revision, "more": b.more}))
}

async fn list<T: Row>(client: &Client, a: &ListArgs, out: &mut dyn Write) -> Result<(), Error> {
    let filters = a.filters.clone();
    if a.watch {
        return watch::<T>(client, filters, a, out).await;
    }
    let wide = a.output == Output::Wide;
    let now = Utc::now();
    let pages = client.pages::<T>(filters, Some(a.page_size));
    futures::pin_mut!(pages);
    let mut first = true;
    let mut empty = true;
    // JSON: one array, written page by page.
    if a.output == Output::Json {
        print(out, "[")?;
    }
    while let Some(page) = pages.try_next().await? {
        match a.output {
            Output::Json => {
                let mut s = String::new();
                for item in &page.items {
                    s.push_str(if empty { "\n  " } else { ",\n  " });
                    s.push_str(&serde_json::to_string(item).unwrap_or_default());
                    empty = false;
                }
                print(out, &s)?;
            }
            // One YAML sequence: each page's items are more of its entries.
            Output::Yaml => {
                if !page.items.is_empty() {
                    empty = false;
                    print(out, &to_yaml(&page.items)?)?;
                }
            }
            Output::Table | Output::Wide => {
                let rows: Vec<Vec<String>> =
                    page.items.iter().map(|i| T::row(i, wide, now)).collect();
                if !rows.is_empty() {
                    empty = false;
                }
                let header = T::header(wide);
                let header = (first && !a.no_headers).then_some(&header[..]);
                print(out, &table(header, &rows))?;
                first = false;
            }
        }
    }
    match a.output {
        Output::Json => print(out, if empty { "]\n" } else { "\n]\n" }),
        Output::Yaml if empty => print(out, "[]\n"),
        _ => Ok(()),
    }
}

/// One line per change; a resync prints the difference to what was shown.
async fn watch<T: Row>(
    client: &Client,
    filters: Filters,
    a: &ListArgs,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let output = a.output;
    let wide = output == Output::Wide;
    // Retries and resyncs go to stderr, so a person sees why nothing moves
    // and a script's stdout stays the stream of changes.
    let mut client = client.clone();
    client.on_retry = Some(RetryNotice(std::sync::Arc::new(|e, pause| {
        eprintln!(
            "cssctl: watch: {}; retrying in {:.1}s",
            explain(e),
            pause.as_secs_f64()
        );
    })));
    let mut w = client.watch::<T>(filters);
    let mut header_done = a.no_headers;
    // What this watch has shown: ARN -> the item as last printed.
    let mut shown: HashMap<String, Item<T>> = HashMap::new();
    loop {
        let mut lines: Vec<(&'static str, Item<T>)> = Vec::new();
        let event = w.next().await?;
        if let WatchEvent::Resync {
            revision, cause, ..
        } = &event
        {
            eprintln!(
                "cssctl: watch: {cause}; listed again at revision {revision} and printing the difference"
            );
        }
        match event {
            WatchEvent::Listed { items, .. } | WatchEvent::Resync { items, .. } => {
                let mut fresh: HashMap<String, Item<T>> = items
                    .into_iter()
                    .map(|i| (i.entity.arn().to_string(), i))
                    .collect();
                let mut gone: Vec<String> = shown
                    .keys()
                    .filter(|k| !fresh.contains_key(*k))
                    .cloned()
                    .collect();
                gone.sort();
                for k in gone {
                    if let Some(old) = shown.remove(&k) {
                        lines.push(("DELETED", old));
                    }
                }
                let mut keys: Vec<String> = fresh.keys().cloned().collect();
                keys.sort();
                for k in keys {
                    let Some(item) = fresh.remove(&k) else {
                        continue;
                    };
                    match shown.get(&k) {
                        None => lines.push(("ADDED", item)),
                        Some(old) if old.metadata != item.metadata => {
                            lines.push(("MODIFIED", item))
                        }
                        Some(_) => {}
                    }
                }
            }
            WatchEvent::Added(i, _) => lines.push(("ADDED", i)),
            WatchEvent::Modified(i, _) => lines.push(("MODIFIED", i)),
            WatchEvent::Deleted(i, _) => lines.push(("DELETED", i)),
        }
        let now = Utc::now();
        let mut text = String::new();
        let mut rows = Vec::new();
        for (kind, item) in lines {
            match output {
                Output::Json => {
                    text.push_str(
                        &serde_json::json!({"type": kind, "item": to_json(&item)}).to_string(),
                    );
                    text.push('\n');
                }
                // One YAML document per change, as `kubectl get -w -o yaml`.
                Output::Yaml => {
                    text.push_str("---\n");
                    text.push_str(&to_yaml(
                        &serde_json::json!({"type": kind, "item": to_json(&item)}),
                    )?);
                }
                _ => {
                    let mut r = vec![kind.to_string()];
                    r.extend(T::row(&item, wide, now));
                    rows.push(r);
                }
            }
            let arn = item.entity.arn().to_string();
            if kind == "DELETED" {
                shown.remove(&arn);
            } else {
                shown.insert(arn, item);
            }
        }
        if !rows.is_empty() {
            let mut header = vec!["EVENT"];
            header.extend(T::header(wide));
            // Fixed widths keep a stream of single lines aligned.
            let rows: Vec<Vec<String>> = rows
                .into_iter()
                .map(|r| r.into_iter().map(|c| format!("{c:<10}")).collect())
                .collect();
            text.push_str(&table((!header_done).then_some(&header[..]), &rows));
            header_done = true;
        }
        if !text.is_empty() {
            print(out, &text)?;
            let _ = out.flush();
        }
    }
}
