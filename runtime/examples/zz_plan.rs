use tern::Model;
fn main() {
    let bytes = std::fs::read(std::env::args().nth(1).unwrap()).unwrap();
    let m = Model::from_bytes(&bytes).unwrap();
    let g = &m.graph;
    let lt: Vec<_> = tern::plan::lifetimes(g)
        .into_iter()
        .map(|l| {
            l.unwrap_or(tern::plan::Lifetime {
                first: usize::MAX,
                last: 0,
            })
        })
        .collect();
    let mut live_max = (0u64, 0usize);
    for (step, n) in g.nodes.iter().enumerate() {
        let live: u64 = (0..g.tensors.len())
            .filter(|&t| {
                m.plan.offsets[t] != tern::plan::NOT_IN_ARENA
                    && lt[t].first <= step
                    && step <= lt[t].last
            })
            .map(|t| g.tensors[t].byte_len() as u64)
            .sum();
        if live > live_max.0 {
            live_max = (live, step);
        }
        if step < 14 {
            let outs: Vec<String> = n
                .outputs
                .iter()
                .map(|&t| {
                    let t = &g.tensors[t as usize];
                    format!(
                        "{:?}{:?} {:.1}MB",
                        t.dtype,
                        t.shape,
                        t.byte_len() as f64 / 1e6
                    )
                })
                .collect();
            println!(
                "{step} {} {} in={:?} out={outs:?} live {:.1} MB",
                n.name,
                n.op.name(),
                n.inputs,
                live as f64 / 1e6
            );
        }
    }
    println!(
        "peak live {:.1} MB at step {} ({}), arena {:.1} MB",
        live_max.0 as f64 / 1e6,
        live_max.1,
        g.nodes[live_max.1].name,
        m.plan.arena_bytes as f64 / 1e6
    );
}
