//! Lossless edits of the operator's YAML text: create, replace or delete one entry of the four
//! top-level lists (`providers`, `models`, `projects`, `keys`), and replace scalars at given paths
//! (secrets in config versions). Built on `yaml-edit` (a lossless syntax tree), so comments,
//! blank lines, key order, quoting and flow/block style of everything not edited stay byte for
//! byte. Every edit is then checked: the edited text, parsed, must equal the parsed original with
//! exactly that change; anything else is refused (`EditError::Unverified`) and nothing is written.
//!
//! What is kept: every byte outside the edited entry; in a replaced entry, the fields whose value
//! did not change (with their comments); a comment line directly above a deleted entry stays
//! (it is attached to the entry before it). What is not: comments inside a field whose value
//! changed, and the formatting of new values (written in block style by the YAML serializer).

use std::str::FromStr;

use serde_yaml::{Mapping as YMapping, Value};
use yaml_edit::{Document, Mapping, Sequence, YamlNode};

/// One of the four top-level lists the admin API edits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Section {
    Providers,
    Models,
    Projects,
    Keys,
}

impl Section {
    pub const ALL: [Section; 4] = [Section::Providers, Section::Models, Section::Projects, Section::Keys];

    /// The top-level key, also the admin path segment (`/admin/<name>`).
    pub fn name(self) -> &'static str {
        match self {
            Section::Providers => "providers",
            Section::Models => "models",
            Section::Projects => "projects",
            Section::Keys => "keys",
        }
    }

    /// The field that names an entry (unique within the list).
    pub fn id_field(self) -> &'static str {
        match self {
            Section::Providers | Section::Projects => "name",
            Section::Models => "alias",
            Section::Keys => "id",
        }
    }
}

