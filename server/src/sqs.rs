//! Long-polls an SQS queue and applies messages through the ingest code,
//! deleting only what the Lambda event source would treat as succeeded.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, Message as SqsMessage};
use aws_sdk_sqs::Client;
use css::ecs::{EcsSource, RunScope};
use css::ingest::{apply, Describer, Message};
use css::store::StateStore;
use tokio::sync::watch;

/// Messages per receive: the SQS maximum (and the Lambda default batch).
const BATCH: i32 = 10;
const WAIT_SECONDS: i32 = 20;

/// DeleteMessageBatch entries for received messages (ids unique per batch).
pub fn delete_entries<'a>(
    msgs: impl Iterator<Item = &'a SqsMessage>,
) -> Vec<DeleteMessageBatchRequestEntry> {
    msgs.enumerate()
        .filter_map(|(i, m)| {
            DeleteMessageBatchRequestEntry::builder()
                .id(format!("m{i}"))
                .set_receipt_handle(m.receipt_handle.clone())
                .build()
                .ok()
        })
        .collect()
}

/// A pause from the upper half of `backoff`: pollers of one queue that fail
/// together (an SQS or network outage) do not retry in lockstep.
fn jittered(backoff: Duration) -> Duration {
    backoff.mul_f64(rand::random_range(0.5..=1.0))
}

pub async fn poll(
    client: Client,
    queue_url: String,
    store: Arc<dyn StateStore>,
    ecs: Option<(Arc<dyn EcsSource>, RunScope)>,
    mut stop: watch::Receiver<bool>,
) {
    // Server mode reads its own account and Region (members: the stack's
    // css-ingest and css-reconcile).
    let describer = ecs.as_ref().map(|(ecs, scope)| Describer {
        ecs: ecs.as_ref(),
        scope,
        members: None,
    });
    let mut backoff = Duration::from_millis(500);
    loop {
        let receive = client
            .receive_message()
            .queue_url(&queue_url)
            .max_number_of_messages(BATCH)
            .wait_time_seconds(WAIT_SECONDS)
            .send();
        let resp = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            r = receive => r,
        };
        let msgs = match resp {
            Ok(r) => {
                backoff = Duration::from_millis(500);
                r.messages.unwrap_or_default()
            }
            Err(e) => {
                let pause = jittered(backoff);
                tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(&e), pause_ms = pause.as_millis() as u64, "receiving from SQS failed; retrying");
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => return,
                    _ = tokio::time::sleep(pause) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(20));
                continue;
            }
        };
        if msgs.is_empty() {
            continue;
        }
        let batch: Vec<Message> = msgs
            .iter()
            .map(|m| Message {
                id: m.message_id.clone(),
                body: m.body.clone(),
            })
            .collect();
        let started = std::time::Instant::now();
        let outcome = apply(store.as_ref(), describer, &batch).await;
        outcome.record(store.as_ref(), started.elapsed()).await;
        let mut failed = vec![false; msgs.len()];
        for (i, f) in &outcome.failures {
            failed[*i] = true;
            tracing::warn!(message_id = msgs[*i].message_id.as_deref().unwrap_or("-"), error = %f, "message not applied; left on the queue");
        }
        let entries = delete_entries(
            msgs.iter()
                .zip(&failed)
                .filter(|(_, failed)| !**failed)
                .map(|(m, _)| m),
        );
        if entries.is_empty() {
            continue;
        }
        match client
            .delete_message_batch()
            .queue_url(&queue_url)
            .set_entries(Some(entries))
            .send()
            .await
        {
            Ok(r) => {
                for f in r.failed {
                    tracing::warn!(
                        id = f.id,
                        code = f.code,
                        "delete failed; the message will be redelivered"
                    );
                }
            }
            // Redelivered later: harmless, the version guard makes it a no-op.
            Err(e) => {
                tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(&e), "delete batch failed")
            }
        }
        tracing::debug!(stats = ?outcome.stats, "applied SQS batch");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_pauses_are_jittered() {
        let b = Duration::from_secs(4);
        let pauses: std::collections::BTreeSet<Duration> = (0..100).map(|_| jittered(b)).collect();
        assert!(pauses
            .iter()
            .all(|p| *p >= Duration::from_secs(2) && *p <= b));
        assert!(pauses.len() > 20, "{pauses:?}");
    }
}
