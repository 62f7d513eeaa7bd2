//! `ferry transform`: preview, apply and order transform rules on objects from files, without a
//! cluster.

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use ferry_transform::documents::parse_documents;
use ferry_transform::order::restore_order;
use ferry_transform::preview::{plan, preview_text};
use ferry_transform::sanitize::SanitizeOptions;
use ferry_transform::{compile, parse_spec, Transformer};
use serde_json::Value;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub enum TransformCommand {
    /// Show what the rules do to each object: a unified diff per object, or a JSON plan.
    Preview {
        #[command(flatten)]
        input: RuleInput,
        /// Print the machine-readable plan (JSON) instead of diffs.
        #[arg(long)]
        json: bool,
    },
    /// Print the transformed objects as multi-document YAML (dropped objects left out).
    Apply {
        #[command(flatten)]
        input: RuleInput,
    },
    /// Print the restore order of the objects (after the rules, when given).
    Order {
        /// Objects: a YAML/JSON file, a directory of them, or - for standard input.
        input: PathBuf,
        /// Rules to apply first.
        #[arg(long)]
        rules: Option<PathBuf>,
        /// Print the order as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
pub struct RuleInput {
    /// Objects: a YAML/JSON file, a directory of them, or - for standard input.
    input: PathBuf,
    /// The transform rules (YAML or JSON).
    #[arg(long)]
    rules: PathBuf,
    #[command(flatten)]
    sanitize: SanitizeFlags,
}

#[derive(Args, Clone, Copy, Default)]
pub struct SanitizeFlags {
    /// Keep objects' status.
    #[arg(long)]
    keep_status: bool,
    /// Keep Services' node ports.
    #[arg(long)]
    keep_node_ports: bool,
    /// Keep objects whose controlling owner is also restored (ReplicaSets, Pods, ...).
    #[arg(long)]
    keep_owned: bool,
}

impl From<SanitizeFlags> for SanitizeOptions {
    fn from(f: SanitizeFlags) -> Self {
        SanitizeOptions {
            keep_status: f.keep_status,
            keep_node_ports: f.keep_node_ports,
            keep_owned: f.keep_owned,
        }
    }
}

/// Reads objects from a file, every `.yaml`/`.yml`/`.json` file of a directory (sorted), or
/// standard input.
fn read_objects(input: &Path) -> anyhow::Result<Vec<Value>> {
    if input == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading standard input")?;
        return Ok(parse_documents(&text, "stdin")?);
    }
    let mut files = Vec::new();
    if input.is_dir() {
        for entry in std::fs::read_dir(input)
            .with_context(|| format!("reading directory {}", input.display()))?
        {
            let path = entry?.path();
            if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml" | "json")
            ) {
                files.push(path);
            }
        }
        files.sort();
    } else {
        files.push(input.to_path_buf());
    }
    let mut objects = Vec::new();
    for f in files {
        let text =
            std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?;
        objects.extend(parse_documents(&text, &f.display().to_string())?);
    }
    Ok(objects)
}

fn transformer(rules: &Path, sanitize: SanitizeFlags) -> anyhow::Result<Transformer> {
    let text = std::fs::read_to_string(rules)
        .with_context(|| format!("reading rules {}", rules.display()))?;
    let spec = parse_spec(&text).with_context(|| format!("in {}", rules.display()))?;
    let compiled = compile(&spec).with_context(|| format!("in {}", rules.display()))?;
    Ok(Transformer::new(compiled, sanitize.into()))
}

pub fn run(command: TransformCommand) -> anyhow::Result<()> {
    match command {
        TransformCommand::Preview { input, json } => {
            let objects = read_objects(&input.input)?;
            let outcome = transformer(&input.rules, input.sanitize)?.transform(&objects)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&plan(&outcome))?);
            } else {
                print!("{}", preview_text(&objects, &outcome));
            }
        }
        TransformCommand::Apply { input } => {
            let objects = read_objects(&input.input)?;
            let outcome = transformer(&input.rules, input.sanitize)?.transform_owned(objects)?;
            for w in &outcome.warnings {
                eprintln!("warning: {}: {}", w.source, w.message);
            }
            // Written object by object: 100,000 objects are not held twice as one string.
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            for (i, o) in outcome.objects.into_iter().enumerate() {
                if i > 0 {
                    out.write_all(b"---\n")?;
                }
                out.write_all(ferry_transform::yaml::to_string(&o.object).as_bytes())?;
            }
            out.flush()?;
        }
        TransformCommand::Order { input, rules, json } => {
            let mut objects = read_objects(&input)?;
            if let Some(rules) = rules {
                objects = transformer(&rules, SanitizeFlags::default())?
                    .transform_owned(objects)?
                    .objects
                    .into_iter()
                    .map(|o| o.object)
                    .collect();
            }
            if objects.is_empty() {
                bail!("no objects in {}", input.display());
            }
            let order = restore_order(&objects);
            if json {
                let steps: Vec<_> = order.steps.iter().map(|(_, s)| s).collect();
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({"steps": steps, "brokenCycles": order.broken_cycles})
                    )?
                );
            } else {
                print!("{}", order.explain());
            }
        }
    }
    Ok(())
}
