//! Every `.slt` file of `test_files/`, on a plain local session and on embedded Ballista (one
//! test per file and engine; a new file is picked up without touching this file).

use std::path::{Path, PathBuf};

use ember_sqllogictest::{Engine, run_file};
use rstest::rstest;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[rstest]
fn slt(
    #[files("test_files/*.slt")] path: PathBuf,
    #[values(Engine::Local, Engine::Standalone)] engine: Engine,
) {
    let result = ember_core::threads::block_on(run_file(engine, &repo(), &path));
    if let Err(e) = result {
        panic!("{} on {engine:?}:\n{e}", path.display());
    }
}
