//! Writes the transform benchmark's objects at restore-point scale, for timing `ferry transform`
//! through the CLI (docs/benchmarks.md):
//! `cargo run --release -p ferry-transform --example gen_objects -- /tmp/tb 100000`
//! writes `/tmp/tb/objects.yaml` (one JSON document per object, which is YAML) and
//! `/tmp/tb/rules.yaml`.

#[path = "../benches/objects.rs"]
mod objects;

use std::io::Write;

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(args.next().unwrap_or_else(|| "/tmp/tb".into()));
    let n: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(100_000);
    std::fs::create_dir_all(&dir)?;
    let mut out = std::io::BufWriter::new(std::fs::File::create(dir.join("objects.yaml"))?);
    for o in objects::objects(n) {
        writeln!(out, "---")?;
        serde_json::to_writer(&mut out, &o)?;
        writeln!(out)?;
    }
    out.flush()?;
    std::fs::write(dir.join("rules.yaml"), objects::RULES)
}
