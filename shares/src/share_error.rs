//! Why a half was refused: the field and the problem, never a value.

use std::fmt;

use thiserror::Error;

use crate::curve::Curve;
use crate::decimal::DecimalError;
use crate::role::Role;

/// What is wrong with a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// Absent (or a parent object is absent).
    Missing,
    /// Not a JSON string.
    NotString,
    /// An empty string where a value is needed.
    Empty,
    /// A number that does not parse.
    Decimal(DecimalError),
    /// A Birkhoff rank other than 0.
    RankNotZero,
    /// A curve other than SECP256K1 or ED25519.
    UnknownCurve,
    /// One coordinate of a point without the other.
    HalfPoint,
    /// The entry's `id` is not the share's `backupSharePairId`.
    PairIdMismatch,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing => f.write_str("is missing"),
            Self::NotString => f.write_str("must be a string"),
            Self::Empty => f.write_str("is empty"),
            Self::Decimal(e) => e.fmt(f),
            Self::RankNotZero => f.write_str("must be 0 (2-of-2 shares have rank 0)"),
            Self::UnknownCurve => f.write_str("names neither SECP256K1 nor ED25519"),
            Self::HalfPoint => f.write_str("is given without the other coordinate"),
            Self::PairIdMismatch => f.write_str("is not the share's backupSharePairId"),
        }
    }
}

/// Why a half was refused. One line; never a value.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ShareError {
    /// Neither JSON nor base64 of JSON.
    #[error("{0}: neither JSON nor standard base64 of JSON")]
    NotJson(Role),
    /// JSON, but not an object of a known shape.
    #[error("{0}: not a JSON object of a backup share")]
    NotShare(Role),
    /// A `/v1/backup` answer without an entry for the curve.
    #[error("{role}: the /v1/backup answer has no {curve} entry")]
    NoCurveEntry {
        /// Which half.
        role: Role,
        /// The curve asked for.
        curve: Curve,
    },
    /// The file holds the other half.
    #[error("{0}: the file holds the other half (are the two files swapped?)")]
    Swapped(Role),
    /// More layers of strings and base64 than any stored form has.
    #[error("{0}: wrapped in too many layers of JSON strings and base64")]
    TooDeep(Role),
    /// A field is wrong.
    #[error("{role}: field `{field}` {problem}")]
    Field {
        /// Which half.
        role: Role,
        /// The field's path.
        field: &'static str,
        /// What is wrong.
        problem: Problem,
    },
}
