//! Aligned-column tables for terminals, and JSON values to table cells. Pure: no I/O.

use serde_json::Value;

/// A table of text cells: header row, then rows. Numeric columns are right-aligned.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Table {
    pub headers: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

// === impl Table ===

impl Table {
    pub fn new<S: Into<String>>(headers: impl IntoIterator<Item = S>) -> Table {
        Table { headers: headers.into_iter().map(Into::into).collect(), rows: Vec::new() }
    }

    /// Add a row; missing cells are blank, extra cells are dropped.
    pub fn push(&mut self, row: Vec<String>) {
        let mut row = row;
        row.resize(self.headers.len(), String::new());
        self.rows.push(row);
    }

    /// The table as lines: columns two spaces apart, each as wide as its widest cell, numbers
    /// right-aligned, no trailing spaces. Control characters in cells are shown as spaces.
    pub fn render(&self) -> String {
        let clean = |s: &str| -> String { s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect() };
        let headers: Vec<String> = self.headers.iter().map(|h| clean(h)).collect();
        let rows: Vec<Vec<String>> = self.rows.iter().map(|r| r.iter().map(|c| clean(c)).collect()).collect();
        let cols = headers.len();
        let mut width: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
        for row in &rows {
            for (i, cell) in row.iter().enumerate().take(cols) {
                width[i] = width[i].max(cell.chars().count());
            }
        }
        let numeric: Vec<bool> = (0..cols)
            .map(|i| {
                let mut cells =
                    rows.iter().map(|r| r[i].as_str()).filter(|c| !c.is_empty() && *c != "-").peekable();
                cells.peek().is_some() && cells.all(is_number)
            })
            .collect();
        let mut out = String::new();
        for row in std::iter::once(&headers).chain(rows.iter()) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate().take(cols) {
                if i > 0 {
                    line.push_str("  ");
                }
                let pad = width[i] - cell.chars().count();
                if numeric[i] {
                    line.extend(std::iter::repeat_n(' ', pad));
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    /// A table of JSON objects: the `preferred` fields first (those present in some object),
    /// then every other field except `skip`, object by object in the order serde_json keeps
    /// them (by name). Headers are the
    /// field names in upper case.
    pub fn from_objects(items: &[Value], preferred: &[&str], skip: &[&str]) -> Table {
        let mut fields: Vec<String> = Vec::new();
        let present = |name: &str| items.iter().any(|o| o.get(name).is_some());
        for p in preferred {
            if present(p) && !skip.contains(p) {
                fields.push((*p).to_string());
            }
        }
        for item in items {
            if let Value::Object(map) = item {
                for k in map.keys() {
                    if !fields.iter().any(|f| f == k) && !skip.contains(&k.as_str()) {
                        fields.push(k.clone());
                    }
                }
            }
        }
        let mut table = Table::new(fields.iter().map(|f| f.to_uppercase()));
        for item in items {
            table.push(fields.iter().map(|f| item.get(f).map(cell).unwrap_or_default()).collect());
        }
        table
    }
}

/// One JSON value as a cell: strings bare, null as `-`, arrays of scalars comma-joined,
/// objects as compact JSON.
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(items) if items.iter().all(|i| !i.is_array() && !i.is_object()) => {
            items.iter().map(cell).collect::<Vec<_>>().join(",")
        }
        other => other.to_string(),
    }
}

fn is_number(s: &str) -> bool {
    s.parse::<f64>().is_ok_and(f64::is_finite)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn columns_are_aligned_numbers_right_and_lines_have_no_trailing_spaces() {
        let mut t = Table::new(["ID", "REQUESTS", "NOTE"]);
        t.push(vec!["search-prod".into(), "12".into(), "ok".into()]);
        t.push(vec!["a".into(), "1234567".into(), String::new()]);
        t.push(vec!["b".into(), "-".into()]);
        assert_eq!(
            t.render(),
            "ID           REQUESTS  NOTE\n\
             search-prod        12  ok\n\
             a             1234567\n\
             b                   -\n"
        );
    }

    #[test]
    fn width_counts_characters_and_control_characters_are_blanked() {
        let mut t = Table::new(["NAME", "X"]);
        t.push(vec!["é€".into(), "1".into()]);
        t.push(vec!["a\x1b[31mb\nc".into(), "2".into()]);
        assert_eq!(t.render(), "NAME       X\né€         1\na [31mb c  2\n");
    }

    #[test]
    fn objects_become_rows_with_preferred_fields_first() {
        let items = vec![
            json!({"project": "search", "id": "k1", "hash": "sha256:x", "models": ["fast", "slow"], "rpm": 600}),
            json!({"id": "k2", "revoked": true, "budget": {"usd": 5, "period": "daily"}, "expires_at": null}),
        ];
        let t = Table::from_objects(&items, &["id", "project", "missing"], &["hash"]);
        assert_eq!(t.headers, ["ID", "PROJECT", "MODELS", "RPM", "BUDGET", "EXPIRES_AT", "REVOKED"]);
        assert_eq!(t.rows[0], ["k1", "search", "fast,slow", "600", "", "", ""]);
        assert_eq!(t.rows[1], ["k2", "", "", "", r#"{"period":"daily","usd":5}"#, "-", "true"]);
    }

    #[test]
    fn an_empty_list_renders_just_the_headers() {
        assert_eq!(Table::new(["A", "B"]).render(), "A  B\n");
        assert_eq!(Table::from_objects(&[], &["id"], &[]).headers.len(), 0);
    }
}
