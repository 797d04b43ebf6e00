//! Memory planning: every activation tensor gets an offset in one arena, chosen from tensor lifetimes in
//! execution order by greedy placement (largest first, lowest free offset; the tflite-micro approach).
//! The tool stores the plan in the artifact; the loader re-checks it with [`check`], which proves that no
//! two tensors live at the same time share a byte.
use crate::error::Result;
use crate::ir::Graph;
use crate::{bail, err};
use alloc::vec;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

/// Alignment of every tensor in the arena (a cache line; also what SIMD loads like).
pub const ALIGN: u64 = 64;
/// Offset value for tensors that are not in the arena (constants).
pub const NOT_IN_ARENA: u64 = u64::MAX;

/// Offsets of the activation tensors in one arena.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryPlan {
    /// Bytes the arena needs.
    pub arena_bytes: u64,
    /// One offset per tensor of the graph; [`NOT_IN_ARENA`] for constants.
    pub offsets: Vec<u64>,
}

/// Inclusive range of execution steps during which a tensor must hold its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lifetime {
    /// Step that writes it (graph inputs: 0).
    pub first: usize,
    /// Last step that reads it (graph outputs: the end).
    pub last: usize,
}

impl Lifetime {
    fn overlaps(&self, o: &Lifetime) -> bool {
        self.first <= o.last && o.first <= self.last
    }
}

/// Lifetimes of every non-constant tensor (None for constants and tensors nothing defines). Assumes the
/// graph's indices are in range (the loader checks them first).
pub fn lifetimes(g: &Graph) -> Vec<Option<Lifetime>> {
    let end = g.nodes.len();
    let mut lt: Vec<Option<Lifetime>> = vec![None; g.tensors.len()];
    for &i in &g.inputs {
        if let Some(l) = lt.get_mut(i as usize) {
            *l = Some(Lifetime { first: 0, last: 0 });
        }
    }
    for (step, n) in g.nodes.iter().enumerate() {
        for &o in &n.outputs {
            if let Some(l) = lt.get_mut(o as usize) {
                if l.is_none() {
                    *l = Some(Lifetime {
                        first: step,
                        last: step,
                    });
                }
            }
        }
        for &i in &n.inputs {
            if let Some(Some(l)) = lt.get_mut(i as usize) {
                l.last = l.last.max(step);
            }
        }
    }
    for &o in &g.outputs {
        if let Some(Some(l)) = lt.get_mut(o as usize) {
            l.last = end;
        }
    }
    for (t, l) in g.tensors.iter().zip(lt.iter_mut()) {
        if t.is_const() {
            *l = None;
        }
    }
    lt
}

fn aligned_size(bytes: usize) -> u64 {
    (bytes as u64).div_ceil(ALIGN).max(1) * ALIGN
}

/// Plans the arena for `g` (greedy by size, first fit among the tensors whose lifetimes overlap).
pub fn plan(g: &Graph) -> MemoryPlan {
    let lt = lifetimes(g);
    let mut order: Vec<usize> = (0..g.tensors.len()).filter(|&i| lt[i].is_some()).collect();
    order.sort_by_key(|&i| (core::cmp::Reverse(aligned_size(g.tensors[i].byte_len())), i));
    let mut offsets = vec![NOT_IN_ARENA; g.tensors.len()];
    let mut placed: Vec<(u64, u64, Lifetime)> = Vec::new(); // (offset, size, lifetime)
    let mut arena = 0u64;
    for i in order {
        let (size, life) = (
            aligned_size(g.tensors[i].byte_len()),
            lt[i].unwrap_or(Lifetime { first: 0, last: 0 }),
        );
        let mut busy: Vec<(u64, u64)> = placed
            .iter()
            .filter(|p| p.2.overlaps(&life))
            .map(|p| (p.0, p.0 + p.1))
            .collect();
        busy.sort_unstable();
        let mut off = 0u64;
        for (s, e) in busy {
            if off + size <= s {
                break;
            }
            off = off.max(e);
        }
        offsets[i] = off;
        arena = arena.max(off + size);
        placed.push((off, size, life));
    }
    MemoryPlan {
        arena_bytes: arena,
        offsets,
    }
}

/// Proves the plan sound for `g`: every activation has an aligned range inside the arena, constants have
/// none, and no two tensors with overlapping lifetimes share a byte.
pub fn check(g: &Graph, p: &MemoryPlan) -> Result<()> {
    if p.offsets.len() != g.tensors.len() {
        bail!(
            Invalid,
            "memory plan has {} offsets for {} tensors",
            p.offsets.len(),
            g.tensors.len()
        );
    }
    let lt = lifetimes(g);
    let mut live: Vec<(u64, u64, Lifetime, usize)> = Vec::new();
    for (i, (t, &off)) in g.tensors.iter().zip(&p.offsets).enumerate() {
        match lt[i] {
            None => {
                if off != NOT_IN_ARENA && !t.is_const() {
                    // an unused tensor may have a slot; it is simply never touched
                    continue;
                }
                if t.is_const() && off != NOT_IN_ARENA {
                    bail!(
                        Invalid,
                        "memory plan places constant tensor {i} \"{}\" in the arena",
                        t.name
                    );
                }
            }
            Some(l) => {
                let size = t.byte_len() as u64;
                let end = off
                    .checked_add(size)
                    .ok_or_else(|| err!(Invalid, "tensor {i} offset overflows"))?;
                if off % ALIGN != 0 || end > p.arena_bytes {
                    bail!(
                        Invalid,
                        "memory plan puts tensor {i} \"{}\" ({size} bytes) at offset {off}, outside the {}-byte arena or unaligned",
                        t.name,
                        p.arena_bytes
                    );
                }
                live.push((off, end, l, i));
            }
        }
    }
    // sweep by offset: any two ranges that overlap in memory must not overlap in time
    live.sort_unstable_by_key(|x| (x.0, x.1));
    for a in 0..live.len() {
        for b in a + 1..live.len() {
            if live[b].0 >= live[a].1 {
                break;
            }
            if live[a].2.overlaps(&live[b].2) && live[a].1 > live[a].0 && live[b].1 > live[b].0 {
                let (ta, tb) = (live[a].3, live[b].3);
                bail!(
                    Invalid,
                    "memory plan overlaps live tensors {ta} \"{}\" and {tb} \"{}\"",
                    g.tensors[ta].name,
                    g.tensors[tb].name
                );
            }
        }
    }
    Ok(())
}
