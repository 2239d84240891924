use super::*;
use std::collections::HashMap;

fn load(pairs: &[(&str, &str)]) -> Result<FunctionConfig, ConfigError> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    FunctionConfig::from_lookup(|k| map.get(k).cloned())
}

fn cfg(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    match load(pairs)? {
        FunctionConfig::Backup(c) => Ok(c),
        other => panic!("a backup configuration, not {other:?}"),
    }
}

#[test]
fn the_operator_function_reads_the_backup_settings_and_its_own() {
    let base = [
        ("FUNCTION_ROLE", "operator"),
        ("KMS_KEY_ID", "k"),
        ("BACKUP_TABLE_NAME", "backups"),
        (
            "BACKUP_QUEUE_URL",
            "https://sqs.us-east-1.amazonaws.com/1/q",
        ),
        ("DRILL_SAMPLE", "20"),
    ];
    let Ok(FunctionConfig::Operator(c)) = load(&base) else {
        panic!("an operator configuration")
    };
    assert_eq!(c.drill_sample, Some(20));
    assert_eq!(
        c.backup_queue_url.as_deref(),
        Some("https://sqs.us-east-1.amazonaws.com/1/q")
    );
    let mut bad = base.to_vec();
    bad.push(("WEBHOOK_SECRET_ARN", "arn"));
    assert_eq!(load(&bad).unwrap_err().var, "WEBHOOK_SECRET_ARN");
    let mut bad = base.to_vec();
    bad[4] = ("DRILL_SAMPLE", "0");
    assert_eq!(load(&bad).unwrap_err().var, "DRILL_SAMPLE");
}

#[test]
fn defaults_apply() {
    let c = cfg(&[("KMS_KEY_ID", "alias/x"), ("BACKUP_TABLE_NAME", "backups")]).unwrap();
    assert_eq!(c.backup_mode, BackupMode::SelfManaged);
    assert_eq!(c.portal_mpc_url, DEFAULT_PORTAL_MPC_URL);
    assert_eq!(c.portal_api_url, DEFAULT_PORTAL_API_URL);
    assert_eq!(c.max_concurrency, 10);
    assert!(c.require_sealed_input, "sealed input unless turned off");
    assert!(
        !c.allow_plaintext_restore,
        "sealed restores unless turned on"
    );
    assert!(c.https_only());
}

#[test]
fn the_custody_function_reads_only_its_own_table_key_and_secret() {
    let base = [
        ("FUNCTION_ROLE", "custody"),
        ("CUSTODY_KMS_KEY_ID", "alias/custody"),
        ("CUSTODY_TABLE_NAME", "custody"),
        (
            "WEBHOOK_SOURCE_CIDRS",
            "35.203.150.117/32,104.155.171.139/32",
        ),
    ];
    let with = |extra: &[(&str, &str)]| {
        let mut v = base.to_vec();
        v.retain(|(k, _)| !extra.iter().any(|(e, _)| e == k));
        v.extend_from_slice(extra);
        load(&v)
    };
    let arn = "arn:aws:secretsmanager:us-east-1:1:secret:wh";
    let Ok(FunctionConfig::Custody(c)) = with(&[("WEBHOOK_SECRET_ARN", arn)]) else {
        panic!("a custody configuration")
    };
    assert_eq!(
        c.webhook_secret,
        WebhookSecretSource::SecretsManager(arn.into())
    );
    assert_eq!(
        (c.kms_key_id.as_str(), c.table_name.as_str()),
        ("alias/custody", "custody")
    );
    assert_eq!(c.secret_refresh, Duration::from_secs(300));
    assert_eq!(c.caps, CustodianCaps::default());
    assert!(c.source_cidrs.admits(Some("104.155.171.139")));
    assert!(!c.source_cidrs.admits(Some("203.0.113.1")));
    // A secret in the environment: refused unless the run says it is local.
    let e = with(&[("WEBHOOK_SECRET", "local-secret")]).unwrap_err();
    assert_eq!(e.var, "WEBHOOK_SECRET");
    assert!(!e.to_string().contains("local-secret"));
    let local = [
        ("WEBHOOK_SECRET", "local-secret"),
        ("ALLOW_PLAINTEXT_WEBHOOK_SECRET", "local-only"),
    ];
    let Ok(FunctionConfig::Custody(c)) = with(&local) else {
        panic!("a custody configuration")
    };
    let WebhookSecretSource::Value(s) = &c.webhook_secret else {
        panic!("value")
    };
    assert!(s.matches(b"local-secret"));
    assert!(
        !format!("{c:?}").contains("local-secret"),
        "Debug redacts it"
    );
    for (var, value) in [
        ("ALLOW_PLAINTEXT_WEBHOOK_SECRET", "true"),
        ("WEBHOOK_SOURCE_CIDRS", "portal.example"),
        ("WEBHOOK_SOURCE_CIDRS", " "),
        ("WEBHOOK_SECRET_REFRESH_SECONDS", "0"),
        ("MAX_CUSTODIAN_SHARES_PER_CLIENT", "0"),
        ("MAX_CUSTODIAN_BYTES_PER_CLIENT", "6291456"),
    ] {
        let mut extra = local.to_vec();
        extra.push((var, value));
        assert_eq!(with(&extra).unwrap_err().var, var, "{var}={value}");
    }
    let both = with(&[("WEBHOOK_SECRET_ARN", arn), ("WEBHOOK_SECRET", "x")]);
    assert_eq!(both.unwrap_err().var, "WEBHOOK_SECRET");
    assert_eq!(with(&[]).unwrap_err().var, "WEBHOOK_SECRET_ARN");
    // The client shares' key and table are never the custody function's.
    for var in BACKUP_ONLY {
        let e = with(&[("WEBHOOK_SECRET_ARN", arn), (var, "x")]).unwrap_err();
        assert_eq!(e.var, var);
    }
    // And the backup function takes none of the custody settings.
    for var in CUSTODY_ONLY {
        let e = load(&[
            ("KMS_KEY_ID", "k"),
            ("BACKUP_TABLE_NAME", "backups"),
            (var, "x"),
        ])
        .unwrap_err();
        assert_eq!(e.var, var);
    }
    assert_eq!(
        load(&[("FUNCTION_ROLE", "both")]).unwrap_err().var,
        "FUNCTION_ROLE"
    );
}

