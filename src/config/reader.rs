//! Reading a configuration's JSON value by hand, each error naming its field.
//!
//! Why not serde's derive: its readers, one per struct, field type and
//! option, were about 80 KB of the `.wasm` (issue 14). Here one set of
//! functions serves every version's shape, which only lists its fields. The
//! messages keep serde's wording (`unknown field`, `missing field`,
//! `invalid type`), so what an operator reads has not changed.

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::ConfigError;

/// One JSON object of the configuration: its members and where it is.
pub(super) struct Object<'a> {
    members: &'a Map<String, Value>,
    path: String,
}

impl<'a> Object<'a> {
    /// `value` as an object whose every member is one of `fields`.
    pub(super) fn new(value: &'a Value, path: &str, fields: &[&str]) -> Result<Object<'a>, ConfigError> {
        let Value::Object(members) = value else {
            return Err(invalid_type(value, path, "a map"));
        };
        if let Some(unknown) = members.keys().find(|key| !fields.contains(&key.as_str())) {
            let expected: Vec<String> = fields.iter().map(|field| format!("`{field}`")).collect();
            return Err(ConfigError::new(
                member(path, unknown),
                format!("unknown field `{unknown}`, expected one of {}", expected.join(", ")),
            ));
        }
        Ok(Object {
            members,
            path: path.to_string(),
        })
    }

    /// The path of the member `key`.
    pub(super) fn path_of(&self, key: &str) -> String {
        member(&self.path, key)
    }

    /// The member `key`; a `null` one is absent, as serde reads an option.
    pub(super) fn get(&self, key: &str) -> Option<&'a Value> {
        self.members.get(key).filter(|value| !value.is_null())
    }

