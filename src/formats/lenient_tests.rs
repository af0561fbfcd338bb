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
    #[serde(borrow)]
    arr: Arr<Inner<'a>>,
    f: F64,
    b: Bool,
    #[serde(deserialize_with = "present")]
    p: Option<Value>,
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
        let doc = format!(
            r#"{{"s":{v},"n":{v},"obj":{v},"list":{v},"many":{v},"arr":{v},"f":{v},"b":{v},"p":{v},"other":{v}}}"#
        );
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
        assert_eq!(typed.f.0, value["f"].as_f64(), "{doc}");
        assert_eq!(typed.b.0, value["b"].as_bool(), "{doc}");
        assert_eq!(typed.p.as_ref(), value.get("p"), "{doc}");
        assert_eq!(typed.arr.0.as_ref().map(Vec::len), value["arr"].as_array().map(Vec::len), "{doc}");
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
fn absent_fields_read_as_absent() {
    let d: Doc = serde_json::from_str("{}").unwrap();
    assert!(d.s.0.is_none() && d.n.0.is_none() && d.f.0.is_none() && d.b.0.is_none());
    assert!(d.p.is_none() && d.arr.0.is_none() && d.obj.0.is_none() && d.many.0.is_empty());
}

#[test]
fn broken_json_still_fails() {
    assert!(serde_json::from_str::<Doc>(r#"{"s":"x""#).is_err());
    assert!(serde_json::from_str::<Doc>(r#"{"obj":{"name":}}"#).is_err());
    assert!(serde_json::from_str::<Doc>(r#"{"list":[{"n":1},]}"#).is_err());
}
