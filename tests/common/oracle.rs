//! TFLite as the oracle: `scripts/oracle.py` (in the venv `scripts/test` makes) runs a model
//! on inputs written as npy, with TFLite's reference kernels unless told otherwise.

use std::path::{Path, PathBuf};
use std::process::Command;

use edgecam::npy::NpyArray;

use super::root;

/// The Python with the reference interpreters (`EDGECAM_PYTHON`, default `.venv`).
pub fn python() -> PathBuf {
    std::env::var("EDGECAM_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root().join(".venv/bin/python"))
}

/// TFLite with op resolver `resolver` (`BUILTIN_REF`: the reference kernels; `BUILTIN`: its
/// optimized kernels) on `model`, once per input (the model's first input), in one run of
/// the oracle under `dir`: the first `outputs` outputs of each.
pub fn tflite_cases(
    dir: &Path,
    model: &Path,
    inputs: &[NpyArray],
    outputs: usize,
    resolver: &str,
) -> Vec<Vec<NpyArray>> {
    for (i, x) in inputs.iter().enumerate() {
        let case = dir.join(format!("case{i}"));
        let _ = std::fs::remove_dir_all(&case);
        std::fs::create_dir_all(&case).unwrap();
        std::fs::copy(model, case.join("model.tflite")).unwrap();
        x.write(&case.join("in_0.npy")).unwrap();
    }
    let st = Command::new(python())
        .env("EDGECAM_ORACLE_RESOLVER", resolver)
        .arg(root().join("scripts/oracle.py"))
        .arg(dir)
        .status()
        .expect("running the reference oracle (scripts/test makes .venv)");
    assert!(st.success());
    (0..inputs.len())
        .map(|i| {
            let case = dir.join(format!("case{i}"));
            assert!(
                !case.join("ref_error.txt").exists(),
                "{:?}",
                std::fs::read_to_string(case.join("ref_error.txt"))
            );
            (0..outputs)
                .map(|k| NpyArray::read(&case.join(format!("ref_{k}.npy"))).unwrap())
                .collect()
        })
        .collect()
}

/// TFLite's reference kernels on `model` with one input: its first `outputs` outputs.
pub fn tflite_reference(
    dir: &Path,
    model: &Path,
    input: &NpyArray,
    outputs: usize,
) -> Vec<NpyArray> {
    tflite_cases(
        dir,
        model,
        std::slice::from_ref(input),
        outputs,
        "BUILTIN_REF",
    )
    .pop()
    .unwrap()
}
