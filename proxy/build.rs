//! Links the release `pullgate` binary with packed relative relocations
//! (`-z pack-relative-relocs`, DT_RELR): at startup the dynamic loader reads
//! 25 KiB of relocations instead of 1.6 MiB, which keeps a fresh `pullgate
//! serve` under 15 MiB of RSS (pullgate-bench, idle: 15,132 and 15,304 KiB
//! against 16,496 KiB without, at 65e0ee9). Linking needs binutils 2.38 or
//! later and the binary then needs glibc 2.36 or later (Debian 12; the
//! package's `Depends` says so); `PULLGATE_RELR=0` builds without it.
#![allow(clippy::print_stdout, reason = "cargo reads a build script's stdout")]

fn main() {
    println!("cargo:rerun-if-env-changed=PULLGATE_RELR");
    println!("cargo:rerun-if-changed=build.rs");
    let env = |key: &str| std::env::var(key).unwrap_or_default();
    let release = env("PROFILE") == "release";
    let linux_gnu = env("CARGO_CFG_TARGET_OS") == "linux" && env("CARGO_CFG_TARGET_ENV") == "gnu";
    if release && linux_gnu && env("PULLGATE_RELR") != "0" {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
