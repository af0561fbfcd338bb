//! JSON Schema -> the OpenAPI 3.0 subset Gemini accepts in `functionDeclarations[].parameters`
//! and `responseSchema`. Keeps only the keys Gemini knows, inlines local `$ref`s, turns
//! `type: [T, "null"]` into `nullable`, `const` into a one-value `enum`, and drops `format`s
//! Gemini rejects. Pure.

use serde_json::{json, Map, Value};

/// Keys of a Gemini `Schema` object.
const KEPT: &[&str] = &[
    "type",
    "format",
    "title",
    "description",
    "nullable",
    "enum",
    "maxItems",
    "minItems",
    "properties",
    "required",
    "minProperties",
    "maxProperties",
    "minLength",
    "maxLength",
    "pattern",
    "example",
    "anyOf",
    "propertyOrdering",
    "default",
    "items",
    "minimum",
    "maximum",
];

/// `$ref`s are inlined at most this deep (recursive schemas are cut off there).
const MAX_REF_DEPTH: usize = 8;

/// The sanitised schema, or `None` for a missing/empty one (Gemini rejects `parameters: {}`
/// with no properties for some models; omitting it means "no arguments").
pub fn sanitize_schema(schema: &Value) -> Option<Value> {
    let Value::Object(root) = schema else {
        return None;
    };
    let defs = root
        .get("$defs")
        .or_else(|| root.get("definitions"))
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let out = clean(schema, &defs, 0);
    let empty_object = out.get("type").and_then(Value::as_str) == Some("object")
        && out.get("properties").and_then(Value::as_object).is_none_or(Map::is_empty);
    if out.as_object().is_none_or(Map::is_empty) || empty_object {
        return None;
    }
    Some(out)
}

fn clean(v: &Value, defs: &Map<String, Value>, depth: usize) -> Value {
    let Value::Object(m) = v else {
        return json!({});
    };
    if let Some(r) = m.get("$ref").and_then(Value::as_str) {
        let name = r.strip_prefix("#/$defs/").or_else(|| r.strip_prefix("#/definitions/"));
        return match name.and_then(|n| defs.get(n)) {
            Some(target) if depth < MAX_REF_DEPTH => {
                let mut inlined = clean(target, defs, depth + 1);
                if let (Some(d), Value::Object(o)) = (m.get("description"), &mut inlined) {
                    o.insert("description".into(), d.clone());
                }
                inlined
            }
            _ => json!({"type": "object"}),
        };
    }
    let mut out = Map::new();
    for (k, x) in m {
        match k.as_str() {
            "type" => match x {
                Value::String(t) => {
                    out.insert("type".into(), json!(t.to_ascii_lowercase()));
                }
                Value::Array(ts) => {
                    let non_null: Vec<&str> =
                        ts.iter().filter_map(Value::as_str).filter(|t| *t != "null").collect();
                    if non_null.len() < ts.len() {
                        out.insert("nullable".into(), json!(true));
                    }
                    if let Some(t) = non_null.first() {
                        out.insert("type".into(), json!(t.to_ascii_lowercase()));
                    }
                }
                _ => {}
            },
            "const" => {
                out.insert("enum".into(), json!([x]));
            }
            "properties" => {
                if let Value::Object(props) = x {
                    let p: Map<String, Value> =
                        props.iter().map(|(name, s)| (name.clone(), clean(s, defs, depth))).collect();
                    out.insert("properties".into(), Value::Object(p));
                }
            }
            "items" => {
                out.insert("items".into(), clean(x, defs, depth));
            }
            "anyOf" | "oneOf" => {
                if let Value::Array(alts) = x {
                    let mut alts: Vec<Value> = alts.iter().map(|s| clean(s, defs, depth)).collect();
                    // `anyOf: [T, {"type":"null"}]` is how JSON Schema spells nullable.
                    let before = alts.len();
                    alts.retain(|a| a.get("type").and_then(Value::as_str) != Some("null"));
                    if alts.len() < before {
                        out.insert("nullable".into(), json!(true));
                    }
                    if alts.len() == 1 {
                        if let Value::Object(o) = alts.remove(0) {
                            for (k2, v2) in o {
                                out.entry(k2).or_insert(v2);
                            }
                        }
                    } else if !alts.is_empty() {
                        out.insert("anyOf".into(), Value::Array(alts));
                    }
                }
            }
            "format" => {
                let ok =
                    matches!(x.as_str(), Some("enum" | "date-time" | "int32" | "int64" | "float" | "double"));
                if ok {
                    out.insert("format".into(), x.clone());
                }
            }
            "enum" => {
                // Gemini enums are strings.
                if let Value::Array(vals) = x {
                    let vals: Vec<Value> = vals
                        .iter()
                        .filter(|v| !v.is_null())
                        .map(|v| match v {
                            Value::String(_) => v.clone(),
                            v => json!(v.to_string()),
                        })
                        .collect();
                    out.insert("enum".into(), Value::Array(vals));
                }
            }
            "examples" => {
                if let Some(first) = x.as_array().and_then(|a| a.first()) {
                    out.entry("example").or_insert_with(|| first.clone());
                }
            }
            k if KEPT.contains(&k) => {
                out.insert(k.to_owned(), x.clone());
            }
            _ => {}
        }
    }
    // Gemini requires `required` names to exist in `properties`.
    if let (Some(Value::Array(req)), Some(Value::Object(props))) =
        (out.get("required"), out.get("properties"))
    {
        let kept: Vec<Value> =
            req.iter().filter(|r| r.as_str().is_some_and(|n| props.contains_key(n))).cloned().collect();
        out.insert("required".into(), Value::Array(kept));
    }
    if out.get("enum").is_some() && !out.contains_key("type") {
        out.insert("type".into(), json!("string"));
    }
    Value::Object(out)
}
