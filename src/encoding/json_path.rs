//! Which field of a JSON text a deserialization error is in.
//!
//! serde_json says where an error is (line and column), not in which field.
//! `serde_path_to_error` names the field by wrapping every deserializer, and
//! those wrappers, one per type, were ~110 KB of the `.wasm`. Here the typed
//! parse runs plain, and only a failed one is explained: the text is walked up to
//! the error's position and the path is read off the objects and arrays open
//! there. Untrusted input is only scanned, never indexed.

use serde::de::DeserializeOwned;

/// A failed parse: where (`routes[2].methods[0]`; empty for the whole text)
/// and serde_json's message without its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub path: String,
    pub message: String,
}

/// Parses all of `text` as a `T`, naming the field of the first error.
pub fn from_slice<T: DeserializeOwned>(text: &[u8]) -> Result<T, Located> {
    serde_json::from_slice(text).map_err(|error| locate(text, &error))
}

/// Names the field of `error`, which parsing `text` gave.
pub fn locate(text: &[u8], error: &serde_json::Error) -> Located {
    let full = error.to_string();
    if error.line() == 0 {
        // No position (an error raised outside the text): nothing to name.
        return Located {
            path: String::new(),
            message: full,
        };
    }
    let position = format!(" at line {} column {}", error.line(), error.column());
    let message = full.strip_suffix(position.as_str()).unwrap_or(&full).to_string();
    Located {
        path: path_at(text, offset_of(text, error.line(), error.column())),
        message,
    }
}

/// The byte offset of serde_json's (1-based line, bytes into that line).
fn offset_of(text: &[u8], line: usize, column: usize) -> usize {
    let mut newlines_left = line.saturating_sub(1);
    let mut line_start = 0;
    for (at, byte) in text.iter().enumerate() {
        if newlines_left == 0 {
            break;
        }
        if *byte == b'\n' {
            newlines_left -= 1;
            line_start = at + 1;
        }
    }
    line_start.saturating_add(column).min(text.len())
}

/// An object or array open at some point of the text.
enum Open {
    /// `key`: the member being read; `wants_key`: the next string is a key.
    Object { key: Option<String>, wants_key: bool },
    /// `index`: the element being read, once `started`.
    Array { index: usize, started: bool },
}

/// The path of the value being read at `offset`, as `a.b[2].c`.
fn path_at(text: &[u8], offset: usize) -> String {
    let mut open: Vec<Open> = Vec::new();
    let mut at = 0;
    while at < offset {
        let Some(&byte) = text.get(at) else { break };
        match byte {
            b'{' => {
                value_starts(&mut open);
                open.push(Open::Object {
                    key: None,
                    wants_key: true,
                });
            }
            b'[' => {
                value_starts(&mut open);
                open.push(Open::Array {
                    index: 0,
                    started: false,
                });
            }
            b'}' | b']' => {
                open.pop();
            }
            b',' => match open.last_mut() {
                Some(Open::Object { key, wants_key }) => {
                    *key = None;
                    *wants_key = true;
                }
                Some(Open::Array { index, started }) => {
                    *index += 1;
                    *started = false;
                }
                None => {}
            },
            b'"' => {
                let end = string_end(text, at + 1);
                match open.last_mut() {
                    Some(Open::Object { key, wants_key }) if *wants_key => {
                        let name = text.get(at + 1..end).unwrap_or_default();
                        *key = Some(String::from_utf8_lossy(name).into_owned());
                        *wants_key = false;
                    }
                    _ => value_starts(&mut open),
                }
                at = end;
            }
            b':' | b' ' | b'\t' | b'\n' | b'\r' => {}
            _ => value_starts(&mut open), // a number, `true`, `false`, `null`
        }
        at += 1;
    }
    // serde_json puts some errors just before the value they are about (a map
    // where a string was expected): an element about to start is the one meant.
    let next = text
        .get(at..)
        .unwrap_or_default()
        .iter()
        .find(|byte| !byte.is_ascii_whitespace());
    if next.is_some_and(|byte| !matches!(byte, b']' | b'}' | b',' | b':')) {
        value_starts(&mut open);
    }
    let mut path = String::new();
    for level in &open {
        match level {
            Open::Object { key: Some(key), .. } => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
            }
            Open::Array { index, started: true } => path.push_str(&format!("[{index}]")),
            _ => {}
        }
    }
    path
}

