//! `traceforge show`: each request (model, last messages) and what the model answered, read
//! with the library's own `Prompt` and `Answer`.

use serde_json::json;
use traceforge::cassette::{Body, CassetteFile, Interaction, RecordedResponse};
use traceforge::provider::{Answer, Prompt};

use crate::args::ShowArgs;
use crate::cassettes;
use crate::failure::Failure;
use crate::style::{excerpt, human_size, Style};

/// How much of a text the readable view shows without `--full`.
const EXCERPT_CHARS: usize = 400;

pub(crate) fn run(args: &ShowArgs, style: Style) -> Result<(), Failure> {
    if args.file.is_dir() {
        return Err(Failure::usage(format!(
            "{} is a directory; `traceforge show` takes one cassette file (`traceforge list {}` lists them)",
            args.file.display(),
            args.file.display()
        )));
    }
    let name = args.file.display().to_string();
    let loaded = cassettes::load(args.file.clone(), name.clone());
    let size = loaded.size();
    let file = loaded.file.map_err(|error| match error {
        traceforge::Error::CassetteRead { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            Failure::usage(format!("no cassette at {name}; `traceforge list` shows the ones there are"))
        }
        other => Failure::problems(other.to_string()),
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&document(&name, &file)).unwrap_or_default());
    } else {
        print_readable(&name, size, &file, args, style);
    }
    Ok(())
}

fn document(name: &str, file: &CassetteFile) -> serde_json::Value {
    let interactions: Vec<_> = file
        .interactions
        .iter()
        .map(|interaction| {
            let responses: Vec<_> = interaction
                .responses
                .iter()
                .map(|response| {
                    json!({
                        "status": response.status,
                        "body": body_kind(&response.body),
                        "answer": Answer::from_body(&response.body),
                    })
                })
                .collect();
            json!({
                "key": interaction.key,
                "method": interaction.request.method,
                "upstream": interaction.request.upstream,
                "path": interaction.request.path,
                "prompt": Prompt::from_request(&interaction.request),
                "responses": responses,
            })
        })
        .collect();
    json!({"cassette": name, "format_version": file.format_version, "interactions": interactions})
}

fn print_readable(name: &str, size: u64, file: &CassetteFile, args: &ShowArgs, style: Style) {
    let limit = (!args.full).then_some(EXCERPT_CHARS);
    println!(
        "{}  {}",
        style.bold(name),
        style.dim(&format!(
            "format {}, {} interaction(s), {} response(s), {}",
            file.format_version,
            file.interactions.len(),
            cassettes::response_count(file),
            human_size(size)
        ))
    );
    for (index, interaction) in file.interactions.iter().enumerate() {
        println!();
        print_request(index, interaction, args.messages, limit, style);
        for (ordinal, response) in interaction.responses.iter().enumerate() {
            let label =
                if interaction.responses.len() > 1 { format!("response {}", ordinal + 1) } else { String::new() };
            print_response(response, &label, limit, style);
        }
    }
    if file.interactions.is_empty() {
        println!("\n{}", style.dim("(no interactions)"));
    }
}

fn print_request(index: usize, interaction: &Interaction, messages: usize, limit: Option<usize>, style: Style) {
    let request = &interaction.request;
    let key = interaction.key.get(..12).unwrap_or(&interaction.key);
    println!(
        "{} {}  {}",
        style.bold(&format!("[{}]", index + 1)),
        style.cyan(&request.summary()),
        style.dim(&format!("key {key}"))
    );
    let prompt = Prompt::from_request(request);
    let mut facts = Vec::new();
    if let Some(model) = &prompt.model {
        facts.push(format!("model {model}"));
    }
    if prompt.stream {
        facts.push("streamed".to_owned());
    }
    if prompt.messages.len() > 1 {
        facts.push(format!("{} messages", prompt.messages.len()));
    }
    if !facts.is_empty() {
        println!("    {}", facts.join(", "));
    }
    let shown = if messages == 0 { &prompt.messages[..] } else { prompt.last(messages) };
    if shown.len() < prompt.messages.len() {
        println!("    {}", style.dim(&format!("… {} earlier message(s)", prompt.messages.len() - shown.len())));
    }
    for message in shown {
        println!("    {} {}", style.yellow(&format!("{}:", message.role)), excerpt(&message.text, limit));
    }
}

fn print_response(response: &RecordedResponse, label: &str, limit: Option<usize>, style: Style) {
    let status = response.status.to_string();
    let status = if response.status >= 400 { style.red(&status) } else { style.green(&status) };
    let mut facts = vec![body_kind(&response.body)];
    let answer = Answer::from_body(&response.body);
    if let Some(answer) = &answer {
        if let Some(reason) = &answer.finish_reason {
            facts.push(format!("finish {reason}"));
        }
        if let Some(total) = answer.usage.and_then(|u| u.total_tokens) {
            facts.push(format!("{total} tokens"));
        }
        if !answer.complete {
            facts.push(style.red("cut off"));
        }
    }
    let label = if label.is_empty() { String::new() } else { format!("{label} ") };
    println!("  {} {label}{status}  {}", style.bold("→"), style.dim(&facts.join(", ")));
    match (&answer, &response.body) {
        (Some(answer), _) if !answer.text.is_empty() || !answer.tool_calls.is_empty() => {
            if !answer.text.is_empty() {
                println!("    {}", excerpt(&answer.text, limit));
            }
            for call in &answer.tool_calls {
                println!("    {} {}({})", style.yellow("tool call"), call.name, excerpt(&call.arguments, limit));
            }
        }
        (_, Body::Text { text }) => println!("    {}", excerpt(text, limit)),
        (_, Body::Json { json }) => println!("    {}", excerpt(&json.to_string(), limit)),
        _ => {}
    }
}

/// `json`, `sse, 14 events`, `binary, 3.2 KB`...
fn body_kind(body: &Body) -> String {
    match body {
        Body::Empty => "empty".to_owned(),
        Body::Json { .. } => "json".to_owned(),
        Body::Text { text } => format!("text, {} chars", text.chars().count()),
        Body::Binary { base64 } => format!("binary, {}", human_size(base64.as_str().len() as u64 * 3 / 4)),
        Body::Digest { size, .. } => format!("binary, {}", human_size(*size)),
        Body::Multipart { parts } => format!("multipart, {} parts", parts.len()),
        Body::Sse { events, .. } => format!("sse, {} events", events.len()),
        Body::Ndjson { lines, .. } => format!("ndjson, {} lines", lines.len()),
    }
}
