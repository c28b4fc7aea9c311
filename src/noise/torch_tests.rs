//! Parity tests of the torch-compatible generator against values produced by torch 2.15.0.

use super::*;

const RANDN_FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/wan/reference/randn.safetensors"
);

fn bits(values: &[f32]) -> Vec<u32> {
    values.iter().map(|v| v.to_bits()).collect()
}

/// FNV-1a over the little-endian bytes, as computed in Python over `tensor.numpy().tobytes()`.
fn fnv1a(values: &[f32]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for v in values {
        for b in v.to_le_bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

#[test]
fn randn_small_tensor_uses_double_box_muller() {
    let v = TorchGenerator::new(0).randn_f32(3);
    assert_eq!(bits(&v), [0x3fc53f5c, 0xbe963c50, 0xc00b7149]);
}

#[test]
fn randn_block_path_redoes_last_block() {
    let v = TorchGenerator::new(42).randn_f32(20);
    let expected = [
        0x3ff6a529, 0x3fbe5f53, 0x3f669567, 0xc006c0db, 0xbf4214e2, 0x3f8a0650, 0x3f4d0144,
        0x3fd71e93, 0x3eb63345, 0xbf2fc686, 0xbefc9934, 0x3e774893, 0xbe6d2eed, 0x3d2b0c00,
        0xbe80ce7a, 0x3f5c1fb0, 0xbe9e9482, 0xbeca9a91, 0x3f4dac3c, 0xbf1f20e0,
    ];
    assert_eq!(bits(&v), expected);
}

#[test]
fn randn_successive_calls_continue_the_stream() {
    // torch: g = manual_seed(7); randn(5, g); randn(20, g); randn(1, g). The third call
    // returns the sine half cached by the first one.
    let mut g = TorchGenerator::new(7);
    let a = g.randn_f32(5);
    let b = g.randn_f32(20);
    let c = g.randn_f32(1);
    assert_eq!(
        bits(&a),
        [0xbe165174, 0x3f49408e, 0x3f7262e7, 0xbf8ea2d3, 0x3fd86bd0]
    );
    let expected_b = [
        0x3f1c0674, 0xbf14c52f, 0x3d48e239, 0xbea4158d, 0xbdab10d9, 0xbcc054cb, 0x3e328f74,
        0x4013180c, 0x3f7504a6, 0xbf297027, 0xbf54156f, 0xbf1b0ddd, 0xbfb35c30, 0x3fa60f1a,
        0x3fd20a1a, 0xbf87416d, 0xbe85eeb2, 0xbe801162, 0x3f00497f, 0x3e852377,
    ];
    assert_eq!(bits(&b), expected_b);
    assert_eq!(bits(&c), [0xbf651371]);
}

#[test]
fn randn_seed_uses_low_32_bits() {
    let expected = [0xbef93b54, 0xbf1a940d];
    assert_eq!(bits(&TorchGenerator::new(5).randn_f32(2)), expected);
    assert_eq!(
        bits(&TorchGenerator::new((1 << 40) + 5).randn_f32(2)),
        expected
    );
}

#[test]
fn randn_large_tensors_match_torch_bit_for_bit() {
    for (seed, hash) in [
        (0u64, 0xc504_6e58_86a3_1170u64),
        (123_456_789, 0x1dbd_8344_5f50_0cea),
        (4_294_967_295, 0xc13d_3b89_e15b_473a),
    ] {
        let v = TorchGenerator::new(seed).randn_f32(100_003);
        assert_eq!(fnv1a(&v), hash, "seed {seed}");
    }
}

#[test]
fn torch_randn_fills_shape_row_major() -> candle_core::Result<()> {
    let t = torch_randn(7, &[1, 4, 3, 4, 6], &Device::Cpu)?;
    assert_eq!(t.dims(), &[1, 4, 3, 4, 6]);
    let flat = t.flatten_all()?.to_vec1::<f32>()?;
    assert_eq!(bits(&flat[285..]), [0x3b981f17, 0x3f4c5655, 0x3e562431]);
    assert_eq!(flat, TorchGenerator::new(7).randn_f32(288));
    Ok(())
}

#[test]
fn randn_matches_reference_fixture() -> candle_core::Result<()> {
    let tensors = candle_core::safetensors::load(RANDN_FIXTURE, &Device::Cpu)?;
    let mut checked = 0;
    let mut worst = 0f32;
    for seed in [0u64, 7, 4_294_967_295] {
        for shape in [&[7usize][..], &[16], &[33], &[1, 4, 3, 4, 6]] {
            let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
            let name = format!("s{seed}_{}", dims.join("x"));
            let reference = tensors
                .get(&name)
                .unwrap_or_else(|| panic!("{RANDN_FIXTURE} has no tensor {name}"));
            assert_eq!(reference.dims(), shape, "{name}");
            let ours = torch_randn(seed, shape, &Device::Cpu)?;
            let diff = (ours - reference)?
                .abs()?
                .flatten_all()?
                .max(0)?
                .to_scalar::<f32>()?;
            println!("{name}: max abs difference {diff:e}");
            worst = worst.max(diff);
            checked += 1;
        }
    }
    println!("randn fixture: {checked} tensors, max abs difference {worst:e}");
    assert!(worst <= 1e-6, "max abs difference {worst:e}");
    Ok(())
}

#[test]
fn randn_matches_pipeline_initial_latents() -> candle_core::Result<()> {
    // The Wan pipeline fixture draws its initial latents with manual_seed(7).
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/wan/reference/pipeline.safetensors"
    );
    let tensors = candle_core::safetensors::load(path, &Device::Cpu)?;
    for name in ["unipc_latents_init", "euler_latents_init"] {
        let reference = tensors
            .get(name)
            .unwrap_or_else(|| panic!("{path} has no tensor {name}"));
        let ours = torch_randn(7, reference.dims(), &Device::Cpu)?;
        let diff = (ours - reference)?
            .abs()?
            .flatten_all()?
            .max(0)?
            .to_scalar::<f32>()?;
        println!("{name}: max abs difference {diff:e}");
        assert_eq!(diff, 0.0, "{name}");
    }
    Ok(())
}