#[test]
fn retired_keys_are_named_never_aliased() {
    let base = [("KMS_KEY_ID", "k"), ("BACKUP_TABLE_NAME", "backups")];
    let with = |retired: &str| {
        let mut v = base.to_vec();
        v.push(("RETIRED_KMS_KEY_IDS", retired));
        cfg(&v)
    };
    let old = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    assert_eq!(
        with(&format!(" {old}, mrk-1 ,"))
            .unwrap()
            .retired_kms_key_ids,
        [old, "mrk-1"]
    );
    assert!(with("").unwrap().retired_kms_key_ids.is_empty());
    assert_eq!(with("alias/old").unwrap_err().var, "RETIRED_KMS_KEY_IDS");
}

#[test]
fn each_mistake_names_its_variable() {
    let base = [("KMS_KEY_ID", "k"), ("BACKUP_TABLE_NAME", "backups")];
    let with = |extra: (&'static str, &'static str)| {
        let mut v = base.to_vec();
        v.retain(|(k, _)| *k != extra.0);
        v.push(extra);
        cfg(&v).unwrap_err().var
    };
    assert_eq!(with(("BACKUP_MODE", "CLOUD")), "BACKUP_MODE");
    assert_eq!(with(("KMS_KEY_ID", " ")), "KMS_KEY_ID");
    assert_eq!(with(("BACKUP_TABLE_NAME", "a/b")), "BACKUP_TABLE_NAME");
    assert_eq!(
        with(("PORTAL_MPC_URL", "http://portal.example.com")),
        "PORTAL_MPC_URL"
    );
    assert_eq!(with(("PORTAL_API_URL", "ftp://x")), "PORTAL_API_URL");
    assert_eq!(with(("PORTAL_API_URL", "https://u:p@x")), "PORTAL_API_URL");
    assert_eq!(with(("MAX_CONCURRENCY", "0")), "MAX_CONCURRENCY");
    assert_eq!(
        with(("REQUIRE_SEALED_INPUT", "yes")),
        "REQUIRE_SEALED_INPUT"
    );
    assert_eq!(
        with(("ALLOW_PLAINTEXT_RESTORE", "1")),
        "ALLOW_PLAINTEXT_RESTORE"
    );
    // Checkpoints exist in every mode: no table is a mistake even Portal-managed.
    assert_eq!(
        cfg(&[("KMS_KEY_ID", "k"), ("BACKUP_MODE", "PORTAL_MANAGED")])
            .unwrap_err()
            .var,
        "BACKUP_TABLE_NAME"
    );
}

#[test]
fn loopback_http_is_allowed_for_local_runs() {
    let c = cfg(&[
        ("KMS_KEY_ID", "k"),
        ("BACKUP_TABLE_NAME", "backups"),
        ("BACKUP_MODE", "PORTAL_MANAGED"),
        ("REQUIRE_SEALED_INPUT", "false"),
        ("PORTAL_MPC_URL", "http://127.0.0.1:5060/"),
        ("PORTAL_API_URL", "http://localhost:5060"),
    ])
    .unwrap();
    assert!(!c.require_sealed_input);
    assert_eq!(c.portal_mpc_url, "http://127.0.0.1:5060");
    assert!(!c.https_only());
}

#[test]
fn the_portal_budget_is_read_with_portals_limits_as_defaults() {
    let base = [("KMS_KEY_ID", "k"), ("BACKUP_TABLE_NAME", "backups")];
    assert_eq!(
        cfg(&base).unwrap().portal_rate,
        None,
        "no table: no limiter"
    );
    let mut with = base.to_vec();
    with.push(("PORTAL_RATE_TABLE_NAME", "stack-portal-rate"));
    assert_eq!(
        cfg(&with).unwrap().portal_rate,
        Some(PortalRateConfig {
            table_name: "stack-portal-rate".into(),
            rates: PortalRates {
                mpc_per_minute: 50,
                client_per_minute: 200,
            },
            max_wait: Duration::from_secs(20),
        })
    );
    let mut set = with.clone();
    set.extend([
        ("PORTAL_MPC_RATE_PER_MINUTE", "0"),
        ("PORTAL_API_RATE_PER_MINUTE", "120"),
        ("PORTAL_RATE_MAX_WAIT_SECONDS", "5"),
    ]);
    let rate = cfg(&set).unwrap().portal_rate.unwrap();
    assert_eq!(
        (rate.rates.mpc_per_minute, rate.rates.client_per_minute),
        (0, 120)
    );
    assert_eq!(rate.max_wait, Duration::from_secs(5));
    for (var, value) in [
        ("PORTAL_MPC_RATE_PER_MINUTE", "-1"),
        ("PORTAL_API_RATE_PER_MINUTE", "fast"),
        ("PORTAL_RATE_MAX_WAIT_SECONDS", "301"),
        ("PORTAL_RATE_TABLE_NAME", "a"),
    ] {
        let mut bad = with.clone();
        bad.retain(|(k, _)| *k != var);
        bad.push((var, value));
        let err = cfg(&bad).unwrap_err().to_string();
        assert!(err.contains(var), "{var}={value}: {err}");
    }
}
