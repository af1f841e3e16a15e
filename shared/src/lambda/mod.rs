//! The Lambda edge: every AWS Lambda and API Gateway type the service
//! touches is translated here into the crate's own, so `ingest`,
//! `reconcile`, `watch` and `api` know nothing of Lambda.
//!
//! - `sqs`: SQS event -> `ingest::Message`s -> `SqsBatchResponse`;
//! - `scheduled`: scheduled event + invoked function ARN -> a reconcile run;
//! - `http`: API Gateway requests -> the router (stage prefix stripped, the
//!   IAM caller attached as `api::Caller`).

pub mod http;
pub mod scheduled;
pub mod sqs;

pub use http::{service, strip_stage};
pub use scheduled::{
    function_scope, handle_scheduled_event, run_deadline, ReconcileError, ReconcileSetup,
};
#[cfg(any(test, feature = "testing"))]
pub use sqs::handle_sqs;
pub use sqs::{handle_sqs_with, IngestError};

#[cfg(test)]
mod tests;
