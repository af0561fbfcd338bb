//! Compiles `src/mimalloc_trim.c` (the page trim run after a burst, README "Memory") against the
//! headers of the mimalloc that `libmimalloc-sys` builds, with the same defines, so the page
//! layout it reads is that build's. Skipped for `--cfg system_alloc` builds (no mimalloc).
fn main() {
    println!("cargo:rerun-if-changed=src/mimalloc_trim.c");
    if std::env::var_os("CARGO_CFG_SYSTEM_ALLOC").is_some() {
        return;
    }
    let include = std::env::var("DEP_MIMALLOC_INCLUDE_DIR")
        .expect("libmimalloc-sys exports its include directory (DEP_MIMALLOC_INCLUDE_DIR)");
    let mut build = cc::Build::new();
    build.file("src/mimalloc_trim.c").include(&include);
    // As libmimalloc-sys 0.1.49's build.rs: no debug checks, initial-exec TLS, no THP.
    build.define("MI_DEBUG", "0");
    if std::env::var("DEBUG").map(|d| d != "true" && d != "1").unwrap_or(true) {
        build.define("MI_BUILD_RELEASE", None).define("NDEBUG", None);
    }
    build.define("MI_NO_THP", "1");
    build.flag_if_supported("-ftls-model=initial-exec");
    build.flag("-Wno-error=date-time");
    build.compile("llmgw_mimalloc_trim");
}
