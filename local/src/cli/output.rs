//! What the commands print: aligned tables and `key: value` blocks for people, the API's JSON
//! with `--json`.

use serde_json::Value;

/// Prints the API's answer as pretty JSON (the `--json` output).
pub fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    );
}

/// A table with a header row; columns padded to their widest cell.
pub fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = widths[i]))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// `key: value` lines, keys aligned.
pub fn print_fields(fields: &[(&str, String)]) {
    let width = fields.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (key, value) in fields {
        println!("{:<width$}  {value}", format!("{key}:"), width = width + 1);
    }
}

/// A JSON field as text: strings bare, `null`/missing as `-`, anything else as JSON.
pub fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A list field (`events`) as `a, b`.
pub fn list(value: &Value) -> String {
    value
        .as_array()
        .map(|items| items.iter().map(text).collect::<Vec<_>>().join(", "))
        .unwrap_or_else(|| text(value))
}

/// The footer of a page: `page 0 of 3 (41 in all)`.
pub fn page_footer(page: &Value, noun: &str) {
    let total = page["total"].as_u64().unwrap_or(0);
    let size = page["size"].as_u64().unwrap_or(20).max(1);
    let pages = total.div_ceil(size).max(1);
    let shown = page["content"].as_array().map_or(0, Vec::len);
    println!(
        "{shown} {noun} shown, {total} in all (page {} of {pages}, from 0{})",
        page["page"].as_u64().unwrap_or(0),
        if page["last"] == Value::Bool(false) {
            "; --page for more"
        } else {
            ""
        }
    );
}
