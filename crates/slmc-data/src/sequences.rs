//! Training and evaluation sequences of either kind: packed text, or masked instruction rows.

use crate::DataError;
use crate::masked::MaskedRows;
use crate::tokens::Packed;

/// One sequence of `seq_len + 1` tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sequence {
    /// Token ids (inputs are `[..seq_len]`, targets `[1..]`).
    pub tokens: Vec<u32>,
    /// Per token, whether it is a training target; `None` = every target trains (packed text).
    /// Entry 0 is never a target.
    pub trained: Option<Vec<bool>>,
}

/// The sequences a training stage draws from.
pub enum Sequences {
    /// Fixed-length windows of a packed token stream (every token a target).
    Packed(Packed),
    /// One padded row per example, with a loss mask.
    Masked(MaskedRows),
}

impl Sequences {
    /// Number of sequences.
    pub fn len(&self) -> usize {
        match self {
            Self::Packed(p) => p.len(),
            Self::Masked(m) => m.len(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Input tokens per sequence.
    pub fn seq_len(&self) -> usize {
        match self {
            Self::Packed(p) => p.seq_len(),
            Self::Masked(m) => m.seq_len(),
        }
    }

    /// Sequence `i`.
    pub fn get(&self, i: usize) -> Sequence {
        match self {
            Self::Packed(p) => Sequence { tokens: p.get(i), trained: None },
            Self::Masked(m) => {
                let (tokens, trained) = m.get(i);
                Sequence { tokens, trained: Some(trained) }
            }
        }
    }

    /// Another handle on the same sequences.
    pub fn view(&self) -> Result<Self, DataError> {
        Ok(match self {
            Self::Packed(p) => Self::Packed(p.view()?),
            Self::Masked(m) => Self::Masked(m.view()?),
        })
    }

    /// The packed stream, when this is one (calibration windows are drawn from it).
    pub fn packed(&self) -> Option<&Packed> {
        match self {
            Self::Packed(p) => Some(p),
            Self::Masked(_) => None,
        }
    }
}