    /// Member `key`, read by `read(value, path)` when present.
    pub(super) fn optional<T>(
        &self,
        key: &str,
        read: impl FnOnce(&'a Value, &str) -> Result<T, ConfigError>,
    ) -> Result<Option<T>, ConfigError> {
        self.get(key).map(|value| read(value, &self.path_of(key))).transpose()
    }

    /// Member `key`, which must be there.
    pub(super) fn required<T>(
        &self,
        key: &str,
        read: impl FnOnce(&'a Value, &str) -> Result<T, ConfigError>,
    ) -> Result<T, ConfigError> {
        self.optional(key, read)?
            .ok_or_else(|| ConfigError::new(self.path.clone(), format!("missing field `{key}`")))
    }

    pub(super) fn string(&self, key: &str) -> Result<Option<String>, ConfigError> {
        self.optional(key, string)
    }

    pub(super) fn required_string(&self, key: &str) -> Result<String, ConfigError> {
        self.required(key, string)
    }

    pub(super) fn u64(&self, key: &str) -> Result<Option<u64>, ConfigError> {
        self.optional(key, unsigned)
    }

    pub(super) fn u32(&self, key: &str) -> Result<Option<u32>, ConfigError> {
        self.optional(key, |value, path| {
            let number = unsigned(value, path)?;
            u32::try_from(number)
                .map_err(|_| ConfigError::new(path, format!("invalid value: integer `{number}`, expected u32")))
        })
    }

    pub(super) fn bool(&self, key: &str) -> Result<Option<bool>, ConfigError> {
        self.optional(key, |value, path| {
            value.as_bool().ok_or_else(|| invalid_type(value, path, "a boolean"))
        })
    }

    /// Member `key`, one of `variants` by name.
    pub(super) fn choice<T: Copy>(&self, key: &str, variants: &[(&str, T)]) -> Result<Option<T>, ConfigError> {
        self.optional(key, |value, path| choice(value, path, variants))
    }
}

/// A list, each item read by `item(value, path)`.
pub(super) fn list<'a, T>(
    value: &'a Value,
    path: &str,
    mut item: impl FnMut(&'a Value, &str) -> Result<T, ConfigError>,
) -> Result<Vec<T>, ConfigError> {
    let Value::Array(items) = value else {
        return Err(invalid_type(value, path, "a sequence"));
    };
    items
        .iter()
        .enumerate()
        .map(|(index, value)| item(value, &format!("{path}[{index}]")))
        .collect()
}

fn string(value: &Value, path: &str) -> Result<String, ConfigError> {
    match value {
        Value::String(text) => Ok(text.clone()),
        other => Err(invalid_type(other, path, "a string")),
    }
}

pub(super) fn strings(value: &Value, path: &str) -> Result<Vec<String>, ConfigError> {
    list(value, path, string)
}

fn unsigned(value: &Value, path: &str) -> Result<u64, ConfigError> {
    match value {
        Value::Number(number) => match (number.as_u64(), number.as_i64()) {
            (Some(number), _) => Ok(number),
            (None, Some(negative)) => Err(ConfigError::new(
                path,
                format!("invalid value: integer `{negative}`, expected u64"),
            )),
            (None, None) => Err(invalid_type(value, path, "u64")),
        },
        other => Err(invalid_type(other, path, "u64")),
    }
}

/// One of `variants` by name, as serde reads a unit enum.
pub(super) fn choice<T: Copy>(value: &Value, path: &str, variants: &[(&str, T)]) -> Result<T, ConfigError> {
    let Value::String(name) = value else {
        return Err(invalid_type(value, path, "a string"));
    };
    variants
        .iter()
        .find(|(variant, _)| variant == name)
        .map(|(_, chosen)| *chosen)
        .ok_or_else(|| {
            let expected: Vec<String> = variants.iter().map(|(variant, _)| format!("`{variant}`")).collect();
            ConfigError::new(
                path,
                format!("unknown variant `{name}`, expected one of {}", expected.join(", ")),
            )
        })
}

/// `parent.key`, or `key` at the top.
fn member(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

pub(super) fn invalid_type(value: &Value, path: &str, expected: &str) -> ConfigError {
    let found = match value {
        Value::Null => "null".to_string(),
        Value::Bool(flag) => format!("boolean `{flag}`"),
        Value::Number(number) if number.is_f64() => format!("floating point `{number}`"),
        Value::Number(number) => format!("integer `{number}`"),
        Value::String(text) => format!("string {text:?}"),
        Value::Array(_) => "sequence".to_string(),
        Value::Object(_) => "map".to_string(),
    };
    ConfigError::new(path, format!("invalid type: {found}, expected {expected}"))
}

/// A JSON value as serde_json reads one, except that an object naming a
/// member twice is refused (serde_json's `Value` keeps the last), as serde's
/// derive refused it: which of the two the operator meant is not for the
/// filter to guess.
pub(super) struct Strict(pub(super) Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Strict, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, flag: bool) -> Result<Value, E> {
        Ok(Value::Bool(flag))
    }

    fn visit_i64<E>(self, number: i64) -> Result<Value, E> {
        Ok(Value::from(number))
    }

    fn visit_u64<E>(self, number: u64) -> Result<Value, E> {
        Ok(Value::from(number))
    }

    fn visit_f64<E>(self, number: f64) -> Result<Value, E> {
        Ok(Value::from(number))
    }

    fn visit_str<E>(self, text: &str) -> Result<Value, E> {
        Ok(Value::String(text.to_string()))
    }

    fn visit_string<E>(self, text: String) -> Result<Value, E> {
        Ok(Value::String(text))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<Value, A::Error> {
        let mut list = Vec::new();
        while let Some(Strict(item)) = items.next_element()? {
            list.push(item);
        }
        Ok(Value::Array(list))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut members: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = members.next_key::<String>()? {
            if map.contains_key(&key) {
                return Err(serde::de::Error::custom(format_args!("duplicate field `{key}`")));
            }
            let Strict(value) = members.next_value()?;
            map.insert(key, value);
        }
        Ok(Value::Object(map))
    }
}
