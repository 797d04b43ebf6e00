//! tract as the independent f32 reference: the same ONNX file, the same fixed input shapes.
use anyhow::{anyhow, Context, Result};
use ndarray::ArrayD;
use std::path::Path;
use std::sync::Arc;
use tract_onnx::prelude::*;

/// An ONNX model made runnable by tract.
pub struct Reference {
    plan: Arc<TypedRunnableModel>,
}

impl Reference {
    /// Loads `path` with the given input shapes (in graph-input order).
    pub fn load(path: &Path, input_shapes: &[Vec<usize>]) -> Result<Reference> {
        let mut model = tract_onnx::onnx()
            .with_ignore_value_info(true)
            .model_for_path(path)
            .map_err(|e| anyhow!("tract cannot load {}: {e:?}", path.display()))?;
        for (i, dims) in input_shapes.iter().enumerate() {
            model
                .set_input_fact(i, InferenceFact::dt_shape(f32::datum_type(), dims.clone()))
                .map_err(|e| anyhow!("tract input {i}: {e:?}"))?;
        }
        let plan = model
            .into_optimized()
            .and_then(|m| m.into_runnable())
            .map_err(|e| anyhow!("tract cannot optimize {}: {e:?}", path.display()))?;
        Ok(Reference { plan })
    }

    /// Runs on f32 inputs; returns f32 outputs.
    pub fn run(&self, inputs: &[ArrayD<f32>]) -> Result<Vec<ArrayD<f32>>> {
        let ins: TVec<TValue> = inputs
            .iter()
            .map(|a| a.clone().into_tensor().into())
            .collect();
        let outs = self
            .plan
            .run(ins)
            .map_err(|e| anyhow!("tract run failed: {e:?}"))?;
        outs.iter()
            .map(|t| {
                let t = t.cast_to::<f32>().context("tract output to f32")?;
                Ok(t.to_plain_array_view::<f32>()?.to_owned())
            })
            .collect()
    }
}