/// One change to a list.
#[derive(Clone, Copy, Debug)]
pub enum Edit<'a> {
    /// Append an entry (its id must be new).
    Create(&'a YMapping),
    /// Replace the entry with this id (field by field: unchanged fields are not touched).
    Replace(&'a str, &'a YMapping),
    /// Remove the entry with this id.
    Delete(&'a str),
}

/// One step of a path into the YAML document.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// Render a path as `providers[2].api_key`.
pub fn path_string(path: &[Seg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) if s.is_empty() => s.push_str(k),
            Seg::Key(k) => {
                s.push('.');
                s.push_str(k);
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// Why an edit was not made.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    #[error("the config file is not valid YAML: {0}")]
    Parse(String),
    #[error("the config file's top level is not a mapping")]
    NotAMapping,
    #[error("`{0}` in the config file is not a list")]
    NotAList(&'static str),
    #[error("{section} has no entry {id:?}")]
    NotFound { section: &'static str, id: String },
    #[error("{section} already has an entry {id:?}")]
    Exists { section: &'static str, id: String },
    #[error("no value at {0} in the config file")]
    NoPath(String),
    #[error(
        "the change cannot be written into the config file without altering other parts of it ({0}); \
         make it by editing the file"
    )]
    Unverified(String),
}

/// Parse YAML text into a value (an empty file is an empty mapping).
pub fn parse_value(text: &str) -> Result<Value, EditError> {
    let v: Value = serde_yaml::from_str(text).map_err(|e| EditError::Parse(e.to_string()))?;
    Ok(if v.is_null() { Value::Mapping(YMapping::new()) } else { v })
}

/// Apply one entry edit to `text`, keeping everything else as written.
pub fn edit_entry(text: &str, section: Section, edit: Edit<'_>) -> Result<String, EditError> {
    let before = parse_value(text)?;
    let name = section.name();
    let root = before.as_mapping().ok_or(EditError::NotAMapping)?;
    let empty = Vec::new();
    let list = match root.get(name) {
        None | Some(Value::Null) => &empty,
        Some(Value::Sequence(s)) => s,
        Some(_) => return Err(EditError::NotAList(name)),
    };
    let position =
        |id: &str| list.iter().position(|e| e.get(section.id_field()).and_then(Value::as_str) == Some(id));

    // The expected result, on the parsed value.
    let mut expected_list = list.clone();
    match edit {
        Edit::Create(entry) => {
            let id = entry.get(section.id_field()).and_then(Value::as_str).unwrap_or_default();
            if position(id).is_some() {
                return Err(EditError::Exists { section: name, id: id.to_string() });
            }
            expected_list.push(Value::Mapping(entry.clone()));
        }
        Edit::Replace(id, entry) => {
            let i = position(id).ok_or_else(|| EditError::NotFound { section: name, id: id.to_string() })?;
            expected_list[i] = Value::Mapping(entry.clone());
        }
        Edit::Delete(id) => {
            let i = position(id).ok_or_else(|| EditError::NotFound { section: name, id: id.to_string() })?;
            expected_list.remove(i);
        }
    }
    let mut expected = before.clone();
    if let Some(m) = expected.as_mapping_mut() {
        m.insert(Value::String(name.into()), Value::Sequence(expected_list));
    }

    // The same change on the lossless tree.
    let doc = Document::from_str(text).map_err(|e| EditError::Parse(e.to_string()))?;
    let root_map = doc.as_mapping().ok_or(EditError::NotAMapping)?;
    match edit {
        Edit::Create(entry) => {
            let seq = match root_map.get_sequence(name) {
                Some(seq) if !(seq.is_empty() && seq.is_flow_style()) => seq,
                // Absent, `keys:` with no value, or `keys: []`: start a block list.
                _ => {
                    root_map.set(name, Sequence::new());
                    root_map.get_sequence(name).ok_or(EditError::NotAList(name))?
                }
            };
            seq.push(entry_mapping(entry)?);
        }
        Edit::Replace(id, entry) => {
            let i = position(id).ok_or_else(|| EditError::NotFound { section: name, id: id.to_string() })?;
            let seq = root_map.get_sequence(name).ok_or(EditError::NotAList(name))?;
            let old = list[i].as_mapping();
            let node = seq.get(i).ok_or_else(|| EditError::NoPath(format!("{name}[{i}]")))?;
            match (node.as_mapping(), old) {
                (Some(target), Some(old)) => replace_fields(target, old, entry)?,
                _ => {
                    seq.set(i, entry_mapping(entry)?);
                }
            }
        }
        Edit::Delete(id) => {
            let i = position(id).ok_or_else(|| EditError::NotFound { section: name, id: id.to_string() })?;
            let seq = root_map.get_sequence(name).ok_or(EditError::NotAList(name))?;
            seq.remove(i);
        }
    }
    let after = doc.to_string();
    verify(&after, &expected)?;
    Ok(after)
}

/// Replace the scalar (or any value) at each path; paths must exist.
pub fn set_values(text: &str, changes: &[(Vec<Seg>, Value)]) -> Result<String, EditError> {
    if changes.is_empty() {
        return Ok(text.to_string());
    }
    let mut expected = parse_value(text)?;
    for (path, v) in changes {
        let slot = value_at_mut(&mut expected, path).ok_or_else(|| EditError::NoPath(path_string(path)))?;
        *slot = v.clone();
    }
    let doc = Document::from_str(text).map_err(|e| EditError::Parse(e.to_string()))?;
    let root = doc.as_mapping().ok_or(EditError::NotAMapping)?;
    for (path, v) in changes {
        let Some((last, parents)) = path.split_last() else {
            return Err(EditError::NoPath(String::new()));
        };
        let mut at = Container::Map(root.clone());
        for seg in parents {
            let node = at.get(seg).ok_or_else(|| EditError::NoPath(path_string(path)))?;
            at = Container::of(&node).ok_or_else(|| EditError::NoPath(path_string(path)))?;
        }
        let node = value_node(v)?;
        match (at, last) {
            (Container::Map(m), Seg::Key(k)) => m.set(k.as_str(), node),
            (Container::Seq(s), Seg::Index(i)) => {
                if !s.set(*i, node) {
                    return Err(EditError::NoPath(path_string(path)));
                }
            }
            _ => return Err(EditError::NoPath(path_string(path))),
        }
    }
    let after = doc.to_string();
    verify(&after, &expected)?;
    Ok(after)
}

/// The value at `path`, if any.
pub fn value_at<'a>(v: &'a Value, path: &[Seg]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, seg| match seg {
        Seg::Key(k) => v.as_mapping()?.get(k.as_str()),
        Seg::Index(i) => v.as_sequence()?.get(*i),
    })
}

fn value_at_mut<'a>(v: &'a mut Value, path: &[Seg]) -> Option<&'a mut Value> {
    path.iter().try_fold(v, |v, seg| match seg {
        Seg::Key(k) => v.as_mapping_mut()?.get_mut(k.as_str()),
        Seg::Index(i) => v.as_sequence_mut()?.get_mut(*i),
    })
}

