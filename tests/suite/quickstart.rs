//! The README's first command runs `src/bin/quickstart.rs`, a binary built only with the non-default
//! `quickstart` feature, so no feature set CI builds would compile or run it. Compiled here as a module
//! (it needs only `bundle`), its `main` runs in every set that has bundles: it fails when the round trip
//! differs or a tampered bundle is not refused cleanly.
#![cfg(feature = "bundle")]

#[path = "../../src/bin/quickstart.rs"]
mod quickstart_bin;

#[test]
fn the_readme_quickstart_runs_the_main_job() {
    quickstart_bin::main().expect("the quickstart's main job");
}
