//! The bf16 moment's second pass with the processor's own narrowing, `VCVTNEPS2BF16`
//! (AVX512-BF16, on AMD Zen 4 and Intel Sapphire Rapids and later): one instruction for eight
//! values where the portable loop spends about ten on rounding and packing.

use core::arch::x86_64::{__m128bh, _mm256_cvtneps_pbh, _mm256_fpclass_ps_mask, _mm256_loadu_ps};

use burn::optim::LearningRate;
use burn::tensor::bf16;

use super::{Scalars, Stored, update_elements};
use crate::hyper::Hyper;

/// Values widened, stepped and narrowed at a time: a stack buffer that stays in L1.
const CHUNK: usize = 64;

/// Whether the processor has what [`update`] runs on (checked at run time, once).
pub(super) fn detected() -> bool {
    std::is_x86_feature_detected!("avx2")
        && std::is_x86_feature_detected!("avx512f")
        && std::is_x86_feature_detected!("avx512vl")
        && std::is_x86_feature_detected!("avx512dq")
        && std::is_x86_feature_detected!("avx512bf16")
}

/// [`update_elements`] for a bf16 `m`, by chunks: `m_{t−1}` widened into an f32 buffer, the
/// f32 step on it, `m_t` narrowed back by [`narrow`]. The same bits as the portable loop.
#[target_feature(enable = "avx2,avx512f,avx512vl,avx512dq,avx512bf16")]
pub(super) fn update(
    hyper: &Hyper,
    lr: LearningRate,
    scalars: &Scalars,
    param: &mut [f32],
    moment_1: &mut [bf16],
    grad: &[f32],
) {
    let whole = param.len() / CHUNK * CHUNK;
    let (param, param_rest) = param.split_at_mut(whole);
    let (moment_1, moment_1_rest) = moment_1.split_at_mut(whole);
    let (grad, grad_rest) = grad.split_at(whole);
    let chunks = (param.chunks_exact_mut(CHUNK))
        .zip(moment_1.chunks_exact_mut(CHUNK))
        .zip(grad.chunks_exact(CHUNK));
    for ((param, stored), grad) in chunks {
        let mut moment = [0.0f32; CHUNK];
        for (wide, &value) in moment.iter_mut().zip(stored.iter()) {
            *wide = value.load();
        }
        update_elements(hyper, lr, scalars, param, &mut moment, grad);
        narrow(&moment, stored);
    }
    update_elements(hyper, lr, scalars, param_rest, moment_1_rest, grad_rest);
}

/// `values` rounded to bf16 into `stored`, bit for bit as [`Stored::store`]: `VCVTNEPS2BF16`
/// rounds to nearest, ties to even, and makes a NaN quiet in the same way, but takes a
/// subnormal input as zero, so a chunk holding one is narrowed again by [`Stored::store`].
#[target_feature(enable = "avx2,avx512f,avx512vl,avx512dq,avx512bf16")]
fn narrow(values: &[f32; CHUNK], stored: &mut [bf16]) {
    let mut subnormal = false;
    for (eight, out) in values.chunks_exact(8).zip(stored.chunks_exact_mut(8)) {
        // SAFETY: `eight` holds 8 f32 (32 bytes), the unaligned load's width.
        let wide = unsafe { _mm256_loadu_ps(eight.as_ptr()) };
        // Class 0x20: subnormal.
        subnormal |= _mm256_fpclass_ps_mask::<0x20>(wide) != 0;
        let narrow: __m128bh = _mm256_cvtneps_pbh(wide);
        // SAFETY: `out` holds 8 bf16 (16 bytes), the unaligned store's width.
        unsafe { out.as_mut_ptr().cast::<__m128bh>().write_unaligned(narrow) };
    }
    if subnormal {
        for (out, &value) in stored.iter_mut().zip(values) {
            *out = Stored::store(value);
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::bf16;

    use super::{CHUNK, Stored, detected, narrow};

    /// Every kind of f32 the narrowing meets, in one chunk with subnormals and in one without:
    /// the instruction's path gives the portable conversion's bits.
    #[test]
    fn narrowing_gives_the_portable_bits() {
        if !detected() {
            eprintln!("skipped: this processor has no AVX512-BF16");
            return;
        }
        let specials = [
            0.0,
            -0.0,
            1.0,
            f32::MAX,
            f32::MIN_POSITIVE,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            f32::from_bits(0x7F80_0001), // a signalling NaN
            f32::from_bits(0xFFC0_1234), // a negative NaN with a payload
            f32::from_bits(0x3F80_8000), // a tie, rounded to even (down)
            f32::from_bits(0x3F81_8000), // a tie, rounded to even (up)
            f32::from_bits(0x7F7F_FFFF), // rounds up to +∞
            f32::from_bits(0x3F80_7FFF), // just below a tie
        ];
        let normals = (0..CHUNK as u32).map(|i| f32::from_bits(0x3000_0000 + i * 0x0123_4567));
        let mut without: Vec<f32> = specials.iter().copied().chain(normals).collect();
        without.truncate(CHUNK);
        let mut with = without.clone();
        with[20] = f32::from_bits(0x0000_0001); // the smallest subnormal
        with[40] = -f32::from_bits(0x007F_FFFF); // the largest, negative
        for values in [without, with] {
            let values: [f32; CHUNK] = values.try_into().expect("a chunk");
            let mut stored = [bf16::ZERO; CHUNK];
            // SAFETY: the processor has the instructions, checked above.
            unsafe { narrow(&values, &mut stored) };
            for (value, out) in values.iter().zip(stored) {
                let portable: bf16 = Stored::store(*value);
                assert_eq!(
                    out.to_bits(),
                    portable.to_bits(),
                    "{value:e} ({:#x})",
                    value.to_bits()
                );
            }
        }
    }
}
