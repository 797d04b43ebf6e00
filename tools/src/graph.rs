//! The tool's working graph: the runtime's [`tern::Graph`] plus the constant data the tool owns until
//! export (the runtime reads constants from the artifact's weight blob instead).
use anyhow::{anyhow, Result};
use tern::ir::{BlobRange, DType, Graph, Node, Op, Tensor};

/// A graph being built or transformed by the tool.
#[derive(Clone, Debug, Default)]
pub struct ToolGraph {
    /// Structure; constants carry a placeholder blob range until export.
    pub graph: Graph,
    /// Constant data per tensor (f32), `None` for activations and integer constants.
    pub data: Vec<Option<Vec<f32>>>,
    /// Little-endian bytes of integer constants (int8 weights and tables, int32 biases).
    pub bytes: Vec<Option<Vec<u8>>>,
    /// Weights whose int8 rounding was chosen before quantizing (GPTQ, `quant::gptq`): per weight tensor,
    /// its values on the int8 grid, which the quantize pass stores in place of the nearest rounding of
    /// `data` (the float values, which float runs keep using).
    pub int8_rounding: std::collections::HashMap<u32, Vec<f32>>,
}

impl ToolGraph {
    /// Adds an activation tensor.
    pub fn add_tensor(&mut self, name: &str, shape: &[usize]) -> u32 {
        self.graph.tensors.push(Tensor {
            name: name.to_string(),
            dtype: DType::F32,
            shape: shape.iter().map(|&d| d as u32).collect(),
            data: None,
            quant: None,
        });
        self.data.push(None);
        self.bytes.push(None);
        (self.graph.tensors.len() - 1) as u32
    }

    /// Adds an integer constant (`bytes` little-endian, length matching shape and type).
    pub fn add_int_const(
        &mut self,
        name: &str,
        shape: &[usize],
        dtype: DType,
        quant: Option<tern::ir::QParams>,
        bytes: Vec<u8>,
    ) -> u32 {
        let i = self.add_tensor(name, shape);
        let t = &mut self.graph.tensors[i as usize];
        t.dtype = dtype;
        t.quant = quant;
        t.data = Some(BlobRange {
            offset: 0,
            len: bytes.len() as u64,
        });
        self.bytes[i as usize] = Some(bytes);
        i
    }

    /// Adds a constant tensor.
    pub fn add_const(&mut self, name: &str, shape: &[usize], values: Vec<f32>) -> u32 {
        let i = self.add_tensor(name, shape);
        self.set_const(i, values);
        i
    }

    /// Makes tensor `i` a constant with `values` (length must match its shape).
    pub fn set_const(&mut self, i: u32, values: Vec<f32>) {
        let t = &mut self.graph.tensors[i as usize];
        t.data = Some(BlobRange {
            offset: 0,
            len: (values.len() * 4) as u64,
        });
        self.data[i as usize] = Some(values);
        // a chosen int8 rounding was of the old values
        self.int8_rounding.remove(&i);
    }

    /// Shape of tensor `i`.
    pub fn shape(&self, i: u32) -> Vec<usize> {
        self.graph.tensors[i as usize].dims()
    }

    /// Constant data of tensor `i`, if it is a constant.
    pub fn konst(&self, i: u32) -> Option<&[f32]> {
        self.data.get(i as usize).and_then(|d| d.as_deref())
    }

    /// The values that weight `i` is quantized from: its chosen int8 rounding if it has one
    /// ([`ToolGraph::int8_rounding`]), else its float values.
    pub fn weight_for_int8(&self, i: u32) -> Option<&[f32]> {
        self.int8_rounding
            .get(&i)
            .map(|v| v.as_slice())
            .or_else(|| self.konst(i))
    }

    /// Appends a node whose output shapes follow from the runtime's shape rules (or `declared`, for ops
    /// whose output shape is a parameter); returns the output tensor ids.
    pub fn emit(
        &mut self,
        name: &str,
        op: Op,
        inputs: Vec<u32>,
        outs: &[String],
        declared: Option<Vec<Vec<usize>>>,
    ) -> Result<Vec<u32>> {
        let ins: Vec<Vec<usize>> = inputs.iter().map(|&i| self.shape(i)).collect();
        let ins_ref: Vec<&[usize]> = ins.iter().map(|s| s.as_slice()).collect();
        let decl = declared.unwrap_or_default();
        let decl_ref: Vec<&[usize]> = decl.iter().map(|s| s.as_slice()).collect();
        let shapes = tern::ir::shape::infer(&op, &ins_ref, &decl_ref)
            .map_err(|e| anyhow!("node \"{name}\" ({}): {e}; input shapes {ins:?}", op.name()))?;
        if shapes.len() != outs.len() {
            return Err(anyhow!(
                "node \"{name}\" ({}): {} outputs named, {} computed",
                op.name(),
                outs.len(),
                shapes.len()
            ));
        }
        let ids: Vec<u32> = outs
            .iter()
            .zip(&shapes)
            .map(|(n, s)| self.add_tensor(n, s))
            .collect();
        self.graph.nodes.push(Node {
            name: name.to_string(),
            op,
            inputs,
            outputs: ids.clone(),
        });
        Ok(ids)
    }

    /// Checks the graph with the runtime's own validator (the same checks the loader runs).
    pub fn validate(&self) -> Result<()> {
        tern::model::validate(&self.graph, usize::MAX)
            .map_err(|e| anyhow!("internal error, invalid graph: {e}"))
    }

    /// Consumers of each tensor: (node index, input slot).
    pub fn consumers(&self) -> Vec<Vec<(usize, usize)>> {
        let mut c = vec![Vec::new(); self.graph.tensors.len()];
        for (ni, n) in self.graph.nodes.iter().enumerate() {
            for (k, &t) in n.inputs.iter().enumerate() {
                c[t as usize].push((ni, k));
            }
        }
        c
    }

    /// Removes nodes marked dead and every tensor nothing refers to, renumbering the rest.
    pub fn compact(&mut self, dead: &[bool]) {
        let g = &mut self.graph;
        let mut k = 0;
        g.nodes.retain(|_| {
            let keep = !dead.get(k).copied().unwrap_or(false);
            k += 1;
            keep
        });
        let mut used = vec![false; g.tensors.len()];
        for &t in g.inputs.iter().chain(&g.outputs) {
            used[t as usize] = true;
        }
        for n in &g.nodes {
            for &t in n.inputs.iter().chain(&n.outputs) {
                used[t as usize] = true;
            }
        }
        let mut map = vec![u32::MAX; g.tensors.len()];
        let mut tensors = Vec::new();
        let mut data = Vec::new();
        let mut bytes = Vec::new();
        for (i, t) in g.tensors.drain(..).enumerate() {
            if used[i] {
                map[i] = tensors.len() as u32;
                tensors.push(t);
                data.push(self.data[i].take());
                bytes.push(self.bytes[i].take());
            }
        }
        g.tensors = tensors;
        self.data = data;
        self.bytes = bytes;
        let re = |v: &mut Vec<u32>| v.iter_mut().for_each(|t| *t = map[*t as usize]);
        re(&mut g.inputs);
        re(&mut g.outputs);
        for n in &mut g.nodes {
            re(&mut n.inputs);
            re(&mut n.outputs);
        }
    }
}
