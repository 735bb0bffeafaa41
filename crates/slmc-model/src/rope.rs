//! Rotary position embeddings in the Hugging Face convention (rotate-half, with an optional
//! partial rotary dimension), and the frequency rescalings transformers implements for the
//! supported architectures (linear, llama3, longrope).
//!
//! Frequencies and angles are computed in f32 in the same order of operations as transformers'
//! `_compute_*_parameters` and rotary-embedding forward, so tables match to the last bit or two.

use crate::config::{LayerRope, ModelConfig, RopeConfig, RopeScaling};
use crate::model::in_dtype;
use burn::prelude::*;

/// Inverse frequencies (`rotary_dim / 2` of them) and the cos/sin multiplier for a forward pass
/// whose highest position is `max_pos_exclusive - 1`.
pub fn inv_freq(rope: &RopeConfig, rotary_dim: usize, max_pos_exclusive: usize) -> (Vec<f32>, f32) {
    let base = rope.theta as f32;
    let plain: Vec<f32> =
        (0..rotary_dim / 2).map(|i| 1.0 / base.powf((2 * i) as f32 / rotary_dim as f32)).collect();
    match &rope.scaling {
        RopeScaling::None => (plain, 1.0),
        RopeScaling::Linear { factor } => (plain.iter().map(|f| f / *factor as f32).collect(), 1.0),
        RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings,
        } => {
            let (factor, low, high) = (*factor as f32, *low_freq_factor as f32, *high_freq_factor as f32);
            let old_ctx = *original_max_position_embeddings as f32;
            let low_freq_wavelen = old_ctx / low;
            let high_freq_wavelen = old_ctx / high;
            let scaled = plain
                .iter()
                .map(|&f| {
                    let wavelen = 2.0 * std::f32::consts::PI / f;
                    if wavelen > low_freq_wavelen {
                        f / factor
                    } else if wavelen < high_freq_wavelen {
                        f
                    } else {
                        let smooth = (old_ctx / wavelen - low) / (high - low);
                        (1.0 - smooth) * (f / factor) + smooth * f
                    }
                })
                .collect();
            (scaled, 1.0)
        }
        RopeScaling::LongRope {
            short_factor,
            long_factor,
            original_max_position_embeddings,
            attention_factor,
        } => {
            let ext = if max_pos_exclusive > *original_max_position_embeddings {
                long_factor
            } else {
                short_factor
            };
            let freqs = (0..rotary_dim / 2)
                .map(|i| {
                    let exponent = (2 * i) as f32 / rotary_dim as f32;
                    1.0 / (ext[i] as f32 * base.powf(exponent))
                })
                .collect();
            (freqs, *attention_factor as f32)
        }
    }
}

/// The rotary tables of one forward pass: the model's, and Gemma 3's second table for its
/// sliding-window layers. Each layer picks its table with [`RopeTables::for_layer`].
pub struct RopeTables {
    /// The model's table ([`ModelConfig::rope`]).
    pub global: RopeTable,
    /// The sliding layers' table, when they have their own base.
    pub local: Option<RopeTable>,
}

impl RopeTables {
    /// The tables of `config` for `seq` positions from `start`.
    pub fn for_model(config: &ModelConfig, start: usize, seq: usize, device: &Device) -> Self {
        let rot = config.rotary_dim();
        Self {
            global: RopeTable::new(&config.rope, rot, start, seq, device),
            local: config.features.rope_local.as_ref().map(|r| RopeTable::new(r, rot, start, seq, device)),
        }
    }

    /// The table a layer using `which` applies (`None` for a NoPE layer).
    pub fn for_layer(&self, which: LayerRope) -> Option<&RopeTable> {
        match which {
            LayerRope::Global => Some(&self.global),
            LayerRope::Local => self.local.as_ref().or(Some(&self.global)),
            LayerRope::None => None,
        }
    }
}

/// cos and sin tables `[seq, rotary_dim]` (the half-table repeated twice, as transformers
/// concatenates `freqs` with itself) for positions `start..start + seq`.
pub struct RopeTable {
    /// cos of the angles, times the scaling multiplier.
    pub cos: Tensor<2>,
    /// sin of the angles, times the scaling multiplier.
    pub sin: Tensor<2>,
}

