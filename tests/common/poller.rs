//! What Lambda's SQS event source mapping does, for the local stack: receive a batch from moto's
//! queue, invoke the function with it, delete the successes, and leave the failures to reappear
//! after the visibility timeout (and, past `maxReceiveCount`, to move to the DLQ by redrive).

use std::time::Duration;

use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, MessageSystemAttributeName, QueueAttributeName,
};
use portal_backup::runtime_api::Answer;
use serde_json::{Value, json};

/// A queue with its dead-letter queue.
pub struct Queues {
    pub sqs: aws_sdk_sqs::Client,
    pub url: String,
    pub arn: String,
    pub dlq_url: String,
}

impl Queues {
    /// Creates `name` and `name-dlq` with a redrive policy and a visibility timeout.
    pub async fn create(
        sdk: &aws_config::SdkConfig,
        name: &str,
        visibility: Duration,
        max_receive: u32,
    ) -> Queues {
        let sqs = aws_sdk_sqs::Client::new(sdk);
        let dlq_url = sqs
            .create_queue()
            .queue_name(format!("{name}-dlq"))
            .send()
            .await
            .expect("dlq")
            .queue_url
            .expect("url");
        let dlq_arn = attribute(&sqs, &dlq_url, QueueAttributeName::QueueArn).await;
        let redrive =
            json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive.to_string()})
                .to_string();
        let url = sqs
            .create_queue()
            .queue_name(name)
            .attributes(
                QueueAttributeName::VisibilityTimeout,
                visibility.as_secs().to_string(),
            )
            .attributes(QueueAttributeName::RedrivePolicy, redrive)
            .send()
            .await
            .expect("queue")
            .queue_url
            .expect("url");
        let arn = attribute(&sqs, &url, QueueAttributeName::QueueArn).await;
        Queues {
            sqs,
            url,
            arn,
            dlq_url,
        }
    }

    pub async fn send(&self, body: &str) {
        self.sqs
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .send()
            .await
            .expect("send");
    }

    /// Messages visible or in flight on `url`.
    pub async fn depth(&self, url: &str) -> u64 {
        let mut total = 0;
        for a in [
            QueueAttributeName::ApproximateNumberOfMessages,
            QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
        ] {
            total += attribute(&self.sqs, url, a)
                .await
                .parse::<u64>()
                .unwrap_or(0);
        }
        total
    }

    /// Bodies in the DLQ (received and left there).
    pub async fn dlq_bodies(&self) -> Vec<String> {
        let out = self
            .sqs
            .receive_message()
            .queue_url(&self.dlq_url)
            .max_number_of_messages(10)
            .visibility_timeout(0)
            .send()
            .await
            .expect("receive dlq");
        out.messages()
            .iter()
            .filter_map(|m| m.body().map(str::to_owned))
            .collect()
    }
}

async fn attribute(sqs: &aws_sdk_sqs::Client, url: &str, name: QueueAttributeName) -> String {
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(name.clone())
        .send()
        .await
        .expect("attributes");
    out.attributes()
        .and_then(|a| a.get(&name))
        .cloned()
        .unwrap_or_default()
}

/// What one poll did.
#[derive(Debug, Default)]
pub struct Poll {
    pub received: usize,
    pub deleted: usize,
    pub failed: usize,
    /// The invocation gave no usable answer (error, crash, timeout): nothing was deleted.
    pub invocation_failed: bool,
}

/// Receives up to `batch` messages and runs them through `invoke`, as the event source mapping does.
pub async fn poll_once<F, Fut>(q: &Queues, batch: i32, invoke: F) -> Poll
where
    F: FnOnce(Value) -> Fut,
    Fut: std::future::Future<Output = Option<Answer>>,
{
    let out = q
        .sqs
        .receive_message()
        .queue_url(&q.url)
        .max_number_of_messages(batch)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .send()
        .await
        .expect("receive");
    let messages = out.messages();
    let mut poll = Poll {
        received: messages.len(),
        ..Poll::default()
    };
    if messages.is_empty() {
        return poll;
    }
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            let attributes: serde_json::Map<String, Value> = m
                .attributes()
                .map(|a| {
                    a.iter()
                        .map(|(k, v)| (k.as_str().to_owned(), json!(v)))
                        .collect()
                })
                .unwrap_or_default();
            json!({
                "messageId": m.message_id(), "receiptHandle": m.receipt_handle(), "body": m.body(),
                "attributes": attributes, "messageAttributes": {}, "md5OfBody": m.md5_of_body(),
                "eventSource": "aws:sqs", "eventSourceARN": q.arn, "awsRegion": "us-east-1",
            })
        })
        .collect();
    let answer = invoke(json!({ "Records": records })).await;
    let failed: Vec<String> = match &answer {
        Some(Answer::Response(r)) => r["batchItemFailures"]
            .as_array()
            .map(|f| {
                f.iter()
                    .filter_map(|i| i["itemIdentifier"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
        _ => {
            poll.invocation_failed = true;
            return poll;
        }
    };
    let entries: Vec<DeleteMessageBatchRequestEntry> = messages
        .iter()
        .filter(|m| !failed.iter().any(|f| Some(f.as_str()) == m.message_id()))
        .enumerate()
        .map(|(i, m)| {
            DeleteMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .receipt_handle(m.receipt_handle().unwrap_or_default())
                .build()
                .expect("entry")
        })
        .collect();
    poll.failed = failed.len();
    poll.deleted = entries.len();
    if !entries.is_empty() {
        q.sqs
            .delete_message_batch()
            .queue_url(&q.url)
            .set_entries(Some(entries))
            .send()
            .await
            .expect("delete");
    }
    poll
}
