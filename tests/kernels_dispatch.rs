//! The kernel dispatch point: every path this CPU offers agrees with the scalar oracle, and the
//! paths detected are the ones the CPU (or the CPU qemu emulates, `QEMU_CPU`) really has.
//!
//! `scripts/test` runs this suite natively and under qemu-aarch64 as cortex-a72 (Raspberry Pi 4),
//! cortex-a76 (Raspberry Pi 5) and max (i8mm).

use edgecam::engine::kernels::{self, scalar, KernelPath};

mod common;
use common::Rng;

#[test]
fn table_lookup_matches_scalar_on_every_path() {
    let mut rng = Rng::new(0x7AB1_E000_0000_0002);
    let lut: Box<[u8; 1 << 16]> = (0..1 << 16)
        .map(|_| rng.next_u64() as u8)
        .collect::<Vec<u8>>()
        .into_boxed_slice()
        .try_into()
        .unwrap();
    let all_a: Vec<u8> = (0..1 << 16).map(|i| (i >> 8) as u8).collect();
    let all_b: Vec<u8> = (0..1 << 16).map(|i| i as u8).collect();
    let mut want = vec![0u8; 1 << 16];
    scalar::elementwise::lut2_u8(&lut, &all_a, &all_b, &mut want);
    assert_eq!(want, lut[..], "scalar lookup: index = a << 8 | b");
    for path in KernelPath::available() {
        let mut got = vec![0u8; 1 << 16];
        kernels::lut2_u8(path, &lut, &all_a, &all_b, &mut got);
        assert_eq!(got, want, "{path}: every index");
        for len in (0..100).chain([4099]) {
            let a: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            let b: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            let (mut got, mut want) = (vec![0u8; len], vec![0u8; len]);
            kernels::lut2_u8(path, &lut, &a, &b, &mut got);
            scalar::elementwise::lut2_u8(&lut, &a, &b, &mut want);
            assert_eq!(got, want, "{path}: length {len}");
        }
    }
}

#[test]
fn scalar_is_always_available_and_best_is_the_last_available() {
    let avail = KernelPath::available();
    eprintln!(
        "available kernel paths: {avail:?}, best {}",
        KernelPath::best()
    );
    assert_eq!(avail.first(), Some(&KernelPath::Scalar));
    assert_eq!(KernelPath::best(), *avail.last().unwrap());
    for p in &avail {
        assert_eq!(KernelPath::resolve(p.name()), Ok(*p));
    }
}

/// Under qemu-user, `QEMU_CPU` picks the emulated CPU and is passed on to the guest, so the
/// detected paths must match it. This is what proves that `scripts/test` really ran each CPU model.
#[cfg(target_arch = "aarch64")]
#[test]
fn detected_paths_match_qemu_cpu() {
    use KernelPath::*;
    let Ok(cpu) = std::env::var("QEMU_CPU") else {
        eprintln!("QEMU_CPU not set; detected {:?}", KernelPath::available());
        return;
    };
    let avail = KernelPath::available();
    eprintln!("QEMU_CPU={cpu}: detected {avail:?}");
    match cpu.as_str() {
        "cortex-a72" => {
            assert_eq!(KernelPath::best(), Neon);
            assert!(!Dotprod.supported() && !I8mm.supported());
            assert_eq!(avail, vec![Scalar, Neon]);
        }
        "cortex-a76" => {
            assert!(Dotprod.supported());
            assert!(!I8mm.supported());
            assert_eq!(KernelPath::best(), Dotprod);
            assert_eq!(avail, vec![Scalar, Neon, Dotprod]);
        }
        "max" => {
            assert!(I8mm.supported());
            assert_eq!(KernelPath::best(), I8mm);
            assert_eq!(avail, vec![Scalar, Neon, Dotprod, I8mm]);
        }
        other => eprintln!("QEMU_CPU={other}: no expectation recorded for this CPU model"),
    }
}

/// On x86_64 the AVX2 path (AVX2 + FMA) must be offered whenever the kernel reports both flags,
/// and the AVX-512 path whenever it also reports AVX-512 F, BW, VL and VNNI; the best path is
/// the highest the flags allow.
#[cfg(target_arch = "x86_64")]
#[test]
fn x86_paths_are_available_when_cpuinfo_lists_them() {
    let Ok(cpuinfo) = std::fs::read_to_string("/proc/cpuinfo") else {
        eprintln!("no /proc/cpuinfo; detected {:?}", KernelPath::available());
        return;
    };
    let flags: Vec<&str> = cpuinfo
        .lines()
        .find(|l| l.starts_with("flags"))
        .map(|l| l.split_whitespace().collect())
        .unwrap_or_default();
    let has = |f: &[&str]| f.iter().all(|f| flags.contains(f));
    let avx2 = has(&["avx2", "fma"]);
    let avx512 = avx2 && has(&["avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512_vnni"]);
    eprintln!(
        "cpuinfo avx2+fma: {avx2}, avx512 f/bw/dq/vl/vnni: {avx512}; detected {:?}",
        KernelPath::available()
    );
    assert_eq!(KernelPath::Avx2.supported(), avx2);
    assert_eq!(KernelPath::Avx512.supported(), avx512);
    if avx512 {
        assert_eq!(KernelPath::best(), KernelPath::Avx512);
    } else if avx2 {
        assert_eq!(KernelPath::best(), KernelPath::Avx2);
    }
}