impl RopeTable {
    /// Builds the tables for `seq` positions from `start`.
    pub fn new(rope: &RopeConfig, rotary_dim: usize, start: usize, seq: usize, device: &Device) -> Self {
        let (inv, mult) = inv_freq(rope, rotary_dim, start + seq);
        let half = rotary_dim / 2;
        let mut cos = Vec::with_capacity(seq * rotary_dim);
        let mut sin = Vec::with_capacity(seq * rotary_dim);
        for p in start..start + seq {
            let pos = p as f32;
            for _ in 0..2 {
                for f in inv.iter().take(half) {
                    let a = pos * f;
                    cos.push(a.cos() * mult);
                    sin.push(a.sin() * mult);
                }
            }
        }
        let mk = |v: Vec<f32>| Tensor::<2>::from_data(TensorData::new(v, [seq, rotary_dim]), device);
        Self { cos: mk(cos), sin: mk(sin) }
    }

    /// Applies the rotation to `x: [batch, heads, seq, head_dim]`; dimensions past the rotary
    /// width pass through unchanged.
    pub fn apply(&self, x: Tensor<4>) -> Tensor<4> {
        let [_, _, _, head_dim] = x.dims();
        let rot = self.cos.dims()[1];
        // Tables are f32; with bf16 activations they are cast first, as transformers does.
        let dtype = x.dtype();
        if let Some(out) = crate::kernels::rope(x.clone(), &self.cos, &self.sin) {
            return out;
        }
        let cos = in_dtype(self.cos.clone(), dtype).unsqueeze::<4>();
        let sin = in_dtype(self.sin.clone(), dtype).unsqueeze::<4>();
        let (x_rot, x_pass) = if rot == head_dim {
            (x, None)
        } else {
            (x.clone().narrow(3, 0, rot), Some(x.narrow(3, rot, head_dim - rot)))
        };
        let x1 = x_rot.clone().narrow(3, 0, rot / 2);
        let x2 = x_rot.clone().narrow(3, rot / 2, rot / 2);
        let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
        let out = x_rot * cos + rotated * sin;
        match x_pass {
            None => out,
            Some(p) => Tensor::cat(vec![out, p], 3),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rope(scaling: RopeScaling) -> RopeConfig {
        RopeConfig { theta: 10000.0, scaling, partial_rotary_factor: 1.0 }
    }

    #[test]
    fn rotation_matches_the_closed_form_for_one_frequency() {
        let dev = Device::flex();
        // head_dim 2: a single frequency of 1 rad per position.
        let t = RopeTable::new(&rope(RopeScaling::None), 2, 3, 1, &dev);
        let x = Tensor::<4>::from_data([[[[1.0f32, 0.0]]]], &dev);
        let y: Vec<f32> = t.apply(x).into_data().try_to_vec().unwrap();
        assert!((y[0] - 3f32.cos()).abs() < 1e-6 && (y[1] - 3f32.sin()).abs() < 1e-6, "{y:?}");
    }

    #[test]
    fn partial_rotary_leaves_the_tail_alone() {
        let dev = Device::flex();
        let t = RopeTable::new(&rope(RopeScaling::None), 2, 5, 1, &dev);
        let x = Tensor::<4>::from_data([[[[1.0f32, 0.0, 7.0, -3.0]]]], &dev);
        let y: Vec<f32> = t.apply(x).into_data().try_to_vec().unwrap();
        assert_eq!(&y[2..], &[7.0, -3.0]);
    }

    #[test]
    fn llama3_scaling_keeps_high_and_divides_low_frequencies() {
        let s = RopeScaling::Llama3 {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 64,
        };
        let (plain, _) = inv_freq(&rope(RopeScaling::None), 16, 1);
        let (scaled, _) = inv_freq(&rope(s), 16, 1);
        assert_eq!(scaled[0], plain[0]); // wavelength 2π < 64/4: kept
        assert_eq!(scaled[7], plain[7] / 8.0); // wavelength ≫ 64: divided by the factor
        assert!(scaled[2] < plain[2] && scaled[2] > plain[2] / 8.0, "smoothed band"); // wavelength ≈ 63
    }

    #[test]
    fn longrope_switches_factors_past_the_original_context() {
        let s = RopeScaling::LongRope {
            short_factor: vec![1.0; 4],
            long_factor: vec![4.0; 4],
            original_max_position_embeddings: 16,
            attention_factor: 1.2,
        };
        let (short, m) = inv_freq(&rope(s.clone()), 8, 16);
        let (long, _) = inv_freq(&rope(s), 8, 17);
        assert_eq!(m, 1.2);
        assert!((short[1] / long[1] - 4.0).abs() < 1e-5);
    }
}
