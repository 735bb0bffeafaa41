//! The two code maps bitsandbytes uses: the 16 NF4 levels and the 256-entry signed dynamic 8-bit
//! map of the double quantization, with bitsandbytes 0.49.2's rules for choosing a code.

/// The NF4 levels, index 0…15 (`bitsandbytes/backends/utils.py` `_NF4_QUANT_TABLE`, the
/// `quant_map` transformers saves): 7 negative levels, an exact 0 and 8 positive levels,
/// `create_normal_map(0.9677083)` normalised to [−1, 1] (`docs/algorithms.md` §9.1).
#[allow(clippy::excessive_precision)] // bitsandbytes' own digits, kept to compare against its source
pub const NF4: [f32; 16] = [
    -1.0,
    -0.6961928009986877,
    -0.5250730514526367,
    -0.39491748809814453,
    -0.28444138169288635,
    -0.18477343022823334,
    -0.09105003625154495,
    0.0,
    0.07958029955625534,
    0.16093020141124725,
    0.24611230194568634,
    0.33791524171829224,
    0.44070982933044434,
    0.5626170039176941,
    0.7229568362236023,
    1.0,
];

/// The NF4 code of an exact 0 (what an odd element count is padded with).
pub const NF4_ZERO: u8 = 7;

/// Bit patterns of the double quantization's code map as bitsandbytes 0.49.2 stores it
/// (`state2.code`, the checkpoint's `weight.nested_quant_map`): `create_dynamic_map()` (signed,
/// 7 exponent bits, built with `torch.linspace`, 256 sorted values) with entry 0 overwritten by
/// −1.0, which the CPU kernel `quantize_cpu` does to the map it is given before copying it into
/// the state. `create_dynamic_map()[0]` itself is −0.99296874; recomputing the map with numpy's
/// `linspace` differs from torch's in 22 entries by one ulp, hence the stored bits.
const DYNAMIC_MAP_BITS: [u32; 256] = [
    0xbf800000, 0xbf7a999a, 0xbf770000, 0xbf736666, 0xbf6fcccd, 0xbf6c3333, 0xbf68999a, 0xbf650000,
    0xbf616666, 0xbf5dcccd, 0xbf5a3333, 0xbf56999a, 0xbf530000, 0xbf4f6666, 0xbf4bcccd, 0xbf483333,
    0xbf44999a, 0xbf410000, 0xbf3d6666, 0xbf39cccd, 0xbf363334, 0xbf32999a, 0xbf2f0000, 0xbf2b6666,
    0xbf27cccd, 0xbf243334, 0xbf20999a, 0xbf1d0000, 0xbf196666, 0xbf15cccd, 0xbf123334, 0xbf0e999a,
    0xbf0b0000, 0xbf076666, 0xbf03cccc, 0xbf003333, 0xbef93332, 0xbef20000, 0xbeeacccc, 0xbee3999a,
    0xbedc6666, 0xbed53333, 0xbece0000, 0xbec6cccc, 0xbebf999a, 0xbeb86666, 0xbeb13333, 0xbeaa0000,
    0xbea2cccc, 0xbe9b999a, 0xbe946666, 0xbe8d3334, 0xbe860000, 0xbe7d9999, 0xbe6f3333, 0xbe60cccd,
    0xbe526666, 0xbe440000, 0xbe35999a, 0xbe273333, 0xbe18cccd, 0xbe0a6666, 0xbdf80000, 0xbddb3334,
    0xbdc9eb85, 0xbdc428f7, 0xbdbe6667, 0xbdb8a3d7, 0xbdb2e148, 0xbdad1eb8, 0xbda75c2a, 0xbda1999a,
    0xbd9bd70a, 0xbd96147b, 0xbd9051eb, 0xbd8a8f5d, 0xbd84cccd, 0xbd7e147b, 0xbd728f5d, 0xbd670a3d,
    0xbd5b851f, 0xbd500000, 0xbd447ae1, 0xbd38f5c3, 0xbd2d70a3, 0xbd21eb85, 0xbd166667, 0xbd0ae148,
    0xbcfeb852, 0xbce7ae15, 0xbcd0a3d7, 0xbcb9999a, 0xbca28f5d, 0xbc8b851f, 0xbc68f5c3, 0xbc3ae148,
    0xbc1f3b64, 0xbc160418, 0xbc0ccccd, 0xbc039581, 0xbbf4bc6a, 0xbbe24dd3, 0xbbcfdf3b, 0xbbbd70a4,
    0xbbab020d, 0xbb989374, 0xbb8624dd, 0xbb676c8a, 0xbb428f5c, 0xbb1db22d, 0xbaf1a9fc, 0xbaa7ef9d,
    0xba7765ff, 0xba59e83e, 0xba3c6a80, 0xba1eecc1, 0xba016f01, 0xb9c7e283, 0xb98ce705, 0xb923d70b,
    0xb8ba1f4b, 0xb88aefb3, 0xb8378034, 0xb7b24206, 0xb70205ff, 0xb65a1a94, 0xb513a3b7, 0x00000000,
    0x3513a3b7, 0x365a1a94, 0x370205ff, 0x37b24206, 0x38378034, 0x388aefb3, 0x38ba1f4b, 0x3923d70b,
    0x398ce705, 0x39c7e283, 0x3a016f01, 0x3a1eecc1, 0x3a3c6a80, 0x3a59e83e, 0x3a7765ff, 0x3aa7ef9d,
    0x3af1a9fc, 0x3b1db22d, 0x3b428f5c, 0x3b676c8a, 0x3b8624dd, 0x3b989374, 0x3bab020d, 0x3bbd70a4,
    0x3bcfdf3b, 0x3be24dd3, 0x3bf4bc6a, 0x3c039581, 0x3c0ccccd, 0x3c160418, 0x3c1f3b64, 0x3c3ae148,
    0x3c68f5c3, 0x3c8b851f, 0x3ca28f5d, 0x3cb9999a, 0x3cd0a3d7, 0x3ce7ae15, 0x3cfeb852, 0x3d0ae148,
    0x3d166667, 0x3d21eb85, 0x3d2d70a3, 0x3d38f5c3, 0x3d447ae1, 0x3d500000, 0x3d5b851f, 0x3d670a3d,
    0x3d728f5d, 0x3d7e147b, 0x3d84cccd, 0x3d8a8f5d, 0x3d9051eb, 0x3d96147b, 0x3d9bd70a, 0x3da1999a,
    0x3da75c2a, 0x3dad1eb8, 0x3db2e148, 0x3db8a3d7, 0x3dbe6667, 0x3dc428f7, 0x3dc9eb85, 0x3ddb3334,
    0x3df80000, 0x3e0a6666, 0x3e18cccd, 0x3e273333, 0x3e35999a, 0x3e440000, 0x3e526666, 0x3e60cccd,
    0x3e6f3333, 0x3e7d9999, 0x3e860000, 0x3e8d3334, 0x3e946666, 0x3e9b999a, 0x3ea2cccc, 0x3eaa0000,
    0x3eb13333, 0x3eb86666, 0x3ebf999a, 0x3ec6cccc, 0x3ece0000, 0x3ed53333, 0x3edc6666, 0x3ee3999a,
    0x3eeacccc, 0x3ef20000, 0x3ef93332, 0x3f003333, 0x3f03cccc, 0x3f076666, 0x3f0b0000, 0x3f0e999a,
    0x3f123334, 0x3f15cccd, 0x3f196666, 0x3f1d0000, 0x3f20999a, 0x3f243334, 0x3f27cccd, 0x3f2b6666,
    0x3f2f0000, 0x3f32999a, 0x3f363334, 0x3f39cccd, 0x3f3d6666, 0x3f410000, 0x3f44999a, 0x3f483333,
    0x3f4bcccd, 0x3f4f6666, 0x3f530000, 0x3f56999a, 0x3f5a3333, 0x3f5dcccd, 0x3f616666, 0x3f650000,
    0x3f68999a, 0x3f6c3333, 0x3f6fcccd, 0x3f736666, 0x3f770000, 0x3f7a999a, 0x3f7e3333, 0x3f800000,
];

