//! `ferry transform`: preview, apply and order transform rules on objects from files, without a
//! cluster.

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use ferry_transform::documents::parse_documents_into;
use ferry_transform::order::{order_nodes, Node};
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
    read_objects_into(input, |obj| obj)
}

/// `read_objects`, keeping only what `keep` makes of each object as it is parsed.
fn read_objects_into<R: Send>(
    input: &Path,
    keep: impl Fn(Value) -> R + Sync,
) -> anyhow::Result<Vec<R>> {
    if input == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading standard input")?;
        return Ok(parse_documents_into(&text, "stdin", keep)?);
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
        objects.extend(parse_documents_into(
            &text,
            &f.display().to_string(),
            &keep,
        )?);
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
            // Each object is parsed, transformed and written out as YAML on a parsing thread,
            // so only the output text of 100,000 objects is held, not their trees.
            let transformer = transformer(&input.rules, input.sanitize)?;
            let pending = read_objects_into(&input.input, |obj| {
                transformer
                    .transform_one(obj, |o| ferry_transform::yaml::to_string(&o))
                    .without_changes()
            })?;
            let outcome = transformer.settle(pending)?;
            for w in &outcome.warnings {
                eprintln!("warning: {}: {}", w.source, w.message);
            }
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            for (i, o) in outcome.objects.into_iter().enumerate() {
                if i > 0 {
                    out.write_all(b"---\n")?;
                }
                out.write_all(o.object.as_bytes())?;
            }
            out.flush()?;
        }
        TransformCommand::Order { input, rules, json } => {
            // Ordered from each object's node, read as it is parsed (and transformed).
            let nodes: Vec<Node> = match rules {
                Some(rules) => {
                    let transformer = transformer(&rules, SanitizeFlags::default())?;
                    let pending = read_objects_into(&input, |obj| {
                        transformer
                            .transform_one(obj, |o| Node::of(&o))
                            .without_changes()
                    })?;
                    let outcome = transformer.settle(pending)?;
                    outcome.objects.into_iter().map(|o| o.object).collect()
                }
                None => read_objects_into(&input, |obj| Node::of(&obj))?,
            };
            if nodes.is_empty() {
                bail!("no objects in {}", input.display());
            }
            let order = order_nodes(&nodes);
            if json {
                let steps: Vec<_> = order.steps.iter().map(|(_, s)| s).collect();
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({"steps": steps, "brokenCycles": order.broken_cycles})
                    )?
                );
            } else {
                let mut out = std::io::BufWriter::new(std::io::stdout().lock());
                order.write_explain(&mut out)?;
                out.flush()?;
            }
        }
    }
    Ok(())
}
