//! What the commands print: aligned tables and `key: value` blocks for people, the API's JSON
//! with `--json`.

use serde_json::Value;
use std::io::Write;

/// `println!` that ends the process quietly when stdout is closed (`hookline ... | head`),
/// instead of panicking.
macro_rules! out {
    () => {
        $crate::cli::output::emit("")
    };
    ($($arg:tt)*) => {
        $crate::cli::output::emit(&format!($($arg)*))
    };
}
pub(crate) use out;

pub fn emit(line: &str) {
    let mut stdout = std::io::stdout().lock();
    if writeln!(stdout, "{line}")
        .and_then(|()| stdout.flush())
        .is_err()
    {
        std::process::exit(super::exit::OK);
    }
}

/// Prints the API's answer as pretty JSON (the `--json` output).
pub fn print_json(value: &Value) {
    out!(
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
        out!("{}", padded.join("  ").trim_end());
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
        out!("{:<width$}  {value}", format!("{key}:"), width = width + 1);
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

/// The footer of a page: `20 deliveries shown, 41 in all; next: --page 1`.
pub fn page_footer(page: &Value, noun: &str) {
    let total = page["total"].as_u64().unwrap_or(0);
    let shown = page["content"].as_array().map_or(0, Vec::len);
    let next = if page["last"] == Value::Bool(false) {
        format!("; next: --page {}", page["page"].as_u64().unwrap_or(0) + 1)
    } else {
        String::new()
    };
    out!("{shown} {noun} shown, {total} in all{next}");
}
