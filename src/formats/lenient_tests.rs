use std::borrow::Cow;

use serde::Deserialize;
use serde_json::Value;

use super::*;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Inner<'a> {
    #[serde(borrow)]
    name: Str<'a>,
    n: U64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Doc<'a> {
    #[serde(borrow)]
    s: Str<'a>,
    n: U64,
    #[serde(borrow)]
    obj: Obj<Inner<'a>>,
    #[serde(borrow)]
    list: First<Inner<'a>>,
    #[serde(borrow)]
    many: Many<Inner<'a>>,
}

/// Every field read typed agrees with the same lookup on a `serde_json::Value`, for values of
/// every JSON type in every position.
#[test]
fn typed_fields_read_what_value_lookups_read() {
    let values = [
        r#""text""#,
        r#""esc\"aped \u00e9""#,
        "42",
        "-3",
        "4.5",
        "true",
        "null",
        "[]",
        r#"[{"name":"a","n":1},{"name":"b"}]"#,
        r#"["x",{"name":"b"}]"#,
        r#"{}"#,
        r#"{"name":"a","n":7,"deep":{"x":[1,{"y":null}]}}"#,
        r#"{"name":5,"n":"7"}"#,
    ];
    for v in values {
        let doc = format!(r#"{{"s":{v},"n":{v},"obj":{v},"list":{v},"many":{v},"other":{v}}}"#);
        let typed: Doc = serde_json::from_str(&doc).unwrap_or_else(|e| panic!("{doc}: {e}"));
        let value: Value = serde_json::from_str(&doc).unwrap();
        assert_eq!(typed.s.0.as_deref(), value["s"].as_str(), "{doc}");
        assert_eq!(typed.n.0, value["n"].as_u64(), "{doc}");
        let inner = |i: Option<&Inner>, v: Option<&Value>| {
            let v = v.filter(|v| v.is_object());
            assert_eq!(i.is_some(), v.is_some(), "{doc}");
            if let (Some(i), Some(v)) = (i, v) {
                assert_eq!(i.name.0.as_deref(), v["name"].as_str(), "{doc}");
                assert_eq!(i.n.0, v["n"].as_u64(), "{doc}");
            }
        };
        inner(typed.obj.as_ref(), value.get("obj"));
        inner(typed.list.0.as_ref(), value.pointer("/list/0"));
        let all: Vec<&Value> = value["many"].as_array().into_iter().flatten().collect();
        assert_eq!(typed.many.0.len(), all.len(), "{doc}");
        for (i, v) in typed.many.0.iter().zip(all) {
            inner(i.as_ref(), Some(v));
        }
    }
}

#[test]
fn strings_borrow_unless_escaped() {
    let d: Doc = serde_json::from_str(r#"{"s":"plain"}"#).unwrap();
    assert!(matches!(d.s.0, Some(Cow::Borrowed("plain"))));
    let d: Doc = serde_json::from_str(r#"{"s":"a\nb"}"#).unwrap();
    assert!(matches!(d.s.0, Some(Cow::Owned(ref s)) if s == "a\nb"));
    assert_eq!(d.s.as_str(), "a\nb");
    let d: Doc = serde_json::from_str(r#"{"s":""}"#).unwrap();
    assert_eq!(d.s.non_empty(), None);
    assert_eq!(d.s.0.as_deref(), Some(""));
}

#[test]
fn broken_json_still_fails() {
    assert!(serde_json::from_str::<Doc>(r#"{"s":"x""#).is_err());
    assert!(serde_json::from_str::<Doc>(r#"{"obj":{"name":}}"#).is_err());
    assert!(serde_json::from_str::<Doc>(r#"{"list":[{"n":1},]}"#).is_err());
}
