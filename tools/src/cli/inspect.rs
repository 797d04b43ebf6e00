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
    /// `gpu`: also list which nodes of a .tern have a GPU kernel (and why not, for the others).
    #[arg(long, value_enum)]
    pub backend: Option<super::engine::Backend>,
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
    let mut placement: Vec<(String, &'static str, Result<&'static str, String>)> = Vec::new();
    let g: Graph = if is_tern(&bytes) {
        let m = load_model(&a.model, &bytes)?;
        if a.backend.is_some_and(|b| b != super::engine::Backend::Cpu) {
            for n in &m.graph.nodes {
                placement.push((n.name.clone(), n.op.name(), tern::gpu::kernel_for(&m, n)));
            }
        }
        out.insert("format".into(), json!("tern"));
        out.insert("format_version".into(), json!(m.format_version));
        out.insert(
            "weights_stored".into(),
            json!(if m.weights_in_place() {
                "in place"
            } else {
                "deflated"
            }),
        );
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
    if !placement.is_empty() {
        let on_gpu = placement.iter().filter(|p| p.2.is_ok()).count();
        out.insert("gpu_nodes".into(), json!(on_gpu));
        out.insert(
            "placement".into(),
            json!(placement
                .iter()
                .map(|(n, op, k)| match k {
                    Ok(shader) => json!({"node": n, "op": op, "backend": "gpu", "kernel": shader}),
                    Err(why) => json!({"node": n, "op": op, "backend": "cpu", "reason": why}),
                })
                .collect::<Vec<_>>()),
        );
    }
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
    if let Some(v) = out.get("weights_stored").and_then(|v| v.as_str()) {
        println!("  weights stored  {v}");
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
    if !placement.is_empty() {
        let on_gpu = placement.iter().filter(|p| p.2.is_ok()).count();
        println!(
            "  gpu             {on_gpu} of {} nodes have a GPU kernel{}",
            placement.len(),
            if on_gpu == placement.len() {
                " (the whole model runs on the GPU)"
            } else {
                "; the others run on the CPU fallback (`--strict` makes them errors):"
            }
        );
        for (n, op, k) in &placement {
            if let Err(why) = k {
                println!("    {n:<32} {op:<16} {why}");
            }
        }
    }
    if let Some(Value::Object(md)) = out.get("metadata") {
        for (k, v) in md {
            println!("  meta {k:<10} {}", v.as_str().unwrap_or(""));
        }
    }
    Ok(())
}
