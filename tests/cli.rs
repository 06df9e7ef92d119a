//! The command line's help: every subcommand lists the flags the scripts and tests use, and
//! every argument (flags and positional ones) has a description, so that `edgecam <sub> --help`
//! documents it. A doc comment removed from an argument fails this test.

use std::process::Command;

/// Each subcommand with the arguments its help must list (besides `--help` and the global
/// `--log-json` and `--verbose`).
const SUBCOMMANDS: &[(&str, &[&str])] = &[
    (
        "bench",
        &[
            "--model",
            "--threads",
            "--iterations",
            "--warmup",
            "--warmup-ms",
            "--kernels",
            "--cores",
            "--profile",
            "--json",
            "--serve",
        ],
    ),
    ("run", &["--config"]),
    ("check-config", &["--config", "--connect"]),
    ("infer", &["--model", "--threads", "--input", "--out"]),
    (
        "detect",
        &[
            "--model",
            "--labels",
            "--desc",
            "--model-type",
            "--threshold",
            "--letterbox",
            "--threads",
            "<IMAGES>...",
        ],
    ),
    (
        "evaluate",
        &[
            "--int8",
            "--float",
            "--source",
            "--json",
            "--html",
            "--desc",
            "--labels",
            "--skip",
            "--every",
            "--max-frames",
            "--threshold",
            "--no-layers",
        ],
    ),
    (
        "calibrate",
        &[
            "--float",
            "--source",
            "--out",
            "--frames",
            "--method",
            "--no-bias-correction",
            "--baseline",
            "--skip",
            "--limit",
            "--json",
            "--html",
            "--desc",
            "--labels",
            "--no-layers",
        ],
    ),
    ("preprocess", &["--desc", "--letterbox", "--out", "<IMAGE>"]),
];

fn help(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_edgecam"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "edgecam {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// The entries of the help's `Arguments:`, `Options:` and `Commands:` sections: (its first
/// word, e.g. `--model` or `<IMAGE>` or `bench`; whether it has a description), in either of
/// clap's layouts: the description on the same line after two spaces, or on the lines below,
/// indented further. Trailing spaces or a bare `[default: ...]` are no description.
fn entries(help: &str) -> Vec<(String, bool)> {
    let lines: Vec<&str> = help.lines().collect();
    let mut section = "";
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if !line.starts_with(' ') && line.ends_with(':') {
            section = line;
            continue;
        }
        if !["Arguments:", "Options:", "Commands:"].contains(&section) {
            continue;
        }
        let t = line.trim_start();
        if t.is_empty() || !(2..=6).contains(&indent(line)) {
            continue;
        }
        // `-v, --verbose...` names its long form second; `<IMAGE>` is a positional argument.
        let spec = t.split("  ").next().unwrap();
        let name = if spec.starts_with('<') || spec.starts_with('[') {
            spec.to_string()
        } else {
            spec.split([' ', ','])
                .filter(|w| !w.is_empty())
                .find(|w| w.starts_with("--") || !w.starts_with('-'))
                .unwrap_or(spec)
                .trim_end_matches("...")
                .to_string()
        };
        // A line of only `[default: 20]` (or `[possible values: ...]`) describes nothing.
        let text = |s: &str| !s.trim().is_empty() && !s.trim().starts_with('[');
        let inline = t.split_once("  ").is_some_and(|(_, rest)| text(rest));
        let below = lines
            .get(i + 1)
            .is_some_and(|n| text(n) && indent(n) >= indent(line) + 4);
        found.push((name, inline || below));
    }
    found
}

#[test]
#[cfg_attr(
    target_arch = "aarch64",
    ignore = "spawns the binary; built, not run, under qemu"
)]
fn every_subcommand_is_listed_with_a_description() {
    let top = entries(&help(&["--help"]));
    let mut names: Vec<&str> = top.iter().map(|(n, _)| n.as_str()).collect();
    for (name, described) in &top {
        assert!(described, "`edgecam --help`: {name} has no description");
    }
    names.retain(|n| !n.starts_with('-'));
    let mut want: Vec<&str> = SUBCOMMANDS.iter().map(|(s, _)| *s).collect();
    want.push("help");
    assert_eq!(names, want);
}

#[test]
#[cfg_attr(
    target_arch = "aarch64",
    ignore = "spawns the binary; built, not run, under qemu"
)]
fn every_argument_has_a_description() {
    for (sub, args) in SUBCOMMANDS {
        // `-h` is the short help, `--help` the long one: both must describe every argument.
        for flag in ["-h", "--help"] {
            let text = help(&[sub, flag]);
            let found = entries(&text);
            for (name, described) in &found {
                assert!(
                    described,
                    "`edgecam {sub} {flag}`: {name} has no description:\n{text}"
                );
            }
            let names: Vec<&str> = found.iter().map(|(n, _)| n.as_str()).collect();
            for want in args.iter().chain(&["--log-json", "--verbose", "--help"]) {
                assert!(
                    names.contains(want),
                    "`edgecam {sub} {flag}` does not list {want}: {names:?}\n{text}"
                );
            }
            assert_eq!(
                names.len(),
                args.len() + 3,
                "`edgecam {sub} {flag}` lists other arguments than expected: {names:?}"
            );
        }
    }
}

/// The hidden packaging subcommands: `completions SHELL` prints a script that knows every
/// subcommand and flag; `manpages DIR` writes edgecam.1 and a page per visible subcommand
/// (scripts/package runs both; scripts/test-package checks what the package installs).
#[test]
#[cfg_attr(
    target_arch = "aarch64",
    ignore = "spawns the binary; built, not run, under qemu"
)]
fn completions_and_man_pages_cover_every_subcommand() {
    for shell in ["bash", "zsh", "fish"] {
        let script = help(&["completions", shell]);
        for (sub, args) in SUBCOMMANDS {
            assert!(script.contains(sub), "{shell} completion lacks {sub}");
            for a in args.iter().filter(|a| a.starts_with("--")) {
                let flag = if shell == "fish" {
                    a.trim_start_matches('-')
                } else {
                    a
                };
                assert!(script.contains(flag), "{shell} completion lacks {sub} {a}");
            }
        }
    }
    let dir = std::env::temp_dir().join(format!("edgecam-man-{}", std::process::id()));
    help(&["manpages", dir.to_str().unwrap()]);
    let main = std::fs::read_to_string(dir.join("edgecam.1")).unwrap();
    assert!(main.contains(".TH edgecam 1"), "{main}");
    for (sub, args) in SUBCOMMANDS {
        let page = std::fs::read_to_string(dir.join(format!("edgecam-{sub}.1")))
            .unwrap_or_else(|e| panic!("edgecam-{sub}.1: {e}"));
        // roff escapes dashes: edgecam-check-config is edgecam\-check\-config, --model \-\-model.
        let roff = |s: &str| s.replace('-', "\\-");
        assert!(
            main.contains(&roff(&format!("edgecam-{sub}"))),
            "edgecam.1 does not list {sub}"
        );
        for a in args.iter().filter(|a| a.starts_with("--")) {
            let roff = roff(a);
            assert!(page.contains(&roff), "edgecam-{sub}.1 lacks {a}");
        }
    }
    // The hidden subcommands get no page of their own.
    let pages = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(pages, SUBCOMMANDS.len() + 1, "pages in {}", dir.display());
    let _ = std::fs::remove_dir_all(&dir);
}
