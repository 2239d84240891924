//! CloudWatch metrics as Embedded Metric Format lines on stdout: no agent, no extra service.
//!
//! One line per backup: `BackupsCompleted` or `BackupFailures` (by step and kind), `Retries`,
//! `ResumedCheckpoints`, `BackupCalls` and each step's latency in milliseconds.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

use crate::ports::rate_limit::{BudgetStats, PortalApi};
use crate::workflow::backup::RunStats;
use crate::workflow::error::BackupError;

/// CloudWatch namespace of every metric.
pub const NAMESPACE: &str = "PortalBackup";

/// The stack this function belongs to (`STACK_NAME`), set once at cold start: every metric
/// carries it as a dimension, so two stacks in one account never share a metric or an alarm.
static STACK: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Names the stack every metric is counted under (the first call wins).
pub fn set_stack(name: &str) {
    let _ = STACK.set(name.to_owned());
}

/// `doc` with the stack's dimension: its value beside `Service`, and `Stack` in every
/// dimension set.
pub fn stamped(doc: Value) -> Value {
    match STACK.get() {
        Some(stack) => stamp(doc, stack),
        None => doc,
    }
}

fn stamp(mut doc: Value, stack: &str) -> Value {
    doc["Stack"] = json!(stack);
    if let Some(specs) = doc["_aws"]["CloudWatchMetrics"].as_array_mut() {
        for spec in specs {
            if let Some(sets) = spec["Dimensions"].as_array_mut() {
                for set in sets {
                    if let Some(names) = set.as_array_mut() {
                        names.insert(0, json!("Stack"));
                    }
                }
            }
        }
    }
    doc
}

/// Writes one EMF line.
fn write(doc: Value) {
    let line = stamped(doc).to_string();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
}

/// The EMF document for one backup's result.
pub fn document(result: Result<(), &BackupError>, stats: &RunStats) -> Value {
    let mut fields = Map::new();
    let mut metrics = Vec::new();
    let mut count = |name: &str, value: u64, fields: &mut Map<String, Value>| {
        metrics.push(json!({"Name": name, "Unit": "Count"}));
        fields.insert(name.to_owned(), json!(value));
    };
    let dimensions = match result {
        Ok(()) => {
            count("BackupsCompleted", 1, &mut fields);
            json!([["Service"]])
        }
        Err(err) => {
            count("BackupFailures", 1, &mut fields);
            fields.insert("Step".into(), json!(err.step.as_str()));
            fields.insert("Kind".into(), json!(err.kind()));
            json!([["Service"], ["Service", "Step", "Kind"]])
        }
    };
    count("Retries", u64::from(stats.retries), &mut fields);
    count(
        "ResumedCheckpoints",
        u64::from(stats.resumed_from.is_some()),
        &mut fields,
    );
    count("BackupCalls", u64::from(stats.called_backup), &mut fields);
    for (step, ms) in &stats.step_ms {
        let name = format!("{}LatencyMs", step.as_str());
        metrics.push(json!({"Name": name, "Unit": "Milliseconds"}));
        fields.insert(name, json!(ms));
    }
    if let Some(resumed) = stats.resumed_from {
        fields.insert("ResumedFrom".into(), json!(resumed.as_str()));
    }
    fields.insert("Service".into(), json!("portal-backup"));
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    fields.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp,
            "CloudWatchMetrics": [{"Namespace": NAMESPACE, "Dimensions": dimensions, "Metrics": metrics}],
        }),
    );
    Value::Object(fields)
}

/// The EMF document for one answered restore or recover (`Restores`, by action): an alarm
/// watches it, since each hands key material to its caller.
pub fn restore_document(action: &str) -> Value {
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    json!({
        "Restores": 1,
        "Action": action,
        "Service": "portal-backup",
        "_aws": {
            "Timestamp": timestamp,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["Service"], ["Service", "Action"]],
                "Metrics": [{"Name": "Restores", "Unit": "Count"}],
            }],
        },
    })
}

/// Writes the EMF line of one answered restore or recover.
pub fn emit_restore(action: &str) {
    write(restore_document(action));
}

/// The EMF document for one outcome event: `OutcomeEventsPublished` or
/// `OutcomeEventsFailed` (a producer that waits on events would wait in vain: alarmed).
pub fn outcome_event_document(published: bool) -> Value {
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let name = if published {
        "OutcomeEventsPublished"
    } else {
        "OutcomeEventsFailed"
    };
    json!({
        name: 1,
        "Service": "portal-backup",
        "_aws": {
            "Timestamp": timestamp,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["Service"]],
                "Metrics": [{"Name": name, "Unit": "Count"}],
            }],
        },
    })
}