fn value_starts(open: &mut [Open]) {
    if let Some(Open::Array { started, .. }) = open.last_mut() {
        *started = true;
    }
}

/// The offset of the quote closing a string whose content starts at `from`
/// (the text's end if it never closes).
fn string_end(text: &[u8], from: usize) -> usize {
    let mut at = from;
    while let Some(&byte) = text.get(at) {
        match byte {
            b'"' => return at,
            b'\\' => at += 2,
            _ => at += 1,
        }
    }
    text.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        name: String,
        #[serde(default)]
        routes: Vec<Route>,
        #[serde(default)]
        limits: Option<Limits>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Route {
        path: String,
        #[serde(default)]
        methods: Vec<String>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Limits {
        max: u32,
    }

    fn error_of(text: &str) -> Located {
        from_slice::<Outer>(text.as_bytes()).unwrap_err()
    }

    #[test]
    fn names_the_field_of_each_kind_of_error() {
        for (text, path, message) in [
            (
                r#"{"name":"a","routes":[{"path":"/"},{"path":"/x","methods":["GET",5]}]}"#,
                "routes[1].methods[1]",
                "invalid type: integer `5`, expected a string",
            ),
            (
                r#"{"name":"a","routes":[{"path":"/"},{"pth":"/x"}]}"#,
                "routes[1].pth",
                "unknown field `pth`",
            ),
            (
                r#"{"name":"a","routes":[{"path":"/"},{"methods":[]}]}"#,
                "routes[1]",
                "missing field `path`",
            ),
            (
                r#"{"name":"a","limits":{"max":-1}}"#,
                "limits.max",
                "invalid value: integer `-1`, expected u32",
            ),
            (
                r#"{"name":"a","limits":{"max":4294967296}}"#,
                "limits.max",
                "invalid value: integer `4294967296`, expected u32",
            ),
            (
                r#"{"name":"a","routes":{"path":"/"}}"#,
                "routes",
                "invalid type: map, expected a sequence",
            ),
            (r#"{"routes":[]}"#, "", "missing field `name`"),
            (r#"{"name":"a","extra":1}"#, "extra", "unknown field `extra`"),
            (r#""x""#, "", "invalid type: string \"x\", expected struct Outer"),
            // A struct may also be written as an array of its fields.
            (r#"[1]"#, "[0]", "invalid type: integer `1`, expected a string"),
        ] {
            let error = error_of(text);
            assert_eq!(error.path, path, "{text}: {error:?}");
            assert!(error.message.starts_with(message), "{text}: {error:?}");
        }
    }

    #[test]
    fn the_layout_of_the_text_does_not_change_the_path() {
        let pretty = "{\n  \"name\": \"a\",\n  \"routes\": [\n    {\"path\": \"/\"},\n    {\n      \"path\": \"/x\",\n      \"methods\": [\"GET\", 5]\n    }\n  ]\n}\n";
        let error = error_of(pretty);
        assert_eq!(error.path, "routes[1].methods[1]");
        assert_eq!(error.message, "invalid type: integer `5`, expected a string");
    }

    #[test]
    fn strings_with_brackets_quotes_and_commas_are_skipped_whole() {
        let text = r#"{"name":"a\",[{]}","routes":[{"path":"/a,b]\\","methods":[",",{}]}]}"#;
        assert_eq!(error_of(text).path, "routes[0].methods[1]");
        // Reported just before the map: the element about to start.
        assert_eq!(
            error_of(r#"{"name":"a","routes":[{"path":"/","methods":[ {}]}]}"#).path,
            "routes[0].methods[0]"
        );
    }

    #[test]
    fn syntax_errors_and_trailing_data_are_named_where_they_are() {
        assert_eq!(error_of(r#"{"name":"a","routes":[{"path":"/"#).path, "routes[0].path");
        let trailing = error_of(r#"{"name":"a"} x"#);
        assert_eq!(
            (trailing.path.as_str(), trailing.message.as_str()),
            ("", "trailing characters")
        );
        assert_eq!(error_of("").message, "EOF while parsing a value");
    }

    #[test]
    fn any_bytes_are_walked_without_panicking() {
        for text in [
            &b"{\"\\"[..],
            b"[[[[",
            b"}}]]",
            b"{\"a\xff\":",
            b"\"",
            b"{\"name\":\"\\u12",
        ] {
            let _ = from_slice::<Outer>(text);
            for offset in 0..=text.len() + 2 {
                let _ = path_at(text, offset);
            }
        }
    }
}
