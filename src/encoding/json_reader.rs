//! Reading a JSON value by hand into a typed shape, each error naming its
//! field: the configuration (`config::v1`) and the admin API's bodies.
//!
//! Why not serde's derive: its readers, one per struct, field type and
//! option, were about 80 KB of the `.wasm` for the configuration alone (issue
//! 14). Here one set of functions serves every shape, which only lists its
//! fields. The messages keep serde's wording (`unknown field`, `missing
//! field`, `invalid type`), so what an operator or a client reads has not
//! changed. Every object refuses members it does not name.

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::json_path::Located;

/// A string, or a list of strings (`"a, b"` or `["a", "b"]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StringOrList {
    One(String),
    List(Vec<String>),
}

/// A failed read: where, and what.
pub type Error = Located;

/// `text` as one JSON value, for the readers below: an object that names a
/// member twice is refused (`Strict`), and a syntax error names where it is.
pub fn parse(text: &[u8]) -> Result<Value, Error> {
    super::json_path::from_slice(text).map(|Strict(value)| value)
}

fn fail(path: &str, message: impl Into<String>) -> Error {
    Located {
        path: path.to_string(),
        message: message.into(),
    }
}

/// One JSON object being read: its members and where it is.
pub struct Object<'a> {
    members: &'a Map<String, Value>,
    path: String,
}

impl<'a> Object<'a> {
    /// `value` as an object whose every member is one of `fields`.
    pub fn new(value: &'a Value, path: &str, fields: &[&str]) -> Result<Object<'a>, Error> {
        let Value::Object(members) = value else {
            return Err(invalid_type(value, path, "a map"));
        };
        if let Some(unknown) = members.keys().find(|key| !fields.contains(&key.as_str())) {
            return Err(fail(
                &member(path, unknown),
                format!("unknown field `{unknown}`, expected {}", one_of(fields.iter().copied())),
            ));
        }
        Ok(Object {
            members,
            path: path.to_string(),
        })
    }

    /// The path of the member `key`.
    pub fn path_of(&self, key: &str) -> String {
        member(&self.path, key)
    }

    /// The member `key`; a `null` one is absent, as serde reads an option.
    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.members.get(key).filter(|value| !value.is_null())
    }

