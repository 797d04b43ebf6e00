//! `tern inspect <model.onnx|model.tern> [--input-shape ...] [--json]`
use super::{is_tern, load_model, read_file, ShapeArgs};
use anyhow::Result;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use tern::ir::Graph;

/// Arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// An .onnx or .tern file (told apart by content).
    pub model: PathBuf,
    /// Fixed input shapes.
    #[command(flatten)]
    pub shapes: ShapeArgs,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

fn io(g: &Graph, ids: &[u32]) -> Value {
    ids.iter()
        .map(|&i| {
            let t = &g.tensors[i as usize];
            json!({"name": t.name, "shape": t.shape, "dtype": format!("{:?}", t.dtype).to_lowercase()})
        })
        .collect()
}

/// Runs the subcommand.
pub fn main(a: Args) -> Result<()> {
    let bytes = read_file(&a.model)?;
    let mut out = serde_json::Map::new();
    out.insert("file".into(), json!(a.model.display().to_string()));
    out.insert("file_bytes".into(), json!(bytes.len()));
    let g: Graph = if is_tern(&bytes) {
        let m = load_model(&a.model, &bytes)?;
        out.insert("format".into(), json!("tern"));
        out.insert("format_version".into(), json!(m.format_version));
        out.insert("arena_bytes".into(), json!(m.plan.arena_bytes));
        out.insert(
            "metadata".into(),
            json!(m.metadata.iter().cloned().collect::<BTreeMap<_, _>>()),
        );
        m.graph
    } else {
        let tg = crate::import::import(&a.model, &a.shapes.input_shape)?;
        out.insert("format".into(), json!("onnx"));
        let plan = tern::plan::plan(&tg.graph);
        out.insert("arena_bytes".into(), json!(plan.arena_bytes));
        tg.graph
    };
    out.insert("inputs".into(), io(&g, &g.inputs));
    out.insert("outputs".into(), io(&g, &g.outputs));
    let hist: BTreeMap<&str, usize> = g.op_histogram().into_iter().collect();
    out.insert("ops".into(), json!(hist));
    out.insert("nodes".into(), json!(g.nodes.len()));
    out.insert("params".into(), json!(g.param_count()));
    out.insert("macs".into(), json!(g.macs()));
    out.insert("weight_bytes".into(), json!(g.weight_bytes()));
    if a.json {
        println!("{}", serde_json::to_string_pretty(&Value::Object(out))?);
        return Ok(());
    }
    println!(
        "{} ({}, {} bytes)",
        a.model.display(),
        out["format"].as_str().unwrap_or(""),
        bytes.len()
    );
    if let Some(v) = out.get("format_version") {
        println!("  format version  {v}");
    }
    for (k, ids) in [("input ", &g.inputs), ("output", &g.outputs)] {
        for &i in ids.iter() {
            let t = &g.tensors[i as usize];
            println!("  {k}  {:<24} {:?} {:?}", t.name, t.dtype, t.shape);
        }
    }
    println!("  nodes           {}", g.nodes.len());
    println!("  params          {}", g.param_count());
    println!("  MACs            {}", g.macs());
    println!("  weight bytes    {}", g.weight_bytes());
    println!("  arena bytes     {}", out["arena_bytes"]);
    println!("  ops:");
    for (op, n) in g.op_histogram() {
        println!("    {op:<20} {n}");
    }
    if let Some(Value::Object(md)) = out.get("metadata") {
        for (k, v) in md {
            println!("  meta {k:<10} {}", v.as_str().unwrap_or(""));
        }
    }
    Ok(())
}
