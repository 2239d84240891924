#!/usr/bin/env python3
"""The published JSON Schemas (docs/schemas/) hold, and say what the function does.

Checks, each summed up on one line:

- every `docs/schemas/*.schema.json` is a valid JSON Schema, draft 2020-12;
- every `docs/schemas/examples/request-valid-*.json` validates against the request schema, and
  every `request-invalid-*.json` fails it (`tests/schemas.rs` runs the function's own decoder on
  the same files and requires the same verdicts), a generate response given as a JSON string
  being checked against its `contentSchema` too;
- the request schema's `requestWhereSealedInputIsRequired` takes the sealed valid examples and
  refuses the plain ones, as a stack with `RequireSealedInput=true` does;
- the other examples (`outcome-*`, `event-*`, `error-*`) validate against their schemas;
- the backup bodies of the sample events (`events/*.json`: SQS record bodies, `POST /backups`
  bodies, base64-decoded when `isBase64Encoded`, and direct-invoke payloads) validate against the
  request schema; operator actions and Portal's webhook calls are not backup requests and are
  skipped, and a body in a `*poison*` sample that fails is the deliberate poison message (at
  least one there must fail).

Run from anywhere with the project's venv (jsonschema is in it):
`.venv/bin/python tests/schemas_test.py`. Exits 1 on any failure.
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path

from jsonschema import Draft202012Validator
from referencing import Registry, Resource

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = ROOT / "docs" / "schemas"
EXAMPLES = SCHEMAS / "examples"
EVENTS = ROOT / "events"

# Example file prefixes (other than the request's) and the schema each validates against.
OTHER_EXAMPLES = {
    "outcome-": "backup-outcome.schema.json",
    "event-": "outcome-event.schema.json",
    "error-": "error.schema.json",
}


class Checks:
    def __init__(self) -> None:
        self.failures: list[str] = []

    def summary(self, what: str, passed: int, failed: list[str]) -> None:
        status = "ok" if not failed else "FAILED"
        print(f"{status}: {what}: {passed} passed, {len(failed)} failed")
        for line in failed:
            print(f"    {line}")
        self.failures += failed


def load(path: Path):
    with path.open(encoding="utf-8") as f:
        return json.load(f)


def first_error(validator: Draft202012Validator, instance) -> str | None:
    """The most relevant error's message and path, or None when the instance is valid."""
    errors = sorted(validator.iter_errors(instance), key=lambda e: e.path)
    if not errors:
        return None
    best = errors[0]
    where = "/".join(str(p) for p in best.absolute_path) or "(root)"
    return f"{where}: {best.message[:160]}"


