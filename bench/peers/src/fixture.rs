//! The documents every system syncs: `tongban_node::fixture`'s finished
//! cases, saved as Automerge bytes, with their heads.

use std::path::Path;

use anyhow::{Context, Result};
use automerge::{Automerge, ChangeHash};
use indicatif::ProgressBar;
use rayon::prelude::*;
use tongban_node::fixture::{CaseFactory, provision_route};

/// One finished case as the peers receive it.
pub struct Doc {
    /// `Automerge::save` of the case document (every change signed).
    pub bytes: Vec<u8>,
    /// Its heads, which a receiving repo must end up with.
    pub heads: Vec<ChangeHash>,
}

impl Doc {
    /// The heads as hex strings (what automerge-js's `getHeads` returns).
    pub fn heads_hex(&self) -> Vec<String> {
        hex_heads(&self.heads)
    }
}

/// Heads as sorted hex strings.
pub fn hex_heads(heads: &[ChangeHash]) -> Vec<String> {
    let mut hex: Vec<String> = heads.iter().map(|h| h.to_string()).collect();
    hex.sort();
    hex
}

/// Builds cases `0..count` with the keys of a route provisioned under `root`,
/// on all cores.
pub fn build(root: &Path, count: u64, bar: &ProgressBar) -> Result<Vec<Doc>> {
    provision_route(root, &[]).context("provisioning the fixture's route")?;
    let factory = CaseFactory::open(root).context("opening the case factory")?;
    (0..count)
        .into_par_iter()
        .map(|i| {
            let mut built = factory
                .finished(i)
                .with_context(|| format!("building fixture case {i}"))?;
            let bytes = built.doc.save();
            let heads = Automerge::load(&bytes)
                .context("reloading a fixture case")?
                .get_heads();
            bar.inc(1);
            Ok(Doc { bytes, heads })
        })
        .collect()
}

/// Writes each document to `dir/<i>.automerge` for the JavaScript peer.
pub fn write_files(docs: &[Doc], dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    for (i, doc) in docs.iter().enumerate() {
        std::fs::write(dir.join(format!("{i}.automerge")), &doc.bytes)?;
    }
    Ok(())
}

/// The `changed` documents of `held` that resume changes: spread evenly.
pub fn changed_indices(held: usize, changed: usize) -> Vec<usize> {
    let changed = changed.min(held);
    (0..changed).map(|j| j * held / changed.max(1)).collect()
}
