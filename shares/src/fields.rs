//! Typed fields out of a share's JSON object: strings, decimal numbers, points. Each error
//! names the field and the problem, never the value.

use serde_json::{Map, Value};
use zeroize::Zeroizing;

use crate::curve::{Affine, Curve};
use crate::decimal::parse_be32;
use crate::role::Role;
use crate::share_error::{Problem, ShareError};

pub(crate) fn field(role: Role, field: &'static str, problem: Problem) -> ShareError {
    ShareError::Field {
        role,
        field,
        problem,
    }
}

pub(crate) fn lookup<'a>(obj: &'a Map<String, Value>, path: &[&str]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    rest.iter()
        .try_fold(obj.get(*first)?, |v, key| v.as_object()?.get(*key))
}

pub(crate) fn string<'a>(
    obj: &'a Map<String, Value>,
    role: Role,
    name: &'static str,
) -> Result<&'a str, ShareError> {
    match obj.get(name) {
        None | Some(Value::Null) => Err(field(role, name, Problem::Missing)),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(field(role, name, Problem::NotString)),
    }
}

pub(crate) fn optional_string(
    obj: &Map<String, Value>,
    role: Role,
    name: &'static str,
) -> Result<Option<String>, ShareError> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(field(role, name, Problem::NotString)),
    }
}

pub(crate) fn client_id(obj: &Map<String, Value>, role: Role) -> Result<String, ShareError> {
    match string(obj, role, "clientId")? {
        "" => Err(field(role, "clientId", Problem::Empty)),
        id => Ok(id.to_owned()),
    }
}

pub(crate) fn curve(obj: &Map<String, Value>, role: Role) -> Result<Option<Curve>, ShareError> {
    optional_string(obj, role, "curve")?
        .map(|name| Curve::parse(&name).ok_or(field(role, "curve", Problem::UnknownCurve)))
        .transpose()
}

/// A decimal string at `path`, or `None` when it is absent or empty.
fn optional_decimal(
    obj: &Map<String, Value>,
    role: Role,
    path: &[&str],
    name: &'static str,
) -> Result<Option<Zeroizing<[u8; 32]>>, ShareError> {
    match lookup(obj, path) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => parse_be32(s)
            .map(Some)
            .map_err(|e| field(role, name, Problem::Decimal(e))),
        Some(_) => Err(field(role, name, Problem::NotString)),
    }
}

pub(crate) fn decimal(
    obj: &Map<String, Value>,
    role: Role,
    path: &[&str],
    name: &'static str,
) -> Result<Zeroizing<[u8; 32]>, ShareError> {
    match lookup(obj, path) {
        Some(Value::String(s)) if s.is_empty() => Err(field(role, name, Problem::Empty)),
        _ => optional_decimal(obj, role, path, name)?.ok_or(field(role, name, Problem::Missing)),
    }
}

/// A decimal string under either spelling (`pubkey.x` or `pubkey.X`).
pub(crate) fn either(
    obj: &Map<String, Value>,
    role: Role,
    lower: &[&str],
    upper: &[&str],
    name: &'static str,
) -> Result<Zeroizing<[u8; 32]>, ShareError> {
    let path = if lookup(obj, lower).is_some() {
        lower
    } else {
        upper
    };
    decimal(obj, role, path, name)
}

fn point(
    x: Option<Zeroizing<[u8; 32]>>,
    y: Option<Zeroizing<[u8; 32]>>,
    role: Role,
    names: (&'static str, &'static str),
) -> Result<Option<Affine>, ShareError> {
    match (x, y) {
        (Some(x), Some(y)) => Ok(Some(Affine { x: *x, y: *y })),
        (None, None) => Ok(None),
        (Some(_), None) => Err(field(role, names.1, Problem::HalfPoint)),
        (None, Some(_)) => Err(field(role, names.0, Problem::HalfPoint)),
    }
}

pub(crate) fn nested_point(
    obj: &Map<String, Value>,
    role: Role,
    party: &'static str,
    names: (&'static str, &'static str),
) -> Result<Option<Affine>, ShareError> {
    let coord = |lower, upper, label| {
        let path = ["partialPubkey", party, lower];
        let alt = ["partialPubkey", party, upper];
        let path: &[&str] = if lookup(obj, &path).is_some() {
            &path
        } else {
            &alt
        };
        optional_decimal(obj, role, path, label)
    };
    point(
        coord("x", "X", names.0)?,
        coord("y", "Y", names.1)?,
        role,
        names,
    )
}

pub(crate) fn flat_point(
    obj: &Map<String, Value>,
    role: Role,
    x: &'static str,
    y: &'static str,
) -> Result<Option<Affine>, ShareError> {
    let px = optional_decimal(obj, role, &[x], x)?;
    let py = optional_decimal(obj, role, &[y], y)?;
    point(px, py, role, (x, y))
}
