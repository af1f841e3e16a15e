//! The ingest function's edge: an SQS event in, `SqsBatchResponse` out with
//! exactly the records that were not applied (SQS retries those, then moves
//! them to the dead-letter queue).

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};

use crate::ingest::{apply, Describer, Message};

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// A record that must be retried has no message id to report it by, so
    /// the whole batch is failed instead (SQS redelivers all of it).
    #[error("record {index} of the batch failed and has no messageId: {reason}")]
    NoMessageId { index: usize, reason: String },
}

/// The Lambda handler's logic without describing services (their events
/// are counted as ignored): for tests and benchmarks.
#[cfg(any(test, feature = "testing"))]
pub async fn handle_sqs(
    store: &dyn crate::store::StateStore,
    event: SqsEvent,
) -> Result<SqsBatchResponse, IngestError> {
    handle_sqs_with(store, None, event).await
}

/// The Lambda handler's logic: an SQS event in, the batch item failures
/// out; the services that events name are described with `describer`.
pub async fn handle_sqs_with(
    store: &dyn crate::store::StateStore,
    describer: Option<Describer<'_>>,
    event: SqsEvent,
) -> Result<SqsBatchResponse, IngestError> {
    let messages: Vec<Message> = event
        .records
        .into_iter()
        .map(|r| Message {
            id: r.message_id,
            body: r.body,
        })
        .collect();
    let started = std::time::Instant::now();
    let outcome = apply(store, describer, &messages).await;
    outcome.record(store, started.elapsed()).await;
    crate::metrics::flush();
    let mut response = SqsBatchResponse::default();
    for (i, failure) in &outcome.failures {
        let id = messages[*i].id.clone();
        tracing::warn!(message_id = id.as_deref().unwrap_or("-"), error = %failure, "record not applied");
        match id {
            Some(id) => {
                let mut item = BatchItemFailure::default();
                item.item_identifier = id;
                response.batch_item_failures.push(item);
            }
            None => {
                return Err(IngestError::NoMessageId {
                    index: *i,
                    reason: failure.to_string(),
                })
            }
        }
    }
    Ok(response)
}