/// Set each field of `entry` that differs from `old`, remove the fields `entry` lacks.
fn replace_fields(target: &Mapping, old: &YMapping, entry: &YMapping) -> Result<(), EditError> {
    for (k, v) in entry {
        let Some(key) = k.as_str() else {
            return Err(EditError::Unverified("a field name is not a string".into()));
        };
        if old.get(k) != Some(v) {
            target.set(key, value_node(v)?);
        }
    }
    for k in old.keys() {
        if !entry.contains_key(k) {
            if let Some(key) = k.as_str() {
                target.remove(key);
            }
        }
    }
    Ok(())
}

/// An entry rendered by the YAML serializer, as a block mapping to insert.
fn entry_mapping(entry: &YMapping) -> Result<Mapping, EditError> {
    let text = serde_yaml::to_string(entry).map_err(|e| EditError::Unverified(e.to_string()))?;
    let doc = Document::from_str(&text).map_err(|e| EditError::Unverified(e.to_string()))?;
    doc.as_mapping().ok_or_else(|| EditError::Unverified("the entry did not render as a mapping".into()))
}

/// Any value rendered by the YAML serializer (so strings that look like numbers, dates or
/// booleans are quoted), as a node to insert.
fn value_node(v: &Value) -> Result<YamlNode, EditError> {
    let mut wrapper = YMapping::new();
    wrapper.insert(Value::String("v".into()), v.clone());
    let text = serde_yaml::to_string(&wrapper).map_err(|e| EditError::Unverified(e.to_string()))?;
    let doc = Document::from_str(&text).map_err(|e| EditError::Unverified(e.to_string()))?;
    doc.get("v").ok_or_else(|| EditError::Unverified("the value did not render".into()))
}

/// The edited text must parse to exactly the expected value.
fn verify(after: &str, expected: &Value) -> Result<(), EditError> {
    let got = parse_value(after).map_err(|e| EditError::Unverified(e.to_string()))?;
    if &got != expected {
        return Err(EditError::Unverified(
            "the edited file does not read back as the intended config".into(),
        ));
    }
    Ok(())
}

/// A mapping or sequence node while walking a path.
enum Container {
    Map(Mapping),
    Seq(Sequence),
}

impl Container {
    fn of(node: &YamlNode) -> Option<Container> {
        if let Some(m) = node.as_mapping() {
            return Some(Container::Map(m.clone()));
        }
        node.as_sequence().map(|s| Container::Seq(s.clone()))
    }

    fn get(&self, seg: &Seg) -> Option<YamlNode> {
        match (self, seg) {
            (Container::Map(m), Seg::Key(k)) => m.get(k.as_str()),
            (Container::Seq(s), Seg::Index(i)) => s.get(*i),
            _ => None,
        }
    }
}

#[cfg(test)]
#[path = "edit_tests.rs"]
mod tests;
