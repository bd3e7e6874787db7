//! `traceforge list`: one line per cassette with its interactions, providers, size and format.

use serde_json::json;
use traceforge::Error;

use crate::args::ListArgs;
use crate::cassettes::{self, Loaded};
use crate::failure::Failure;
use crate::style::{human_size, Style};

/// Lists the cassettes; fails (exit 1) when some of them cannot be read, after listing all.
pub(crate) fn run(args: &ListArgs, style: Style) -> Result<(), Failure> {
    let loaded = cassettes::load_all(&args.dir, "reading")?;
    let unreadable = loaded.iter().filter(|l| l.file.is_err()).count();
    if args.json {
        let rows: Vec<_> = loaded.iter().map(row_json).collect();
        let document = json!({"directory": args.dir.display().to_string(), "cassettes": rows});
        println!("{}", serde_json::to_string_pretty(&document).unwrap_or_default());
    } else {
        print_table(&loaded, style);
    }
    if unreadable > 0 {
        return Err(Failure::problems(format!(
            "{unreadable} cassette(s) cannot be read; `traceforge check {}` says why and what to do",
            args.dir.display()
        )));
    }
    Ok(())
}

/// The format version a file declares, even when it is one this build does not read.
fn format_version(loaded: &Loaded) -> String {
    match &loaded.file {
        Ok(file) => file.format_version.to_string(),
        Err(Error::UnsupportedVersion { found, .. }) => found.clone(),
        Err(_) => "?".to_owned(),
    }
}

fn row_json(loaded: &Loaded) -> serde_json::Value {
    match &loaded.file {
        Ok(file) => json!({
            "path": loaded.name,
            "interactions": file.interactions.len(),
            "responses": cassettes::response_count(file),
            "providers": cassettes::upstreams(file),
            "size_bytes": loaded.size(),
            "format_version": file.format_version,
        }),
        Err(error) => json!({
            "path": loaded.name,
            "size_bytes": loaded.size(),
            "format_version": format_version(loaded),
            "error": error.to_string(),
        }),
    }
}

fn print_table(loaded: &[Loaded], style: Style) {
    if loaded.is_empty() {
        println!("no cassettes (no *.json files) here");
        return;
    }
    let headers = ["CASSETTE", "INTERACTIONS", "RESPONSES", "PROVIDERS", "SIZE", "FORMAT"];
    let rows: Vec<[String; 6]> = loaded
        .iter()
        .map(|l| match &l.file {
            Ok(file) => [
                l.name.clone(),
                file.interactions.len().to_string(),
                cassettes::response_count(file).to_string(),
                cassettes::upstreams(file).join(","),
                human_size(l.size()),
                file.format_version.to_string(),
            ],
            Err(_) => [l.name.clone(), "-".into(), "-".into(), "-".into(), human_size(l.size()), format_version(l)],
        })
        .collect();
    let mut widths = headers.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 6]| {
        let mut out = String::new();
        for (index, (cell, width)) in cells.iter().zip(widths).enumerate() {
            // Counts are right-aligned, text left-aligned.
            let padded = if (1..=2).contains(&index) { format!("{cell:>width$}") } else { format!("{cell:<width$}") };
            out.push_str(&padded);
            out.push_str("  ");
        }
        out.trim_end().to_owned()
    };
    println!("{}", style.bold(&line(headers)));
    for (row, loaded) in rows.iter().zip(loaded) {
        let text = line([&row[0], &row[1], &row[2], &row[3], &row[4], &row[5]]);
        match &loaded.file {
            Ok(_) => println!("{text}"),
            Err(error) => println!("{}\n  {}", style.red(&text), style.red(&format!("unreadable: {error}"))),
        }
    }
    let interactions: usize = loaded.iter().filter_map(|l| l.file.as_ref().ok()).map(|f| f.interactions.len()).sum();
    let size: u64 = loaded.iter().map(Loaded::size).sum();
    println!("{} cassette(s), {interactions} interaction(s), {}", loaded.len(), human_size(size));
}
