//! The published request schema and the function's own decoder agree: every example the docs
//! give as valid (`docs/schemas/examples/request-valid-*.json`) is accepted by the decoder the
//! function runs, and every one given as invalid is refused by it. (`tests/schemas_test.py`
//! checks the same examples against the JSON Schema.)

use std::path::Path;

use portal_backup::domain::model::BackupMode;
use portal_backup::domain::request::{BackupRequest, RequestPolicy};

#[test]
fn the_decoder_agrees_with_every_schema_example() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/schemas/examples");
    let mut seen = (0, 0);
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let valid = if name.starts_with("request-valid-") {
            true
        } else if name.starts_with("request-invalid-") {
            false
        } else {
            continue;
        };
        let body = std::fs::read(&path).unwrap();
        let parsed = BackupRequest::parse(&body, RequestPolicy::new(BackupMode::SelfManaged));
        assert_eq!(
            parsed.is_ok(),
            valid,
            "{name}: the decoder says {:?}",
            parsed.err().map(|e| e.to_string())
        );
        if valid {
            seen.0 += 1;
        } else {
            seen.1 += 1;
        }
    }
    assert!(seen.0 >= 4 && seen.1 >= 6, "examples: {seen:?}");
}
