//! One truth for defaults. A default lives in three places: the config model's serde defaults
//! (`src/config/sections/`), the shipped `config/relay.toml` (which shows every key with its
//! default) and the table of limits in `docs/configuration.md`. These tests fail as soon as one
//! of them changes alone.
//!
//! "`key` defaults to `v`" is checked the way the binary would see it: a TOML file that sets only
//! `key = v` must load (through [`Config::parse`], the binary's loader) into exactly the model
//! an empty file loads into. The model is compared through its `Debug` text, which names every
//! field and value, so a difference anywhere is seen.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sse_relay::config::Config;

/// Keys of `config/relay.toml` that deliberately differ from the model's default, and why.
const SHIPPED_NOT_DEFAULT: &[(&str, &str)] = &[
    (
        "route",
        "the model has no route; the shipped file routes to the demo origin",
    ),
    (
        "demo_origin.enabled",
        "off by default; the shipped file starts the demo origin for a first run",
    ),
];

fn repo_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(repo_file(relative))
        .unwrap_or_else(|e| panic!("cannot read {relative}: {e}"))
}

/// The model an empty file loads into, as `Debug` text.
fn model_default() -> String {
    let config = Config::parse("", Path::new("empty.toml")).expect("an empty file parses");
    format!("{config:?}")
}

/// The model a file setting only `key` (dotted, e.g. `server.h2.max_frame_size`) to `value`
/// loads into, as `Debug` text; `Err` names why it does not load (unknown key, wrong type).
fn model_with(key: &str, value: &toml::Value) -> Result<String, String> {
    let mut parts: Vec<&str> = key.split('.').collect();
    let leaf = parts.pop().expect("a key has a name");
    let mut doc = toml::Table::new();
    doc.insert(leaf.to_owned(), value.clone());
    for table in parts.iter().rev() {
        let mut outer = toml::Table::new();
        outer.insert((*table).to_owned(), toml::Value::Table(doc));
        doc = outer;
    }
    let text = toml::to_string(&doc).map_err(|e| e.to_string())?;
    let config = Config::parse(&text, Path::new("one-key.toml")).map_err(|e| e.to_string())?;
    Ok(format!("{config:?}"))
}

/// Whether `key = value` is the model's default; `Err` says how it is not.
fn is_model_default(key: &str, value: &toml::Value, default: &str) -> Result<(), String> {
    match model_with(key, value) {
        Ok(debug) if debug == default => Ok(()),
        Ok(_) => Err(format!("the model's default for `{key}` is not {value}")),
        Err(e) => Err(format!("`{key} = {value}` does not load: {e}")),
    }
}

/// Every leaf key of `config/relay.toml` with its value (arrays of tables, `[[route]]`, are one
/// leaf under their name).
fn shipped_values() -> BTreeMap<String, toml::Value> {
    fn walk(prefix: &str, table: &toml::Table, out: &mut BTreeMap<String, toml::Value>) {
        for (name, value) in table {
            let key = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}.{name}")
            };
            match value {
                toml::Value::Table(inner) => walk(&key, inner, out),
                other => {
                    out.insert(key, other.clone());
                }
            }
        }
    }
    let table: toml::Table = read("config/relay.toml")
        .parse()
        .expect("config/relay.toml is TOML");
    let mut out = BTreeMap::new();
    walk("", &table, &mut out);
    out
}

/// The rows of every table in `docs/configuration.md` whose first two columns are `key` and
/// `default`: the key (without backticks) and the default, which must be a TOML value (in
/// backticks or not). A cell that is not one is an error, so the table stays checkable.
fn documented_defaults() -> Vec<(String, Result<toml::Value, String>)> {
    let text = read("docs/configuration.md");
    let cells = |line: &str| -> Vec<String> {
        line.trim()
            .trim_matches('|')
            .split('|')
            .map(|c| c.trim().to_owned())
            .collect()
    };
    let mut rows = Vec::new();
    let mut in_table = false;
    for line in text.lines() {
        if !line.trim_start().starts_with('|') {
            in_table = false;
            continue;
        }
        let row = cells(line);
        if row.len() >= 2 && row[0] == "key" && row[1] == "default" {
            in_table = true;
            continue;
        }
        if !in_table || row[0].starts_with("---") {
            continue;
        }
        let key = row[0].trim_matches('`').to_owned();
        let cell = row.get(1).map(|c| c.trim_matches('`')).unwrap_or_default();
        let value = format!("v = {cell}")
            .parse::<toml::Table>()
            .map_err(|_| format!("the default of `{key}`, {cell:?}, is not a TOML value"))
            .map(|mut t| t.remove("v").expect("the one key"));
        rows.push((key, value));
    }
    rows
}

#[test]
fn an_empty_file_loads_the_models_defaults() {
    assert_eq!(model_default(), format!("{:?}", Config::default()));
}

#[test]
fn a_value_other_than_the_default_is_noticed() {
    // The comparison below would pass vacuously if setting a key changed nothing it can see.
    let default = model_default();
    for (key, value) in [
        ("replay.max_events", toml::Value::Integer(1025)),
        ("server.h2.max_frame_size", toml::Value::Integer(16_385)),
        ("downstream.lag_policy", toml::Value::String("skip".into())),
    ] {
        assert!(
            is_model_default(key, &value, &default).is_err(),
            "{key} = {value} should not be the default"
        );
    }
}

#[test]
fn the_shipped_config_shows_the_models_defaults() {
    let default = model_default();
    let shipped = shipped_values();
    let mut wrong = Vec::new();
    for (key, reason) in SHIPPED_NOT_DEFAULT {
        assert!(
            shipped.contains_key(*key),
            "{key} ({reason}) is gone from config/relay.toml: drop it from SHIPPED_NOT_DEFAULT"
        );
    }
    for (key, value) in &shipped {
        if SHIPPED_NOT_DEFAULT.iter().any(|(k, _)| k == key) {
            continue;
        }
        if let Err(e) = is_model_default(key, value, &default) {
            wrong.push(format!("config/relay.toml: {e}"));
        }
    }
    assert!(
        shipped.len() > 60,
        "config/relay.toml has {} keys: is it read?",
        shipped.len()
    );
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
}

#[test]
fn the_documented_defaults_are_the_models_and_the_shipped_configs() {
    let default = model_default();
    let shipped = shipped_values();
    let rows = documented_defaults();
    assert!(
        rows.len() > 30,
        "docs/configuration.md has {} default rows: is the table read?",
        rows.len()
    );
    let mut wrong = Vec::new();
    for (key, value) in &rows {
        let value = match value {
            Ok(value) => value,
            Err(e) => {
                wrong.push(format!("docs/configuration.md: {e}"));
                continue;
            }
        };
        if let Err(e) = is_model_default(key, value, &default) {
            wrong.push(format!("docs/configuration.md: {e}"));
        }
        match shipped.get(key) {
            Some(in_file) if in_file == value => {}
            Some(in_file) => wrong.push(format!(
                "docs/configuration.md says `{key}` defaults to {value}, config/relay.toml shows {in_file}"
            )),
            None => wrong.push(format!(
                "docs/configuration.md documents `{key}`, which config/relay.toml does not show"
            )),
        }
    }
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
}
