//! The Portal rate limiter's table, with the real DynamoDB client against moto server: two
//! limiters (two processes) share one budget; a slot too far away is refused without being
//! taken; and the SQS adapter sends a waiting message back to its queue.

mod common;

use std::time::Duration;

use common::{Moto, create_table};
use devstack::poller::Queues;
use portal_backup::adapters::dynamodb::rate_limit::{DynamoRateLimiter, PortalRates};
use portal_backup::adapters::sqs::SqsQueue;
use portal_backup::ports::rate_limit::{LimitError, PortalApi, RateLimiter};
use portal_backup::ports::redelivery::{Deferral, Redelivery};

/// 60 a minute: a slot every 1,017 ms (61 s ÷ 60).
const RATES: PortalRates = PortalRates {
    mpc_per_minute: 60,
    client_per_minute: 0,
};
const SPACING: u64 = 1017;

#[tokio::test]
async fn two_processes_share_one_evenly_spaced_budget() {
    let moto = Moto::start().await;
    create_table(&moto.dynamodb(), "rate").await;
    let a = DynamoRateLimiter::new(moto.dynamodb(), "rate", RATES);
    let b = DynamoRateLimiter::new(moto.dynamodb(), "rate", RATES);
    let wait = Duration::from_secs(10);
    // Idle: at once. Then each reserve, from either process, is one spacing further.
    let waits = [
        a.reserve(PortalApi::Mpc, wait).await.unwrap(),
        b.reserve(PortalApi::Mpc, wait).await.unwrap(),
        a.reserve(PortalApi::Mpc, wait).await.unwrap(),
        b.reserve(PortalApi::Mpc, wait).await.unwrap(),
    ];
    assert_eq!(waits[0], Duration::ZERO);
    for (n, w) in waits.iter().enumerate().skip(1) {
        let expected = n as u64 * SPACING;
        let got = w.as_millis() as u64;
        // Milliseconds pass between the calls: the wait shrinks by them, never grows.
        assert!(
            got <= expected && got + 500 >= expected,
            "slot {n}: waits {got} ms, about {expected}"
        );
    }
    // The next slot is about 4 s away: refused within 2 s, and nothing is taken by the refusal.
    let refused = b.reserve(PortalApi::Mpc, Duration::from_secs(2)).await;
    let Err(LimitError::Later { api, wait }) = refused else {
        panic!("expected a refusal, got {refused:?}");
    };
    assert_eq!(api, PortalApi::Mpc);
    assert!(wait > Duration::from_secs(3) && wait <= Duration::from_millis(4 * SPACING));
    let next = a.reserve(PortalApi::Mpc, wait).await.unwrap();
    assert!(
        next <= Duration::from_millis(4 * SPACING) && next + Duration::from_millis(500) >= wait,
        "the refused slot is still the next one ({next:?})"
    );
    // An API with no limit never waits, and writes nothing.
    for _ in 0..5 {
        assert_eq!(
            a.reserve(PortalApi::Client, Duration::ZERO).await.unwrap(),
            Duration::ZERO
        );
    }
    let items = moto.items("rate").await;
    assert_eq!(items.len(), 1, "one item, the MPC API's");
    let item = &items[0];
    assert_eq!(item["pk"].as_s().unwrap(), "PORTAL_RATE#mpc");
    assert!(item.contains_key("nextAt") && item.contains_key("expiresAt"));
}

#[tokio::test]
async fn a_waiting_message_goes_back_to_its_queue() {
    let moto = Moto::start().await;
    let q = Queues::create(&moto.sdk, "waits", Duration::from_secs(30), 3)
        .await
        .unwrap();
    let queue = SqsQueue::new(aws_sdk_sqs::Client::new(&moto.sdk), &q.url);
    q.send("first").await.unwrap();
    let received = q
        .sqs
        .receive_message()
        .queue_url(&q.url)
        .send()
        .await
        .unwrap();
    let handle = received.messages()[0].receipt_handle().unwrap().to_owned();
    // Visible again after 1 s, not after the queue's 30 s.
    queue
        .defer(&[Deferral {
            receipt_handle: handle,
            wait: Duration::from_millis(300),
        }])
        .await
        .unwrap();
    let again = receive_within(&q, Duration::from_secs(5)).await;
    assert_eq!(
        again.as_deref(),
        Some("first"),
        "the deferred message came back"
    );
    // A resend with a delay arrives after it, as a new message.
    queue
        .resend("second", Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(
        receive_within(&q, Duration::from_secs(5)).await.as_deref(),
        Some("second")
    );
}

/// The body of the next message received within `limit`.
async fn receive_within(q: &Queues, limit: Duration) -> Option<String> {
    let started = std::time::Instant::now();
    while started.elapsed() < limit {
        let out = q
            .sqs
            .receive_message()
            .queue_url(&q.url)
            .visibility_timeout(30)
            .send()
            .await
            .unwrap();
        if let Some(m) = out.messages().first() {
            return m.body().map(str::to_owned);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}
