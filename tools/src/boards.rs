//! Board profiles (`boards/profiles/*.toml`): what a target board is, for cross builds, thread defaults and
//! choosing kernel paths. Read by the tool; the `tern-boards` device crate comes later.
use anyhow::{anyhow, Context, Result};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// One board.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Board {
    /// Short name (`rpi5`).
    pub name: String,
    /// Rust target triple.
    pub target: String,
    /// CPU core (`cortex-a76`).
    pub cpu: String,
    /// CPU features tern's kernels care about (`neon`, `dotprod`, `fp16`, `i8mm`).
    pub features: Vec<String>,
    /// CPU cores.
    pub cores: u32,
    /// Clock in GHz.
    pub freq_ghz: f64,
    /// Memory sizes sold, MB.
    pub memory_mb: Vec<u32>,
    /// GPU compute path: `none` or `vulkan`.
    pub gpu: String,
    /// Threads a session uses by default.
    pub default_threads: u32,
    /// Cross linker.
    pub linker: String,
    /// The qemu-user CPU model that stands in for it in tests.
    pub qemu_cpu: String,
}

impl Board {
    /// Whether the board's CPU has the SDOT/UDOT instructions.
    pub fn has_dotprod(&self) -> bool {
        self.features.iter().any(|f| f == "dotprod")
    }
}

/// The profiles directory of the source tree.
pub fn profiles_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../boards/profiles")
}

/// Reads one profile, with errors naming the file.
pub fn load(path: &Path) -> Result<Board> {
    let s =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    toml::from_str(&s).map_err(|e| anyhow!("{}: {e}", path.display()))
}

/// Reads every `*.toml` in `dir`, sorted by name.
pub fn load_all(dir: &Path) -> Result<Vec<Board>> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let p = e?.path();
        if p.extension().is_some_and(|x| x == "toml") {
            v.push(load(&p)?);
        }
    }
    v.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_profiles_parse_and_agree_with_their_file_names() {
        let boards = load_all(&profiles_dir()).unwrap();
        let names: Vec<&str> = boards.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["jetson-nano", "jetson-orin-nano", "rpi4", "rpi5"]);
        for b in &boards {
            assert_eq!(b.target, "aarch64-unknown-linux-gnu");
            assert!(b.features.iter().any(|f| f == "neon"), "{}", b.name);
            assert!(b.default_threads >= 1 && b.default_threads <= b.cores);
        }
        let by = |n: &str| boards.iter().find(|b| b.name == n).unwrap();
        assert!(
            !by("rpi4").has_dotprod()
                && by("rpi5").has_dotprod()
                && by("jetson-orin-nano").has_dotprod()
        );
        assert_eq!(by("jetson-orin-nano").gpu, "vulkan");
    }

    #[test]
    fn bad_profile_names_the_file_and_field() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.toml");
        std::fs::write(&p, "name = \"x\"\ncores = \"four\"\n").unwrap();
        let e = load(&p).unwrap_err().to_string();
        assert!(e.contains("x.toml") && e.contains("cores"), "{e}");
    }
}