/// Writes one EMF line for an outcome event.
pub fn emit_outcome_event(published: bool) {
    write(outcome_event_document(published));
}

/// The EMF document for one restore drill: `DrillsVerified`, `DrillFailures` (a drill that
/// could not run counts one), `DrillKeyMismatches` (shares that open but do not check against
/// their wallet's public values) and `DrillCycleAgeSeconds`; alarms watch all but the first.
pub fn drill_document(answer: Option<&crate::workflow::drill::DrillAnswer>) -> Value {
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let (verified, failed) = answer.map_or((0, 1), |a| (a.verified, a.failed));
    let mismatches = answer.map_or(0, |a| {
        a.failures
            .iter()
            .filter(|f| f.kind == crate::workflow::drill::KEY_MISMATCH)
            .count()
    });
    let mut doc = json!({
        "DrillsVerified": verified,
        "DrillFailures": failed,
        "DrillKeyMismatches": mismatches,
        "Service": "portal-backup",
        "_aws": {
            "Timestamp": timestamp,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["Service"]],
                "Metrics": [
                    {"Name": "DrillsVerified", "Unit": "Count"},
                    {"Name": "DrillFailures", "Unit": "Count"},
                    {"Name": "DrillKeyMismatches", "Unit": "Count"},
                    {"Name": "DrillCycleAgeSeconds", "Unit": "Seconds"},
                ],
            }],
        },
    });
    if let Some(a) = answer {
        doc["DrillCycleAgeSeconds"] = json!(a.cycle.age_seconds);
    }
    doc
}

/// Writes one EMF line for a restore drill (counts only).
pub fn emit_drill(answer: Option<&crate::workflow::drill::DrillAnswer>) {
    write(drill_document(answer));
}

/// The EMF document for one custody drill: `CustodyDrillsVerified`, `CustodyDrillFailures` (a
/// drill that could not run counts one), `CustodyDrillKeyMismatches` and
/// `CustodyDrillCycleAgeSeconds`; alarms watch all but the first.
pub fn custody_drill_document(
    answer: Option<&crate::workflow::custody::CustodyDrillAnswer>,
) -> Value {
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let (verified, failed) = answer.map_or((0, 1), |a| (a.verified, a.failed));
    let mismatches = answer.map_or(0, |a| {
        a.failures
            .iter()
            .filter(|f| f.kind == crate::workflow::drill::KEY_MISMATCH)
            .count()
    });
    let mut doc = json!({
        "CustodyDrillsVerified": verified,
        "CustodyDrillFailures": failed,
        "CustodyDrillKeyMismatches": mismatches,
        "Service": "portal-backup",
        "_aws": {
            "Timestamp": timestamp,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["Service"]],
                "Metrics": [
                    {"Name": "CustodyDrillsVerified", "Unit": "Count"},
                    {"Name": "CustodyDrillFailures", "Unit": "Count"},
                    {"Name": "CustodyDrillKeyMismatches", "Unit": "Count"},
                    {"Name": "CustodyDrillCycleAgeSeconds", "Unit": "Seconds"},
                ],
            }],
        },
    });
    if let Some(a) = answer {
        doc["CustodyDrillCycleAgeSeconds"] = json!(a.cycle.age_seconds);
    }
    doc
}

/// Writes one EMF line for a custody drill (counts only).
pub fn emit_custody_drill(answer: Option<&crate::workflow::custody::CustodyDrillAnswer>) {
    write(custody_drill_document(answer));
}

/// The EMF document for one webhook call of the custody function: `WebhookCalls` (by hook and
/// outcome), `WebhookRefused` (a call refused for its source, its secret, a conflicting or
/// foreign share, or a client over its cap: alarmed, since Portal makes none of them) and
/// `CustodianSharesFetched` (custodian halves handed out: alarmed above a rate).
pub fn webhook_document(hook: &str, outcome: &str, refused: bool, fetched: u64) -> Value {
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    json!({
        "WebhookCalls": 1,
        "WebhookRefused": u64::from(refused),
        "CustodianSharesFetched": fetched,
        "Hook": hook,
        "Outcome": outcome,
        "Service": "portal-backup",
        "_aws": {
            "Timestamp": timestamp,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["Service"], ["Service", "Hook", "Outcome"]],
                "Metrics": [
                    {"Name": "WebhookCalls", "Unit": "Count"},
                    {"Name": "WebhookRefused", "Unit": "Count"},
                    {"Name": "CustodianSharesFetched", "Unit": "Count"},
                ],
            }],
        },
    })
}

