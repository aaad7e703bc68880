//! Scalars named as the contract names them. `JSON` is async-graphql's own
//! `serde_json::Value` scalar; `Upload` is async-graphql's.

use async_graphql::{InputValueError, InputValueResult, Scalar, ScalarType, Value};
use chrono::{DateTime, SecondsFormat, Utc};

/// RFC 3339 timestamp in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub DateTime<Utc>);

/// RFC 3339 timestamp in UTC.
#[Scalar(name = "DateTime")]
impl ScalarType for Timestamp {
    fn parse(value: Value) -> InputValueResult<Self> {
        let Value::String(text) = &value else {
            return Err(InputValueError::expected_type(value));
        };
        DateTime::parse_from_rfc3339(text)
            .map(|t| Self(t.with_timezone(&Utc)))
            .map_err(|_| InputValueError::custom(format!("{text:?} is not an RFC 3339 timestamp")))
    }

    /// Lets validation refuse a bad timestamp naming its field, before
    /// any resolver runs.
    fn is_valid(value: &Value) -> bool {
        Self::parse(value.clone()).is_ok()
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.to_rfc3339_opts(SecondsFormat::Millis, true))
    }
}

impl From<DateTime<Utc>> for Timestamp {
    fn from(value: DateTime<Utc>) -> Self {
        Self(value)
    }
}

/// 64-bit integer, serialized as a JSON number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BigInt(pub i64);

/// 64-bit integer, serialized as a JSON number.
#[Scalar(name = "BigInt")]
impl ScalarType for BigInt {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::Number(n) => n
                .as_i64()
                .map(Self)
                .ok_or_else(|| InputValueError::custom("expected a whole number within 64 bits")),
            // JavaScript clients may send values beyond 2^53 as strings.
            Value::String(s) => s
                .trim()
                .parse()
                .map(Self)
                .map_err(|_| InputValueError::custom(format!("{s:?} is not a 64-bit integer"))),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    /// Lets validation refuse a bad number naming its field, before any
    /// resolver runs.
    fn is_valid(value: &Value) -> bool {
        Self::parse(value.clone()).is_ok()
    }

    fn to_value(&self) -> Value {
        Value::Number(self.0.into())
    }
}

impl From<i64> for BigInt {
    fn from(value: i64) -> Self {
        Self(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_with_z() {
        let t = Timestamp::parse(Value::String("2026-01-02T03:04:05+02:00".into())).unwrap();
        assert_eq!(t.to_value(), Value::String("2026-01-02T01:04:05.000Z".into()));
        assert!(Timestamp::parse(Value::String("yesterday".into())).is_err());
    }

    #[test]
    fn big_ints_round_trip_as_numbers() {
        let big = BigInt::parse(Value::Number(9_007_199_254_740_993_i64.into())).unwrap();
        assert_eq!(big.to_value(), Value::Number(9_007_199_254_740_993_i64.into()));
        assert_eq!(BigInt::parse(Value::String("42".into())).unwrap(), BigInt(42));
        assert!(BigInt::parse(Value::Boolean(true)).is_err());
    }
}