/// The 256-entry signed dynamic map of the double quantization (see [`DYNAMIC_MAP_BITS`]),
/// sorted ascending from −1.0 to 1.0.
pub fn dynamic_map() -> [f32; 256] {
    DYNAMIC_MAP_BITS.map(f32::from_bits)
}

/// The NF4 code of a scaled value `s` as bitsandbytes 0.49.2 chooses it on CPU
/// (`backends/default/ops.py`): `argmin |s − NF4[i]|` in f32, the first (lower) index on a tie,
/// and index 0 for NaN (torch's `argmin` takes NaN as the minimum; a block whose absmax is 0
/// scales to `0 · (1/0) = NaN`, so bnb codes an all-zero block as 0, i.e. −1 · 0).
pub fn nearest_nf4(s: f32) -> u8 {
    let mut best = 0u8;
    let mut best_dist = (s - NF4[0]).abs();
    for (i, level) in NF4.iter().enumerate().skip(1) {
        let dist = (s - level).abs();
        if dist < best_dist {
            best = i as u8;
            best_dist = dist;
        }
    }
    best
}

/// The index of the entry of a sorted 256-entry `code` map nearest to `value`, as bitsandbytes
/// 0.49.2's CPU kernel chooses it (`csrc/cpu_ops.cpp` `lookup_code_index`): `value` clamped to
/// [−1, 1], `lower_bound`, then the closer neighbour in f32, the lower one on a tie.
pub fn nearest_code(code: &[f32; 256], value: f32) -> u8 {
    let value = value.clamp(-1.0, 1.0);
    let right = code.partition_point(|&c| c < value);
    if right == 0 {
        return 0;
    }
    if right == code.len() {
        return 255;
    }
    let dist_left = (value - code[right - 1]).abs();
    let dist_right = (code[right] - value).abs();
    if dist_right < dist_left { right as u8 } else { (right - 1) as u8 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nf4_is_sorted_with_an_exact_zero_at_index_7() {
        assert!(NF4.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(NF4[NF4_ZERO as usize], 0.0);
        assert_eq!((NF4[0], NF4[15]), (-1.0, 1.0));
    }

    #[test]
    fn nearest_nf4_takes_the_lower_code_on_a_tie_and_zero_for_nan() {
        assert_eq!(nearest_nf4(0.0), 7);
        assert_eq!(nearest_nf4(1.0), 15);
        assert_eq!(nearest_nf4(-1.0), 0);
        assert_eq!(nearest_nf4(f32::NAN), 0);
        // Halfway between a level and the exact 0 is an exact tie in f32: the lower code wins.
        let up = NF4[8] / 2.0;
        assert_eq!(nearest_nf4(up), 7);
        assert_eq!(nearest_nf4(f32::from_bits(up.to_bits() + 1)), 8);
        let down = NF4[6] / 2.0;
        assert_eq!(nearest_nf4(down), 6);
        assert_eq!(nearest_nf4(f32::from_bits(down.to_bits() - 1)), 7);
        assert_eq!(nearest_nf4(0.04), 8);
        assert_eq!(nearest_nf4(0.039), 7);
    }

    #[test]
    fn dynamic_map_is_sorted_from_minus_one_to_one() {
        let map = dynamic_map();
        assert!(map.windows(2).all(|w| w[0] < w[1]));
        assert_eq!((map[0], map[255]), (-1.0, 1.0));
        assert!(map.contains(&0.0));
    }

    #[test]
    fn nearest_code_clamps_and_breaks_ties_downwards() {
        let map = dynamic_map();
        assert_eq!(nearest_code(&map, -5.0), 0);
        assert_eq!(nearest_code(&map, 5.0), 255);
        for (i, &c) in map.iter().enumerate() {
            assert_eq!(nearest_code(&map, c) as usize, i);
        }
        // Halfway between 0 and the next entry is an exact tie: the lower entry wins.
        let zero = map.iter().position(|&c| c == 0.0).unwrap();
        let half = map[zero + 1] / 2.0;
        assert_eq!(nearest_code(&map, half) as usize, zero);
        assert_eq!(nearest_code(&map, f32::from_bits(half.to_bits() + 1)) as usize, zero + 1);
    }
}
