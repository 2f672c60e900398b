//! A developer's status: its names, Kong Enterprise's names and integer codes,
//! and how it is read and written in configuration and in etcd.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::encoding::json_path::Located;
use crate::encoding::json_reader::invalid_type;

/// A developer's status, as in Kong Enterprise's Dev Portal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Status {
    Approved,
    Requested,
    Rejected,
    Revoked,
}

impl Status {
    pub const ALL: [Status; 4] = [Status::Approved, Status::Requested, Status::Rejected, Status::Revoked];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Approved => "approved",
            Status::Requested => "requested",
            Status::Rejected => "rejected",
            Status::Revoked => "revoked",
        }
    }

    /// Kong Enterprise's name, as in its gateway's 401 message.
    pub fn kong_name(self) -> &'static str {
        match self {
            Status::Approved => "APPROVED",
            Status::Requested => "PENDING",
            Status::Rejected => "REJECTED",
            Status::Revoked => "REVOKED",
        }
    }

    /// Kong Enterprise's integer codes: APPROVED=0, PENDING=1, REJECTED=2, REVOKED=3.
    pub fn from_kong_code(code: u64) -> Option<Status> {
        match code {
            0 => Some(Status::Approved),
            1 => Some(Status::Requested),
            2 => Some(Status::Rejected),
            3 => Some(Status::Revoked),
            _ => None,
        }
    }

    pub fn parse(name: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A status as a name (`"approved"`, ..., or Kong's `"pending"`) or Kong's integer.
#[derive(Debug, Clone, Copy)]
pub struct StatusInput(pub Status);

impl StatusInput {
    pub const EXPECTED: &'static str =
        "one of \"approved\", \"requested\" (or \"pending\"), \"rejected\", \"revoked\", or Kong's code 0-3";

    /// A status's name, or Kong's `"pending"`.
    pub fn from_name(name: &str) -> Result<StatusInput, String> {
        let status = if name == "pending" {
            Some(Status::Requested)
        } else {
            Status::parse(name)
        };
        status
            .map(StatusInput)
            .ok_or_else(|| format!("unknown status {name:?}: expected {}", StatusInput::EXPECTED))
    }

    /// Kong's integer code.
    pub fn from_code(code: u64) -> Result<StatusInput, String> {
        Status::from_kong_code(code)
            .map(StatusInput)
            .ok_or_else(|| StatusInput::unknown_code(code))
    }

    /// Why a number (negative, fractional, or past 3) is no status.
    fn unknown_code(code: impl fmt::Display) -> String {
        format!("unknown status code {code}: expected {}", StatusInput::EXPECTED)
    }
}

/// A status by name or by Kong's code (`StatusInput`), from a JSON value.
pub fn read_status(value: &serde_json::Value, path: &str) -> Result<StatusInput, Located> {
    let read = match value {
        serde_json::Value::String(name) => StatusInput::from_name(name),
        serde_json::Value::Number(number) => match number.as_u64() {
            Some(code) => StatusInput::from_code(code),
            None => Err(StatusInput::unknown_code(number)),
        },
        other => return Err(invalid_type(other, path, StatusInput::EXPECTED)),
    };
    read.map_err(|message| Located {
        path: path.to_string(),
        message,
    })
}

impl<'de> Deserialize<'de> for StatusInput {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StatusVisitor;
        impl Visitor<'_> for StatusVisitor {
            type Value = StatusInput;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(StatusInput::EXPECTED)
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<StatusInput, E> {
                StatusInput::from_name(value).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, value: u64) -> Result<StatusInput, E> {
                StatusInput::from_code(value).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, value: i64) -> Result<StatusInput, E> {
                Err(E::custom(StatusInput::unknown_code(value)))
            }
        }
        deserializer.deserialize_any(StatusVisitor)
    }
}

/// Written as its name (`"approved"`); read as a name, Kong's `"pending"` or
/// Kong's integer code (`StatusInput`).
impl Serialize for Status {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Status {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        StatusInput::deserialize(deserializer).map(|input| input.0)
    }
}
