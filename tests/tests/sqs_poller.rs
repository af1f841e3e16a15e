//! Server mode polling a real SQS API (moto's server mode): applied messages
//! are deleted, malformed ones stay and go to the dead-letter queue.

use std::time::{Duration, Instant};

use aws_sdk_sqs::types::QueueAttributeName;
use clap::Parser;
use css_server::ServerConfig;
use css_tests::fixtures::*;
use css_tests::moto::MotoServer;
use css_tests::server::TestServer;
use css_tests::EtcdServer;

async fn queue_depth(sqs: &aws_sdk_sqs::Client, url: &str) -> (i64, i64) {
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .expect("queue attributes")
        .attributes
        .unwrap_or_default();
    let n = |k: QueueAttributeName| attrs.get(&k).and_then(|v| v.parse().ok()).unwrap_or(0);
    (
        n(QueueAttributeName::ApproximateNumberOfMessages),
        n(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
    )
}

async fn run(etcd: Option<&EtcdServer>) {
    let moto = MotoServer::start();
    let sqs = moto.sqs();
    let dlq = sqs
        .create_queue()
        .queue_name("css-dlq")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let dlq_arn = sqs
        .get_queue_attributes()
        .queue_url(&dlq)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&QueueAttributeName::QueueArn]
        .clone();
    let queue = sqs
        .create_queue()
        .queue_name("css-events")
        .attributes(QueueAttributeName::VisibilityTimeout, "1")
        .attributes(
            QueueAttributeName::RedrivePolicy,
            format!(r#"{{"deadLetterTargetArn":"{dlq_arn}","maxReceiveCount":"2"}}"#),
        )
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let mut bodies: Vec<String> = (0..25)
        .map(|n| {
            task_event(&task_detail(
                "q",
                ACCOUNT,
                &format!("t{n:02}"),
                "RUNNING",
                1,
                true,
            ))
        })
        .collect();
    bodies.insert(3, "not json".into());
    bodies.insert(
        17,
        task_event(&serde_json::json!({"taskArn": "arn:aws:ecs:eu-west-1:111122223333:task/q/x"})),
    );
    for b in &bodies {
        sqs.send_message()
            .queue_url(&queue)
            .message_body(b)
            .send()
            .await
            .unwrap();
    }

    let mut args = vec![
        "css-server".to_string(),
        "--bind".into(),
        "127.0.0.1:0".into(),
        "--queue-url".into(),
        queue.clone(),
    ];
    if let Some(e) = etcd {
        args.extend(["--etcd-endpoints".into(), e.endpoint()]);
    }
    let s = TestServer::start_with(
        ServerConfig::try_parse_from(args).unwrap(),
        css_server::AwsOverrides {
            sqs: Some(sqs.clone()),
            ecs: None,
            dynamodb: None,
            // Server mode with a queue reads ECS too (service events).
            sdk: Some(moto.sdk_config()),
        },
    )
    .await;

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = s.get("/v1/tasks?cluster=q").await;
        let n = r.body["items"].as_array().map_or(0, |a| a.len());
        if n == 25 {
            break;
        }
        assert!(Instant::now() < deadline, "only {n} of 25 tasks applied");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The two malformed messages are received, left alone, and redriven.
    loop {
        let (dlq_visible, _) = queue_depth(&sqs, &dlq).await;
        let (visible, in_flight) = queue_depth(&sqs, &queue).await;
        if dlq_visible == 2 && visible == 0 && in_flight == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "expected 2 in the DLQ and an empty queue, got dlq={dlq_visible} queue={visible}+{in_flight}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let dead = sqs
        .receive_message()
        .queue_url(&dlq)
        .max_number_of_messages(10)
        .send()
        .await
        .unwrap();
    let mut dead_bodies: Vec<String> = dead
        .messages
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.body)
        .collect();
    dead_bodies.sort();
    let mut want = vec![bodies[3].clone(), bodies[17].clone()];
    want.sort();
    assert_eq!(dead_bodies, want);
    s.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polls_sqs_into_the_embedded_store() {
    run(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polls_sqs_into_etcd() {
    let etcd = EtcdServer::start();
    run(Some(&etcd)).await;
}
