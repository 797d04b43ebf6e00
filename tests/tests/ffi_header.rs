//! The C header `runtime/include/tern.h` is what cbindgen makes of `runtime/src/ffi.rs`: a changed ABI
//! without a regenerated header fails here (`TERN_REGEN_FIXTURES=1` rewrites it).
use std::path::Path;

#[test]
fn c_header_matches_the_ffi_source() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../runtime");
    let config = cbindgen::Config::from_file(root.join("cbindgen.toml")).expect("cbindgen.toml");
    let mut made = Vec::new();
    cbindgen::Builder::new()
        .with_config(config)
        .with_src(root.join("src/ffi.rs"))
        .generate()
        .expect("cbindgen parses ffi.rs")
        .write(&mut made);
    let made = String::from_utf8(made).unwrap();
    let path = root.join("include/tern.h");
    if std::env::var("TERN_REGEN_FIXTURES").is_ok() {
        std::fs::write(&path, &made).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == made,
        "{} is not what cbindgen makes of src/ffi.rs: rerun with TERN_REGEN_FIXTURES=1",
        path.display()
    );
    // the ABI the header declares is the one the library reports
    assert!(made.contains(&format!(
        "#define TERN_ABI_VERSION {}",
        tern::ffi::TERN_ABI_VERSION
    )));
}
