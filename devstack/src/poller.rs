//! A local SQS event source mapping (dev only): what Lambda does for an SQS trigger. It receives
//! a batch from a queue, invokes the function with it, deletes the successes, and leaves the
//! failures to reappear after the visibility timeout (and, past `maxReceiveCount`, to move to
//! the DLQ by redrive). Used by the fault matrix and by `local-invoke --queue`.

use std::future::Future;
use std::time::Duration;

use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, MessageSystemAttributeName, QueueAttributeName,
};
use serde_json::{Value, json};

use crate::runtime_api::Answer;

/// A failed SQS call (dev tooling: the message is enough).
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// A queue with its dead-letter queue.
pub struct Queues {
    /// The SQS client.
    pub sqs: aws_sdk_sqs::Client,
    /// The queue's URL.
    pub url: String,
    /// The queue's ARN (the event's `eventSourceARN`).
    pub arn: String,
    /// The dead-letter queue's URL.
    pub dlq_url: String,
}

impl Queues {
    /// Creates `name` and `name-dlq` with a redrive policy and a visibility timeout.
    pub async fn create(
        sdk: &aws_config::SdkConfig,
        name: &str,
        visibility: Duration,
        max_receive: u32,
    ) -> Result<Queues, Error> {
        let sqs = aws_sdk_sqs::Client::new(sdk);
        let dlq_url = create(&sqs, &format!("{name}-dlq"), None, None).await?;
        let dlq_arn = attribute(&sqs, &dlq_url, QueueAttributeName::QueueArn).await?;
        let redrive =
            json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive.to_string()});
        let url = create(&sqs, name, Some(visibility), Some(redrive.to_string())).await?;
        let arn = attribute(&sqs, &url, QueueAttributeName::QueueArn).await?;
        Ok(Queues {
            sqs,
            url,
            arn,
            dlq_url,
        })
    }

    /// An existing queue, and its DLQ from its redrive policy.
    pub async fn open(sdk: &aws_config::SdkConfig, url: &str) -> Result<Queues, Error> {
        let sqs = aws_sdk_sqs::Client::new(sdk);
        let arn = attribute(&sqs, url, QueueAttributeName::QueueArn).await?;
        let redrive: Value =
            serde_json::from_str(&attribute(&sqs, url, QueueAttributeName::RedrivePolicy).await?)?;
        let dlq_name = redrive["deadLetterTargetArn"]
            .as_str()
            .and_then(|arn| arn.rsplit(':').next())
            .ok_or("the queue has no redrive policy (no DLQ)")?;
        let dlq_url = sqs
            .get_queue_url()
            .queue_name(dlq_name)
            .send()
            .await?
            .queue_url
            .ok_or("no DLQ URL")?;
        Ok(Queues {
            sqs,
            url: url.to_owned(),
            arn,
            dlq_url,
        })
    }

    /// Sends one message.
    pub async fn send(&self, body: &str) -> Result<(), Error> {
        self.sqs
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .send()
            .await?;
        Ok(())
    }

    /// Messages visible or in flight on `url`.
    ///
    /// In flight is read first, then visible: a message whose visibility timeout ends between the
    /// two reads is then counted twice, never missed. (The other order could read an empty queue
    /// while a failed message is about to reappear, and a caller would stop before its retries.)
    pub async fn depth(&self, url: &str) -> Result<u64, Error> {
        let mut total = 0;
        for a in [
            QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
            QueueAttributeName::ApproximateNumberOfMessages,
        ] {
            total += attribute(&self.sqs, url, a)
                .await?
                .parse::<u64>()
                .unwrap_or(0);
        }
        Ok(total)
    }

    /// Bodies in the DLQ (read, and left there).
    pub async fn dlq_bodies(&self) -> Result<Vec<String>, Error> {
        let out = self
            .sqs
            .receive_message()
            .queue_url(&self.dlq_url)
            .max_number_of_messages(10)
            .visibility_timeout(0)
            .send()
            .await?;
        Ok(out
            .messages()
            .iter()
            .filter_map(|m| m.body().map(str::to_owned))
            .collect())
    }
}

async fn create(
    sqs: &aws_sdk_sqs::Client,
    name: &str,
    visibility: Option<Duration>,
    redrive: Option<String>,
) -> Result<String, Error> {
    let mut request = sqs.create_queue().queue_name(name);
    if let Some(v) = visibility {
        request = request.attributes(
            QueueAttributeName::VisibilityTimeout,
            v.as_secs().to_string(),
        );
    }
    if let Some(r) = redrive {
        request = request.attributes(QueueAttributeName::RedrivePolicy, r);
    }
    Ok(request
        .send()
        .await?
        .queue_url
        .ok_or("CreateQueue answered no URL")?)
}

async fn attribute(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    name: QueueAttributeName,
) -> Result<String, Error> {
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(name.clone())
        .send()
        .await?;
    Ok(out
        .attributes()
        .and_then(|a| a.get(&name))
        .cloned()
        .unwrap_or_default())
}

/// What one poll did.
#[derive(Debug, Default)]
pub struct Poll {
    /// Messages received.
    pub received: usize,
    /// Messages deleted (processed).
    pub deleted: usize,
    /// Messages the function reported failed (left to reappear).
    pub failed: usize,
    /// The invocation gave no usable answer (error, crash, timeout): nothing was deleted.
    pub invocation_failed: bool,
}

/// Receives up to `batch` messages and runs them through `invoke`, as the event source mapping does.
pub async fn poll_once<F, Fut>(q: &Queues, batch: i32, invoke: F) -> Result<Poll, Error>
where
    F: FnOnce(Value) -> Fut,
    Fut: Future<Output = Option<Answer>>,
{
    let out = q
        .sqs
        .receive_message()
        .queue_url(&q.url)
        .max_number_of_messages(batch)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .send()
        .await?;
    let messages = out.messages();
    let mut poll = Poll {
        received: messages.len(),
        ..Poll::default()
    };
    if messages.is_empty() {
        return Ok(poll);
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
    let failed: Vec<String> = match invoke(json!({ "Records": records })).await {
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
            return Ok(poll);
        }
    };
    let entries = messages
        .iter()
        .filter(|m| !failed.iter().any(|f| Some(f.as_str()) == m.message_id()))
        .enumerate()
        .map(|(i, m)| {
            DeleteMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .receipt_handle(m.receipt_handle().unwrap_or_default())
                .build()
        })
        .collect::<Result<Vec<_>, _>>()?;
    poll.failed = failed.len();
    poll.deleted = entries.len();
    if !entries.is_empty() {
        q.sqs
            .delete_message_batch()
            .queue_url(&q.url)
            .set_entries(Some(entries))
            .send()
            .await?;
    }
    Ok(poll)
}