def main() -> int:
    checks = Checks()

    # 1. Every schema is a valid draft 2020-12 schema.
    schemas: dict[str, dict] = {}
    bad: list[str] = []
    for path in sorted(SCHEMAS.glob("*.schema.json")):
        try:
            schema = load(path)
            if schema.get("$schema") != "https://json-schema.org/draft/2020-12/schema":
                raise ValueError("$schema is not draft 2020-12")
            Draft202012Validator.check_schema(schema)
            schemas[path.name] = schema
        except Exception as e:  # noqa: BLE001: reported, not raised
            bad.append(f"{path.relative_to(ROOT)}: {e}")
    expected = {"backup-request.schema.json", "backup-outcome.schema.json",
                "outcome-event.schema.json", "error.schema.json"}
    bad += [f"docs/schemas/{name}: missing" for name in sorted(expected - set(schemas) - {
        b.split(":")[0].rsplit("/", 1)[-1] for b in bad})]
    checks.summary("schemas are valid draft 2020-12", len(schemas), bad)
    if "backup-request.schema.json" not in schemas:
        return 1

    registry = Registry().with_resources(
        (s["$id"], Resource.from_contents(s)) for s in schemas.values() if "$id" in s
    )

    def validator(schema: dict) -> Draft202012Validator:
        return Draft202012Validator(schema, registry=registry)

    request_schema = schemas["backup-request.schema.json"]
    request = validator(request_schema)
    # A generate response sent as a JSON string: its text against the schema it names.
    generate = validator({"$ref": request_schema["$id"] + "#/$defs/generateResponse"})
    strict = validator({"$ref": request_schema["$id"] + "#/$defs/requestWhereSealedInputIsRequired"})

    def request_error(body) -> str | None:
        error = first_error(request, body)
        if error is None and isinstance(body, dict) and isinstance(body.get("generateResponse"), str):
            try:
                error = first_error(generate, json.loads(body["generateResponse"]))
            except ValueError as e:
                error = f"generateResponse: not JSON text ({e})"
            if error is not None:
                error = f"generateResponse (JSON text): {error}"
        return error

    # 2. The request examples: valid ones validate, invalid ones do not.
    valid = sorted(EXAMPLES.glob("request-valid-*.json"))
    invalid = sorted(EXAMPLES.glob("request-invalid-*.json"))
    failed = []
    for path in valid:
        error = request_error(load(path))
        if error is not None:
            failed.append(f"{path.name}: should be valid: {error}")
    if len(valid) < 4:
        failed.append(f"only {len(valid)} request-valid-* examples (at least 4)")
    checks.summary("request-valid-* examples validate", len(valid) - len(failed), failed)

    failed = []
    for path in invalid:
        if request_error(load(path)) is None:
            failed.append(f"{path.name}: should be refused, but validates")
    if len(invalid) < 6:
        failed.append(f"only {len(invalid)} request-invalid-* examples (at least 6)")
    checks.summary("request-invalid-* examples are refused", len(invalid) - len(failed), failed)

    # 3. Where sealed input is required: sealed examples (no API key beside) pass, plain ones fail.
    failed = []
    for path in valid:
        body = load(path)
        sealed = "sealedGenerateResponse" in body and "clientApiKey" not in body
        error = first_error(strict, body)
        if sealed and error is not None:
            failed.append(f"{path.name}: a sealed request should pass: {error}")
        if not sealed and error is None:
            failed.append(f"{path.name}: a plain request should be refused where sealed input is required")
    checks.summary("requestWhereSealedInputIsRequired: sealed pass, plain refused",
                   len(valid) - len(failed), failed)

    # 4. The outcome, event and error examples.
    for prefix, name in OTHER_EXAMPLES.items():
        paths = sorted(EXAMPLES.glob(f"{prefix}*.json"))
        v = validator(schemas[name]) if name in schemas else None
        failed = []
        for path in paths:
            if v is None:
                failed.append(f"{path.name}: no schema {name}")
                continue
            error = first_error(v, load(path))
            if error is not None:
                failed.append(f"{path.name}: {error}")
        if not paths:
            failed.append(f"no {prefix}*.json example")
        checks.summary(f"{prefix}* examples validate against {name}", len(paths) - len(failed), failed)

    # 5. The sample events' backup bodies.
    failed, passed, skipped, poison = [], 0, 0, 0
    for path in sorted(EVENTS.glob("*.json")):
        event = load(path)
        bodies: list[tuple[str, object]] = []
        if isinstance(event, dict) and "Records" in event:
            for n, record in enumerate(event["Records"], 1):
                bodies.append((f"{path.name} record {n}", record.get("body", "")))
        elif isinstance(event, dict) and "requestContext" in event:
            route = event.get("rawPath") or event.get("path") or ""
            if not route.rstrip("/").endswith("/backups"):
                skipped += 1  # Portal's webhooks, operator routes: not a backup request
                continue
            body = event.get("body") or ""
            if event.get("isBase64Encoded"):
                body = base64.b64decode(body).decode("utf-8")
            bodies.append((f"{path.name} body", body))
        elif isinstance(event, dict) and "action" in event:
            skipped += 1  # an operator action
            continue
        else:
            bodies.append((f"{path.name} payload", event))
        file_poison = 0
        for label, body in bodies:
            try:
                doc = json.loads(body) if isinstance(body, str) else body
                error = request_error(doc)
            except ValueError as e:
                error = f"not JSON ({e})"
            if error is None:
                passed += 1
            elif "poison" in path.name:
                file_poison += 1
            else:
                failed.append(f"{label}: {error}")
        if "poison" in path.name and file_poison == 0:
            failed.append(f"{path.name}: no body is refused, but the sample holds a poison message")
        poison += file_poison
    checks.summary(
        f"events/*.json backup bodies validate ({skipped} non-backup events skipped, "
        f"{poison} poison bodies refused as meant)",
        passed, failed)

    if checks.failures:
        print(f"schemas: {len(checks.failures)} failure(s)", file=sys.stderr)
        return 1
    print("schemas: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
