//! `torch.Tensor.mean()` of a contiguous float32 vector on CPU, bit for bit: the double
//! quantization's offset is `absmax.mean()`, and its last bit decides some nested codes.
//!
//! On CPU torch computes the mean as `sum / n` in f32, and the sum with its cascade kernel
//! (`aten/src/ATen/native/cpu/SumKernel.cpp`: `vectorized_inner_sum` → `row_sum` →
//! `multi_row_sum`): 8-lane vectors summed in 4 interleaved accumulators, each a 4-level cascade,
//! then the scalar tail, then the 8 lanes in order. Verified against torch 2.15 on x86-64 with both
//! its AVX2 and AVX512 kernels (the sum kernel uses 8-lane vectors in both). Not covered: vectors of
//! 32768 or more values (more than 2M weights per tensor), which torch splits across its threads,
//! so its result depends on the thread count; this follows the single-thread order. Neither a
//! plain f32 loop nor an f64 sum reproduces torch (about 40% of random vectors differ by an ulp).

const LANES: usize = 8;
const ILP: usize = 4;
const LEVELS: usize = 4;

/// A value the cascade can add: an f32 or an 8-lane vector of them.
trait Acc: Copy {
    const ZERO: Self;
    fn add(self, other: Self) -> Self;
}

impl Acc for f32 {
    const ZERO: Self = 0.0;
    fn add(self, other: Self) -> Self {
        self + other
    }
}

impl Acc for [f32; LANES] {
    const ZERO: Self = [0.0; LANES];
    fn add(mut self, other: Self) -> Self {
        for (a, b) in self.iter_mut().zip(other) {
            *a += b;
        }
        self
    }
}

fn ceil_log2(x: usize) -> u32 {
    if x <= 1 { 0 } else { usize::BITS - (x - 1).leading_zeros() }
}

/// torch's `multi_row_sum` with `nrows = 4`: `rows[i]` is the i-th group of 4 items.
fn multi_row_sum<T: Acc>(rows: &[[T; ILP]]) -> [T; ILP] {
    let size = rows.len();
    let level_power = (ceil_log2(size) / LEVELS as u32).max(4);
    let level_step = 1usize << level_power;
    let level_mask = level_step - 1;
    let mut acc = [[T::ZERO; ILP]; LEVELS];
    let mut i = 0;
    while i + level_step <= size {
        for row in &rows[i..i + level_step] {
            for (a, &v) in acc[0].iter_mut().zip(row) {
                *a = a.add(v);
            }
        }
        i += level_step;
        for j in 1..LEVELS {
            let (lower, upper) = acc.split_at_mut(j);
            for (hi, lo) in upper[0].iter_mut().zip(lower[j - 1].iter_mut()) {
                *hi = hi.add(*lo);
                *lo = T::ZERO;
            }
            if i & (level_mask << (j as u32 * level_power)) != 0 {
                break;
            }
        }
    }
    for row in &rows[i..] {
        for (a, &v) in acc[0].iter_mut().zip(row) {
            *a = a.add(v);
        }
    }
    let mut out = acc[0];
    for level in &acc[1..] {
        for (o, &v) in out.iter_mut().zip(level) {
            *o = o.add(v);
        }
    }
    out
}

/// torch's `row_sum`: 4 interleaved accumulators, leftovers into the first, then combined.
fn row_sum<T: Acc>(items: &[T]) -> T {
    let groups: Vec<[T; ILP]> = items.chunks_exact(ILP).map(|c| std::array::from_fn(|k| c[k])).collect();
    let mut partial = if groups.is_empty() { [T::ZERO; ILP] } else { multi_row_sum(&groups) };
    for &v in &items[groups.len() * ILP..] {
        partial[0] = partial[0].add(v);
    }
    partial[1..].iter().fold(partial[0], |a, &v| a.add(v))
}

/// The f32 sum torch computes for a contiguous vector of fewer than 32768 values.
pub fn torch_sum(values: &[f32]) -> f32 {
    if values.len() < LANES {
        return row_sum(values);
    }
    let vectors: Vec<[f32; LANES]> =
        values.chunks_exact(LANES).map(|c| std::array::from_fn(|k| c[k])).collect();
    let lanes = row_sum(&vectors);
    let tail = values[vectors.len() * LANES..].iter().fold(0.0f32, |a, &v| a + v);
    lanes.iter().fold(tail, |a, &v| a + v)
}

/// The f32 mean torch computes (`sum / n`), NaN for an empty vector as in torch.
pub fn torch_mean(values: &[f32]) -> f32 {
    torch_sum(values) / values.len() as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_and_exact_sums() {
        assert_eq!(torch_sum(&[]), 0.0);
        assert_eq!(torch_sum(&[1.5]), 1.5);
        let ones = vec![1.0f32; 1000];
        assert_eq!(torch_sum(&ones), 1000.0);
        assert_eq!(torch_mean(&ones), 1.0);
        assert!(torch_mean(&[]).is_nan());
    }

    #[test]
    fn order_differs_from_a_plain_loop() {
        // 1e8 + 64 ones, then more ones: a left-to-right f32 loop loses every 1.0 added to 1e8;
        // the lane-wise cascade adds the ones among themselves first.
        let mut v = vec![1e8f32];
        v.extend(std::iter::repeat_n(1.0f32, 1023));
        let plain = v.iter().fold(0.0f32, |a, &x| a + x);
        assert_eq!(plain, 1e8);
        assert!(torch_sum(&v) > 1e8);
    }
}
