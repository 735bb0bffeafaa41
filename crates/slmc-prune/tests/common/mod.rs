//! The single-layer reference fixture of tests/fixtures/prune (scripts/make_prune_fixture.py,
//! llm-compressor 0.14.0.1's own kernels). Each test binary uses a part of it.

#![allow(dead_code)]

use safetensors::SafeTensors;
use std::path::PathBuf;

/// The fixture: tensors by name and the JSON description.
pub struct Fixture {
    bytes: Vec<u8>,
    /// layer.json.
    pub meta: serde_json::Value,
}

impl Fixture {
    /// Loads tests/fixtures/prune.
    pub fn load() -> Self {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/prune");
        let bytes = std::fs::read(dir.join("layer.safetensors")).unwrap();
        let meta = serde_json::from_str(&std::fs::read_to_string(dir.join("layer.json")).unwrap()).unwrap();
        Self { bytes, meta }
    }

    fn tensor(&self, name: &str) -> Vec<u8> {
        SafeTensors::deserialize(&self.bytes).unwrap().tensor(name).unwrap().data().to_vec()
    }

    /// An f32 tensor, flattened.
    pub fn f32s(&self, name: &str) -> Vec<f32> {
        self.tensor(name).chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
    }

    /// An f32 tensor, widened to f64.
    pub fn f64s(&self, name: &str) -> Vec<f64> {
        self.f32s(name).into_iter().map(f64::from).collect()
    }

    /// `(rows, cols)` of the layer.
    pub fn dims(&self) -> (usize, usize) {
        (self.shape("rows"), self.shape("cols"))
    }

    /// The reference mask of case `name`.
    pub fn mask(&self, name: &str) -> slmc_prune::Mask {
        let (rows, cols) = self.dims();
        slmc_prune::Mask::from_pruned(rows, cols, &self.flags(&format!("{name}.mask"))).unwrap()
    }

    /// A u8 0/1 mask tensor as flags.
    pub fn flags(&self, name: &str) -> Vec<bool> {
        self.tensor(name).iter().map(|&v| v == 1).collect()
    }

    /// A shape entry of layer.json.
    pub fn shape(&self, key: &str) -> usize {
        self.meta["shapes"][key].as_u64().unwrap() as usize
    }

    /// The case entry called `name` in layer.json.
    pub fn case(&self, name: &str) -> &serde_json::Value {
        self.meta["cases"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap()
    }
}
