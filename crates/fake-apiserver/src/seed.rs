//! Reading objects from YAML/JSON text and files (multi-document, `kind: List`).

use anyhow::Context;
use serde_json::Value;

/// Parses multi-document YAML (JSON is YAML) into objects, flattening `*List`
/// kinds and skipping empty documents.
pub fn parse_documents(text: &str) -> anyhow::Result<Vec<Value>> {
    let mut out = Vec::new();
    let docs: Vec<Value> = serde_saphyr::from_multiple(text).context("invalid YAML document")?;
    for v in docs {
        flatten(v, &mut out);
    }
    Ok(out)
}

fn flatten(v: Value, out: &mut Vec<Value>) {
    match v {
        Value::Null => {}
        Value::Object(ref m)
            if m.get("kind")
                .and_then(Value::as_str)
                .is_some_and(|k| k.ends_with("List"))
                && m.get("items").is_some_and(Value::is_array) =>
        {
            if let Some(Value::Array(items)) = m.get("items") {
                for i in items.clone() {
                    flatten(i, out);
                }
            }
        }
        other => out.push(other),
    }
}

/// Reads a `.yaml`/`.yml`/`.json` file.
pub fn read_file(path: &std::path::Path) -> anyhow::Result<Vec<Value>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse_documents(&text).with_context(|| format!("parsing {}", path.display()))
}