    /// Member `key`, read by `read(value, path)` when present.
    pub fn optional<T>(
        &self,
        key: &str,
        read: impl FnOnce(&'a Value, &str) -> Result<T, Error>,
    ) -> Result<Option<T>, Error> {
        self.get(key).map(|value| read(value, &self.path_of(key))).transpose()
    }

    /// Member `key`, which must be there.
    pub fn required<T>(&self, key: &str, read: impl FnOnce(&'a Value, &str) -> Result<T, Error>) -> Result<T, Error> {
        self.optional(key, read)?
            .ok_or_else(|| fail(&self.path, format!("missing field `{key}`")))
    }

    pub fn string(&self, key: &str) -> Result<Option<String>, Error> {
        self.optional(key, string)
    }

    pub fn required_string(&self, key: &str) -> Result<String, Error> {
        self.required(key, string)
    }

    pub fn u64(&self, key: &str) -> Result<Option<u64>, Error> {
        self.optional(key, unsigned)
    }

    pub fn u32(&self, key: &str) -> Result<Option<u32>, Error> {
        self.optional(key, |value, path| {
            let number = unsigned(value, path)?;
            u32::try_from(number).map_err(|_| fail(path, format!("invalid value: integer `{number}`, expected u32")))
        })
    }

    pub fn bool(&self, key: &str) -> Result<Option<bool>, Error> {
        self.optional(key, |value, path| {
            value.as_bool().ok_or_else(|| invalid_type(value, path, "a boolean"))
        })
    }

    /// Member `key`, one of `variants` by name.
    pub fn choice<T: Copy>(&self, key: &str, variants: &[(&str, T)]) -> Result<Option<T>, Error> {
        self.optional(key, |value, path| choice(value, path, variants))
    }
}

/// A list, each item read by `item(value, path)`.
pub fn list<'a, T>(
    value: &'a Value,
    path: &str,
    mut item: impl FnMut(&'a Value, &str) -> Result<T, Error>,
) -> Result<Vec<T>, Error> {
    let Value::Array(items) = value else {
        return Err(invalid_type(value, path, "a sequence"));
    };
    items
        .iter()
        .enumerate()
        .map(|(index, value)| item(value, &format!("{path}[{index}]")))
        .collect()
}

fn string(value: &Value, path: &str) -> Result<String, Error> {
    match value {
        Value::String(text) => Ok(text.clone()),
        other => Err(invalid_type(other, path, "a string")),
    }
}

pub fn strings(value: &Value, path: &str) -> Result<Vec<String>, Error> {
    list(value, path, string)
}

pub fn unsigned(value: &Value, path: &str) -> Result<u64, Error> {
    match value {
        Value::Number(number) => match (number.as_u64(), number.as_i64()) {
            (Some(number), _) => Ok(number),
            (None, Some(negative)) => Err(fail(path, format!("invalid value: integer `{negative}`, expected u64"))),
            (None, None) => Err(invalid_type(value, path, "u64")),
        },
        other => Err(invalid_type(other, path, "u64")),
    }
}

/// One of `variants` by name, as serde reads a unit enum.
pub fn choice<T: Copy>(value: &Value, path: &str, variants: &[(&str, T)]) -> Result<T, Error> {
    let Value::String(name) = value else {
        return Err(invalid_type(value, path, "a string"));
    };
    variants
        .iter()
        .find(|(variant, _)| variant == name)
        .map(|(_, chosen)| *chosen)
        .ok_or_else(|| {
            let names = variants.iter().map(|(variant, _)| *variant);
            fail(path, format!("unknown variant `{name}`, expected {}", one_of(names)))
        })
}

/// "one of `a`, `b`", as serde words it.
fn one_of<'n>(names: impl Iterator<Item = &'n str>) -> String {
    let quoted: Vec<String> = names.map(|name| format!("`{name}`")).collect();
    format!("one of {}", quoted.join(", "))
}

/// An object's members as they are (`metadata`, `claims`).
pub fn map(value: &Value, path: &str) -> Result<Map<String, Value>, Error> {
    match value {
        Value::Object(members) => Ok(members.clone()),
        other => Err(invalid_type(other, path, "a map")),
    }
}

/// A string, or a list of strings.
pub fn string_or_list(value: &Value, path: &str) -> Result<StringOrList, Error> {
    match value {
        Value::String(one) => Ok(StringOrList::One(one.clone())),
        Value::Array(_) => strings(value, path).map(StringOrList::List),
        other => Err(invalid_type(other, path, "a string, or a list of strings")),
    }
}

/// `parent.key`, or `key` at the top.
fn member(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

pub fn invalid_type(value: &Value, path: &str, expected: &str) -> Error {
    let found = match value {
        Value::Null => "null".to_string(),
        Value::Bool(flag) => format!("boolean `{flag}`"),
        Value::Number(number) if number.is_f64() => format!("floating point `{number}`"),
        Value::Number(number) => format!("integer `{number}`"),
        Value::String(text) => format!("string {text:?}"),
        Value::Array(_) => "sequence".to_string(),
        Value::Object(_) => "map".to_string(),
    };
    fail(path, format!("invalid type: {found}, expected {expected}"))
}

/// A JSON value as serde_json reads one, except that an object naming a
/// member twice is refused (serde_json's `Value` keeps the last), as serde's
/// derive refused it: which of the two the operator meant is not for the
/// filter to guess.
#[derive(Debug)]
struct Strict(Value);

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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_string_or_a_list_is_refused_at_the_value() {
        assert_eq!(
            string_or_list(&json!("a"), "upstream").unwrap(),
            StringOrList::One("a".into())
        );
        assert_eq!(
            string_or_list(&json!(["a", "b"]), "upstream").unwrap(),
            StringOrList::List(vec!["a".into(), "b".into()])
        );
        let error = string_or_list(&json!(2379), "upstream").unwrap_err();
        assert_eq!(error.path, "upstream");
        assert_eq!(
            error.message,
            "invalid type: integer `2379`, expected a string, or a list of strings"
        );
        assert_eq!(
            string_or_list(&json!(["a", {}]), "upstream").unwrap_err().path,
            "upstream[1]"
        );
    }

    #[test]
    fn a_member_named_twice_is_refused_in_its_object() {
        let text = br#"{"a": {"b": 1, "c": [1, {"d": 2, "d": 3}]}}"#;
        let error = parse(text).unwrap_err();
        assert!(error.message.contains("duplicate field `d`"), "{error:?}");
        assert!(error.path.starts_with("a.c[1]"), "{error:?}");
        let value = parse(br#"{"a": [1, {"b": null}], "c": -2.5}"#).unwrap();
        assert_eq!(value, json!({"a": [1, {"b": null}], "c": -2.5}));
    }

    #[test]
    fn objects_refuse_what_they_do_not_name() {
        let value = json!({"name": "a", "extra": 1});
        let error = Object::new(&value, "sinks[0]", &["name", "path"]).err().unwrap();
        assert_eq!(error.path, "sinks[0].extra");
        assert_eq!(error.message, "unknown field `extra`, expected one of `name`, `path`");
        let object = Object::new(&value, "", &["name", "extra"]).unwrap();
        assert_eq!(
            object.required_string("path").unwrap_err().message,
            "missing field `path`"
        );
        assert_eq!(object.u64("extra").unwrap(), Some(1));
        assert_eq!(object.string("extra").unwrap_err().path, "extra");
    }
}