/// Writes one EMF line for a webhook call (names and counts only).
pub fn emit_webhook(hook: &str, outcome: &str, refused: bool, fetched: u64) {
    write(webhook_document(hook, outcome, refused, fetched));
}

/// Writes one EMF line for a backup's result (the line holds counts, names and timings only).
pub fn emit(result: Result<(), &BackupError>, stats: &RunStats) {
    write(document(result, stats));
}

/// The EMF document of the Portal budget's waits for one API since the last one:
/// `PortalRateWaits` (calls that waited for their slot), `PortalRateWaitMs` (time waited) and
/// `PortalRateHeld` (calls held back, their message sent back to the queue).
pub fn budget_document(api: &str, stats: &BudgetStats) -> Value {
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    json!({
        "PortalRateWaits": stats.waited,
        "PortalRateWaitMs": stats.wait_ms,
        "PortalRateHeld": stats.held,
        "Api": api,
        "Service": "portal-backup",
        "_aws": {
            "Timestamp": timestamp,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["Service", "Api"]],
                "Metrics": [
                    {"Name": "PortalRateWaits", "Unit": "Count"},
                    {"Name": "PortalRateWaitMs", "Unit": "Milliseconds"},
                    {"Name": "PortalRateHeld", "Unit": "Count"},
                ],
            }],
        },
    })
}

/// Writes one EMF line per API whose budget waited or held calls since the last invocation.
pub fn emit_budget(stats: &[(PortalApi, BudgetStats)]) {
    for (api, stats) in stats {
        if *stats != BudgetStats::default() {
            write(budget_document(api.as_str(), stats));
        }
    }
}

/// The EMF document of the messages of one batch sent back to the queue to wait for Portal's
/// budget (`MessagesDeferred`).
pub fn deferred_document(deferred: u64) -> Value {
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    json!({
        "MessagesDeferred": deferred,
        "Service": "portal-backup",
        "_aws": {
            "Timestamp": timestamp,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["Service"]],
                "Metrics": [{"Name": "MessagesDeferred", "Unit": "Count"}],
            }],
        },
    })
}

/// Writes the EMF line of a batch's deferred messages.
pub fn emit_deferred(deferred: u64) {
    write(deferred_document(deferred));
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_dimension_set_carries_the_stack() {
        let doc = stamp(restore_document("restore"), "prod-backup");
        assert_eq!(doc["Stack"], "prod-backup");
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Stack", "Service"], ["Stack", "Service", "Action"]])
        );
    }

    use super::*;
    use crate::domain::checkpoint::Status;
    use crate::workflow::error::{Cause, Mismatch, Step};

    #[test]
    fn documents_follow_the_embedded_metric_format() {
        let stats = RunStats {
            retries: 2,
            resumed_from: Some(Status::BackedUp),
            called_backup: false,
            step_ms: vec![(Step::Store, 12), (Step::Verify, 7)],
        };
        let ok = document(Ok(()), &stats);
        let spec = &ok["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(spec["Namespace"], NAMESPACE);
        assert_eq!(spec["Dimensions"], json!([["Service"]]));
        // Every declared metric has a value at the top level, as EMF requires.
        for m in spec["Metrics"].as_array().unwrap() {
            assert!(ok[m["Name"].as_str().unwrap()].is_number(), "{m}");
        }
        assert_eq!(
            (ok["BackupsCompleted"].as_u64(), ok["Retries"].as_u64()),
            (Some(1), Some(2))
        );
        assert_eq!(ok["storeLatencyMs"], 12);
        assert_eq!(ok["ResumedFrom"], "BACKED_UP");

        let err = BackupError::new(Step::Verify, Cause::Mismatch(Mismatch::Differs("x".into())));
        let failed = document(Err(&err), &RunStats::default());
        assert_eq!(failed["BackupFailures"], 1);
        assert_eq!(
            (failed["Step"].as_str(), failed["Kind"].as_str()),
            (Some("verify"), Some("permanent"))
        );
        assert_eq!(
            failed["_aws"]["CloudWatchMetrics"][0]["Dimensions"][1],
            json!(["Service", "Step", "Kind"])
        );
    }
}
