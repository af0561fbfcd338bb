//! Tool-call helpers shared by the format files: argument text <-> JSON object, tool-id
//! normalisation, and JSON-Schema sanitising for providers that accept a subset.
//! Knows no wire shapes.

use std::borrow::Cow;

use serde_json::{Map, Value};

/// A tool call's arguments text as a JSON value. A tool call with no arguments is
/// conventionally the empty string (or whitespace), which becomes `{}`.
pub fn tool_arguments_to_value(arguments: &str) -> Result<Value, serde_json::Error> {
    if arguments.trim().is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    serde_json::from_str(arguments)
}

/// Arguments for a format that needs an object (Anthropic `input`, Bedrock `input`, Gemini
/// `args`). Text that is not a JSON object is kept, not lost: `{"_raw_arguments": text}`.
pub fn tool_arguments_to_object(arguments: &str) -> Value {
    match tool_arguments_to_value(arguments) {
        Ok(v @ Value::Object(_)) => v,
        _ => serde_json::json!({ "_raw_arguments": arguments }),
    }
}

/// A JSON value (an `input` object) as arguments text.
pub fn value_to_tool_arguments(v: &Value) -> String {
    match v {
        Value::Null => "{}".to_owned(),
        v => v.to_string(),
    }
}

/// Anthropic (and Bedrock) tool ids must match `^[a-zA-Z0-9_-]+$`; other characters become `_`.
pub fn tool_id_for_anthropic(id: &str) -> Cow<'_, str> {
    let ok = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    if id.is_empty() {
        return Cow::Borrowed("toolu_missing");
    }
    if id.chars().all(ok) {
        Cow::Borrowed(id)
    } else {
        Cow::Owned(id.chars().map(|c| if ok(c) { c } else { '_' }).collect())
    }
}

/// A tool's parameter schema as an object schema (`{"type":"object",...}`), which Anthropic and
/// Bedrock require; a missing or null schema becomes an empty object schema.
pub fn object_schema(schema: &Value) -> Value {
    match schema {
        Value::Object(m) => {
            let mut m = m.clone();
            m.entry("type").or_insert_with(|| Value::String("object".into()));
            Value::Object(m)
        }
        _ => serde_json::json!({"type": "object", "properties": {}}),
    }
}

/// Remove `keys` from a JSON Schema at every depth (e.g. Gemini's OpenAPI subset rejects
/// `$schema` and `additionalProperties`). Property *names* under `properties` are kept even
/// when they equal a removed key.
pub fn strip_schema_keys(schema: &mut Value, keys: &[&str]) {
    match schema {
        Value::Object(m) => {
            m.retain(|k, _| !keys.contains(&k.as_str()));
            for (k, v) in m.iter_mut() {
                if k == "properties" {
                    if let Value::Object(props) = v {
                        for p in props.values_mut() {
                            strip_schema_keys(p, keys);
                        }
                    }
                } else {
                    strip_schema_keys(v, keys);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|v| strip_schema_keys(v, keys)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn empty_arguments_become_an_empty_object() {
        assert_eq!(tool_arguments_to_value("").unwrap(), json!({}));
        assert_eq!(tool_arguments_to_value("  ").unwrap(), json!({}));
    }

    #[test]
    fn everything_else_passes_through() {
        assert_eq!(tool_arguments_to_value(r#"{"a":1}"#).unwrap(), json!({"a": 1}));
        assert!(tool_arguments_to_value("{").is_err());
    }

    #[test]
    fn arguments_that_are_not_an_object_are_kept_raw() {
        assert_eq!(tool_arguments_to_object("[1]"), json!({"_raw_arguments": "[1]"}));
        assert_eq!(tool_arguments_to_object("{\"a\":"), json!({"_raw_arguments": "{\"a\":"}));
    }

    #[test]
    fn tool_ids_with_odd_characters_are_made_anthropic_safe() {
        assert_eq!(tool_id_for_anthropic("call_ab-9"), "call_ab-9");
        assert_eq!(tool_id_for_anthropic("call.a:b"), "call_a_b");
    }

    #[test]
    fn a_missing_schema_becomes_an_empty_object_schema() {
        assert_eq!(object_schema(&Value::Null), json!({"type":"object","properties":{}}));
        assert_eq!(object_schema(&json!({"properties":{}})), json!({"properties":{},"type":"object"}));
    }

    #[test]
    fn stripping_keeps_property_names() {
        let mut s = json!({"$schema":"x","type":"object","additionalProperties":false,
            "properties":{"additionalProperties":{"type":"string","$schema":"y"}}});
        strip_schema_keys(&mut s, &["$schema", "additionalProperties"]);
        assert_eq!(s, json!({"type":"object","properties":{"additionalProperties":{"type":"string"}}}));
    }
}
